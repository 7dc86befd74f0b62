"""Slice statistics in Beam: slices.json against a direct count on generated examples,
what the writers hand over, and bounded accumulators with many distinct values."""

import json
import os
import pickle

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from components.vog import vocabulary as vocab
from components.vog.compute import percentiles
from components.vog.compute import slice_stats
from components.vog.dataflow import beam_writers
from components.vog.dataflow import score_batch
from components.vog.dataflow import slices
from components.vog.dataflow.beam_audit import FileRead, InputFile, WorkUnit
import fixtures

N = 200
COLORS = ('red', 'green', 'blue', 'amber', 'violet')
WORDS = tuple(f'w{i}' for i in range(30))
HARD = vocab.BUCKETS.index(vocab.HARD)


def _example(values):
  feature = {
      'color': tf.train.Feature(bytes_list=tf.train.BytesList(value=[values['color']])),
      'size': tf.train.Feature(float_list=tf.train.FloatList(value=[values['size']])),
      'text': tf.train.Feature(bytes_list=tf.train.BytesList(value=[values['text']])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[values['label']])),
      'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[values['example_id']])),
      # Named like the audit's own fields: never sliced.
      'vog_score': tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _data(seed=0):
  """N examples: flagged ones gather in color 'violet', token 'glitch' and label pair
  2 -> 5; hard ones in large sizes."""
  rng = np.random.default_rng(seed)
  flagged = np.zeros(N, bool)
  flagged[rng.permutation(N)[:30]] = True
  size = rng.random(N)
  hard_rank = np.argsort(-(size + 0.3 * rng.random(N)))
  bucket = np.zeros(N, np.int64)
  bucket[hard_rank[:40]] = HARD
  label = rng.integers(0, 6, N)
  predicted = label.copy()
  predicted[rng.permutation(N)[:20]] = rng.integers(0, 6, 20)
  rows = []
  for i in range(N):
    color = COLORS[rng.integers(4)] if rng.random() < (0.3 if flagged[i] else 0.95) else (
        'violet')
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), rng.integers(3, 8))]
    if flagged[i] and rng.random() < 0.6:
      words.insert(1, 'glitch')
    rows.append({'color': color.encode(), 'size': float(size[i]),
                 'text': ' '.join(words).encode(), 'label': int(label[i]),
                 'example_id': f'x-{i}'.encode()})
  pair = flagged & (rng.random(N) < 0.5)
  label[pair], predicted[pair] = 2, 5
  for i in np.flatnonzero(pair):
    rows[i]['label'] = 2
  return rows, flagged.astype(np.int64), bucket, label, predicted


def _run(work_dir, rows, flagged, bucket, label, predicted, eval_pairs=True,
         not_examined=None, **settings):
  records = [_example(r) for r in rows]
  leave_out = ('example_id', 'label')
  batches = [('train', b) for b in slices.record_batches(
      zip(records, bucket.tolist(), flagged.tolist()), leave_out, rows=64)]
  halves = (slice(0, N // 2), slice(N // 2, N))
  pairs = [slices.unit_group_counts('train', label[h], predicted[h], flagged[h],
                                    bucket[h] == HARD) for h in halves]
  if eval_pairs:
    pairs.append(slices.unit_group_counts('eval', label[:50], predicted[:50],
                                          flagged[:50], bucket[:50] == HARD))
  with TestPipeline() as p:
    path = ({'batches': p | 'B' >> beam.Create(batches),
             'pairs': p | 'P' >> beam.Create(pairs)}
            | slices.FindWhatFlaggedExamplesShare(
                work_dir, ['train', 'eval'], ['train'], leave_out,
                slices.SliceSettings(**settings), features_not_examined=not_examined))
    assert_that(path, equal_to([os.path.join(work_dir, slices.SLICES_FILE)]))
  return slices.read_slices(os.path.join(work_dir, slices.SLICES_FILE))


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
  data = _data()
  # alpha 1 and a large max_rows: every tested over-indexing slice comes back.
  everything = _run(str(tmp_path_factory.mktemp('all')), *data, alpha=1.0, max_rows=500)
  default = _run(str(tmp_path_factory.mktemp('default')), *data)
  return data, everything, default


def _direct(rows, flagged, bucket, label, predicted, row):
  """(count, flagged, hard) of a slice row, counted on the examples themselves."""
  if row['kind'] == slice_stats.LABEL_PAIR:
    member = (label == row['classes'][0]) & (predicted == row['classes'][1])
  elif row['kind'] == slice_stats.CATEGORICAL:
    member = np.array([r[row['feature']].decode() == row['value'] for r in rows])
  elif row['kind'] == slice_stats.TOKEN:
    member = np.array([row['value'].encode() in r[row['feature']].split() for r in rows])
  else:
    low, high = row['range']
    values = np.array([r[row['feature']] for r in rows])
    member = ((low is None) | (values >= (low if low is not None else 0))) & (
        (high is None) | (values < (high if high is not None else 0)))
  return int(member.sum()), int((member & (flagged == 1)).sum()), int(
      (member & (bucket == HARD)).sum())


def test_slice_rows_match_a_direct_count(generated):
  data, everything, _ = generated
  train = everything['splits']['train']
  flagged = data[1]
  assert (train['examples'], train['flagged'], train['hard']) == (N, flagged.sum(), 40)
  assert train['features'] == 'examined'
  kinds = {r['kind'] for r in train['rows']}
  assert kinds == set(slice_stats.KINDS)
  for row in train['rows']:
    count, in_flagged, in_hard = _direct(*data, row)
    if row['kind'] == slice_stats.NUMERIC:
      # Read off quantile histograms: within a few examples.
      assert abs(row['count'] - count) <= 3 and abs(row['hard'] - in_hard) <= 3, row
      assert row['approximate']
      continue
    assert (row['count'], row['flagged'], row['hard']) == (count, in_flagged, in_hard), row
    assert not row['approximate']
    group_size = {'flagged': train['flagged'], 'hard': train['hard']}[row['group']]
    k = row[row['group']]
    assert row['p_value'] == pytest.approx(
        slice_stats.hypergeometric_sf(k, N, count, group_size), rel=1e-9)
    assert row['lift'] == pytest.approx((k / group_size) / (count / N))
  # The correction counts every (value, group) for which there were counts.
  assert train['tests'] >= 2 * len(train['rows'])
  q = slice_stats.benjamini_hochberg([r['p_value'] for r in train['rows']], train['tests'])
  assert all(r['p_adjusted'] >= qi - 1e-12 for r, qi in zip(train['rows'], q))


def test_planted_slices_come_first_and_left_out_features_never_appear(generated):
  _, everything, default = generated
  rows = default['splits']['train']['rows']
  assert len(rows) <= slice_stats.MAX_ROWS
  assert all(r['p_adjusted'] <= slice_stats.ALPHA for r in rows)
  found = {(r['kind'], r['feature'], r['value']): r for r in rows}
  top = [(r['kind'], r['feature'], r['value'], r['group']) for r in rows[:4]]
  assert ('categorical', 'color', 'violet', 'flagged') in top
  assert ('token', 'text', 'glitch', 'flagged') in top
  assert ('label_pair', slices.LABEL_PAIR_FEATURE, '2 -> 5', 'flagged') in top
  assert found[('label_pair', slices.LABEL_PAIR_FEATURE, '2 -> 5')]['classes'] == [2, 5]
  size_rows = [r for r in rows if r['feature'] == 'size']
  assert size_rows and size_rows[0]['group'] == 'hard' and size_rows[0]['range'][1] is None
  features = {r['feature'] for split in everything['splits'].values() for r in split['rows']}
  assert not features & {'label', 'example_id', 'vog_score', 'vog_bucket', 'vog_flagged'}
  settings = default['settings']
  assert settings['min_support'] == slice_stats.MIN_SUPPORT
  assert settings['left_out'] == ['example_id', 'label']


def test_a_runner_that_cannot_run_tfdv_slices_the_label_pairs_alone(generated, tmp_path):
  data, _, default = generated

  class DaskRunner:  # named as Beam's
    pass

  why = slices.features_not_examined(DaskRunner())
  assert "Beam's DaskRunner cannot run TFDV's statistics" in why
  assert slices.features_not_examined(beam.Pipeline().runner) is None
  found = _run(str(tmp_path), *data, not_examined=why)
  for split in ('train', 'eval'):
    entry = found['splits'][split]
    assert entry['features'] == f'not examined: {why}'
    assert {r['kind'] for r in entry['rows']} <= {slice_stats.LABEL_PAIR}
  # The planted pair, with the same counts as when the features are examined too.
  counted = lambda rows: [(r['value'], r['count'], r['flagged'], r['hard']) for r in rows
                          if r['kind'] == slice_stats.LABEL_PAIR][:1]
  assert counted(found['splits']['train']['rows']) == counted(
      default['splits']['train']['rows']) != []


def test_a_split_not_copied_has_its_label_pairs_only(generated):
  _, everything, _ = generated
  entry = everything['splits']['eval']
  assert entry['features'] == 'not examined: the split is not copied'
  assert entry['examples'] == 50
  assert {r['kind'] for r in entry['rows']} <= {slice_stats.LABEL_PAIR}
  lines = slices.describe(everything)
  assert lines[1].startswith('train: ') and 'lift' in lines[1]
  assert slices.most_confused_pairs(everything, 'train')[0][:2] == (2, 5)


def test_a_split_without_examples_and_no_input_still_writes_the_file(tmp_path):
  with TestPipeline() as p:
    _ = ({'batches': p | 'B' >> beam.Create([]), 'pairs': p | 'P' >> beam.Create([])}
         | slices.FindWhatFlaggedExamplesShare(str(tmp_path), ['train'], ['train']))
  content = slices.read_slices(str(tmp_path / slices.SLICES_FILE))
  assert content['splits']['train']['rows'] == []
  assert content['splits']['train']['examples'] == 0


def test_bad_settings_and_splits_are_refused_before_beam_starts(tmp_path):
  with pytest.raises(ValueError, match='min_support=0'):
    slices.FindWhatFlaggedExamplesShare(str(tmp_path), ['train'], ['train'],
                                        settings=slices.SliceSettings(min_support=0))
  with pytest.raises(ValueError, match=r"feature_splits \['test'\] are not among"):
    slices.FindWhatFlaggedExamplesShare(str(tmp_path), ['train'], ['test'])
  bad = tmp_path / 'slices.json'
  bad.write_text(json.dumps({'format_version': 99}))
  with pytest.raises(ValueError, match='is not a slices file of format 1'):
    slices.read_slices(str(bad))
  bad.write_text('{')
  with pytest.raises(ValueError, match='slices.json'):
    slices.read_slices(str(bad))


def test_a_record_that_is_no_example_counts_as_one_without_features():
  good = _example({'color': b'red', 'size': 0.5, 'text': b'a b', 'label': 1,
                   'example_id': b'x'})
  batch = slices.record_batch([good, b'\x00\x01garbage'], np.array([0, HARD]),
                              np.array([1, 0]), ('label', 'example_id'))
  assert batch.num_rows == 2
  assert set(batch.schema.names) == {'color', 'size', 'text', slices.BUCKET_COLUMN,
                                     slices.FLAGGED_COLUMN}
  assert batch.column(batch.schema.get_field_index('color')).to_pylist() == [[b'red'], None]
  # Records that disagree on a feature's type: the chunk keeps its rows, not features.
  as_int = tf.train.Example(features=tf.train.Features(feature={'color': tf.train.Feature(
      int64_list=tf.train.Int64List(value=[3]))})).SerializeToString()
  batch = slices.record_batch([good, as_int], np.array([0, 0]), np.array([0, 1]), ())
  assert batch.num_rows == 2
  assert set(batch.schema.names) == {slices.BUCKET_COLUMN, slices.FLAGGED_COLUMN}


def _many_values_batch(start, rows, flagged_every=7):
  ids = np.arange(start, start + rows)
  text = pa.array([[f'tok{i} common'.encode()] for i in ids], pa.large_list(pa.large_binary()))
  pairs = pa.array([[int(i)] for i in ids], pa.large_list(pa.int64()))
  bucket = pa.array([[HARD if i % 10 == 0 else 0] for i in ids], pa.large_list(pa.int64()))
  flagged = pa.array([[int(i % flagged_every == 0)] for i in ids], pa.large_list(pa.int64()))
  return pa.RecordBatch.from_arrays([text, pairs, bucket, flagged],
                                    ['text', 'ids', slices.BUCKET_COLUMN,
                                     slices.FLAGGED_COLUMN])


def test_token_accumulators_stay_under_capacity_with_50000_distinct_values():
  capacity = 200
  fn = slices.CountTokens(capacity)
  accumulators = []
  for part in range(5):  # five workers, 10,000 distinct tokens each
    acc = fn.create_accumulator()
    for start in range(part * 10_000, (part + 1) * 10_000, 1_000):
      acc = fn.add_input(acc, _many_values_batch(start, 1_000))
    accumulators.append(pickle.loads(pickle.dumps(acc)))
  acc = fn.merge_accumulators(accumulators)
  sizes = []
  for name in ('text', 'ids'):
    feature = acc[name]
    for sketch in feature.sketches:
      assert len(sketch) <= capacity
      sizes.append(len(pickle.dumps(sketch)))
  # Each sketch pickles to a few KB whatever the 50,000 values; the exact counts would
  # hold 50,000 keys.
  assert max(sizes) < 40 * capacity, sizes
  text = acc['text']
  assert text.is_tokens and acc['ids'].is_tokens is False
  # The token every example holds is counted within the sketch's bound.
  split = text.sketches.split
  assert split.estimate(b'common') <= 50_000 <= split.upper(b'common')
  assert split.total == 100_000


def test_label_pair_accumulators_stay_under_capacity():
  capacity = 100
  fn = slices.CountLabelPairs(capacity)
  acc = fn.create_accumulator()
  rng = np.random.default_rng(1)
  for unit in range(50):
    label = rng.integers(0, 300, 1000)
    predicted = (label + 1 + rng.integers(0, 299, 1000)) % 300
    acc = fn.add_input(acc, slices.unit_group_counts('train', label, predicted,
                                                     rng.random(1000) < 0.1,
                                                     rng.random(1000) < 0.1))
    assert acc.sketches.size() <= 3 * capacity
  assert acc.examples == 50_000
  assert len(pickle.dumps(acc)) < 3 * 40 * capacity


def test_tfdv_statistics_of_20000_distinct_values_are_bounded(tmp_path):
  batches = [('train', _many_values_batch(s, 5_000)) for s in range(0, 20_000, 5_000)]
  pairs = [slices.GroupCounts('train', 20_000, 20_000 // 7 + 1, 2_000, {})]
  with TestPipeline() as p:
    _ = ({'batches': p | 'B' >> beam.Create(batches), 'pairs': p | 'P' >> beam.Create(pairs)}
         | slices.FindWhatFlaggedExamplesShare(str(tmp_path), ['train'], ['train'],
                                               settings=slices.SliceSettings(capacity=100)))
  entry = slices.read_slices(str(tmp_path / slices.SLICES_FILE))['splits']['train']
  assert entry['features'] == 'examined'
  # Counts for at most TOP_VALUES values per slice, 10 ranges, 3 x 100 tokens a feature.
  assert entry['tests'] <= 2 * (3 * slices.TOP_VALUES + 3 * 100 + 10 + 3 * 100)


def _ranking(ranks):
  stats = percentiles.ClassScores(3, 0.1, 0.0, (0.1, 0.1, 0.1))
  return percentiles.Ranking('raw', (50.0, 90.0), {('train', 0): stats, ('train', 1): stats},
                             ranks)


def _write_unit(tmp_path, records, leave_out):
  path = fixtures.write_records(str(tmp_path / 'in.gz'), records)
  n = len(records)
  classes = np.arange(n) % 2
  batch = score_batch.ScoredBatch('train', 0, list(range(n)), [f'r{i}' for i in range(n)],
                                  [True] * n, classes, classes, 1 - classes,
                                  np.full(n, 0.1, np.float32), np.zeros((n, 0)))
  outputs = beam_writers.FileOutputs(
      scored_dir=str(tmp_path / 'out'), work_dir=str(tmp_path / 'work'),
      units_per_split={'train': 1}, copy_splits=('train',), compression='gzip',
      example_id_key='example_id', rank_by='vog', history_shard_of={('train', 0): 0},
      num_history_shards=1, write_history=True, with_signals=False,
      slice_leave_out=leave_out)
  got = {}
  with TestPipeline() as p:
    written = ({'units': p | 'U' >> beam.Create([WorkUnit('train', 0, (
                    InputFile('train', 0, path, 'GZIP'),))]),
                'files_read': p | 'F' >> beam.Create([FileRead('train', 0, path, n, None,
                                                               0, 0)]),
                'scored': p | 'S' >> beam.Create([batch]),
                'quarantined': p | 'Q' >> beam.Create([]),
                'ranking': p | 'R' >> beam.Create([_ranking({('train', 0, 3): 1})])}
               | beam_writers.WriteScoredExamples(outputs))
    got['keys'] = sorted(written)
    if leave_out is not None:
      assert_that(written['slice_pairs'], equal_to([slices.GroupCounts(
          'train', n, 1, n, {(0, 1): (3, 0, 3), (1, 0): (2, 1, 2)})]), label='pairs')
      assert_that(written['slice_batches'] | beam.Map(
          lambda kv: (kv[0], kv[1].num_rows, sorted(kv[1].schema.names),
                      kv[1].column(kv[1].schema.get_field_index(
                          slices.FLAGGED_COLUMN)).to_pylist())),
          equal_to([('train', n, ['image', slices.BUCKET_COLUMN, slices.FLAGGED_COLUMN],
                     [[0], [0], [0], [1], [0]])]), label='batches')
  out_dir = os.path.join(str(tmp_path / 'out'), 'Split-train')
  got['bytes'] = [r.numpy() for r in tf.data.TFRecordDataset(
      os.path.join(out_dir, os.listdir(out_dir)[0]), 'GZIP')]
  return got


def test_writers_hand_over_decoded_records_and_pairs_and_write_the_same_files(tmp_path):
  records = [fixtures.example(np.full(64, i / 10), i % 2, f'r{i}').SerializeToString()
             for i in range(5)]
  plain = _write_unit(tmp_path / 'plain', records, None)
  sliced = _write_unit(tmp_path / 'sliced', records, ('label',))
  assert plain['bytes'] == sliced['bytes'] and len(plain['bytes']) == 5  # copies unchanged
  assert 'slice_batches' not in plain['keys']
  assert {'slice_batches', 'slice_pairs'} <= set(sliced['keys'])
