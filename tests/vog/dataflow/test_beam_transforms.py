"""Each transform of the Beam audit on its own, on a real Beam runner, with assert_that."""

import json
import os

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.baselines import normalize_scores
from components.vog import audit_plan
from components.vog import factories
from components.vog.dataflow import audit_summary
from components.vog.dataflow import beam_audit
from components.vog.dataflow import beam_writers
from components.vog.inputs import examples_io
from components.vog.compute import percentiles
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.dataflow import score_batch
from components.vog.report import score_table
from components.vog.compute import signals as signals_lib
from components.vog.dataflow.beam_audit import FileRead, InputFile, WorkUnit
from components.vog.inputs.examples_io import InputRecord, Quarantined
from components.vog.settings import VogSettings
import fixtures


def _ranking(ranks):
  """A Ranking of one class per split (0 and 1 of train) with scores around 0.1."""
  stats = percentiles.ClassScores(3, 0.1, 0.0, (0.1, 0.1, 0.1))
  return percentiles.Ranking('raw', (50.0, 90.0), {('train', 0): stats, ('train', 1): stats},
                             ranks)


def _batch(split, indices, raw, classes, signals=None, file_index=0, ids=None):
  """A ScoredBatch of examples at `indices` of one file, labelled with their class."""
  n = len(indices)
  classes = np.broadcast_to(np.asarray(classes), (n,))
  return score_batch.ScoredBatch(
      split, file_index, indices, ids or [f'{split}-{i}' for i in indices], [True] * n,
      classes, classes, classes, np.broadcast_to(np.asarray(raw, np.float32), (n,)),
      np.zeros((n, 0)) if signals is None else signals)


def _summarize(p, batches, normalize, budget, rank_by='vog', vog_normalize=''):
  """SummarizeScores over the partials of `batches`, as the scorer makes them."""
  partials = [beam_audit.batch_partials(b, rank_by, budget, normalize == 'abs-class')
              for b in batches]
  return (p | 'Partials' >> beam.Create(partials)
          | beam_audit.SummarizeScores(normalize, (50.0, 90.0), budget, rank_by,
                                       vog_normalize))


def _outputs(tmp_path, copy_splits=('train',), files=None):
  return beam_writers.FileOutputs(
      scored_dir=str(tmp_path / 'out'), work_dir=str(tmp_path / 'work'),
      units_per_split=files or {'train': 1}, copy_splits=tuple(copy_splits),
      compression='gzip', example_id_key='example_id', rank_by='vog',
      history_shard_of={('train', 0): 0}, num_history_shards=1, write_history=True,
      with_signals=False)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('transforms'))
  images, labels, _ = fixtures.digits(60, seed=4)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  records = [fixtures.example(im, lab, f'id-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  return root, records


def test_read_record_batches_numbers_every_copy_and_reports_damage(tmp_path):
  a = fixtures.write_records(str(tmp_path / 'a.gz'), [b'x', b'x', b'y'])
  b = fixtures.write_records(str(tmp_path / 'b'), [b'x'], gzip=False)
  full = fixtures.write_records(str(tmp_path / 'c'), [b'first', b'second'], gzip=False)
  with open(full, 'rb') as f:
    data = f.read()
  cut = str(tmp_path / 'cut')
  with open(cut, 'wb') as f:
    f.write(data[:-3])  # The second record loses its last bytes.
  files = [InputFile('train', 0, a, 'GZIP'), InputFile('train', 1, b, 'UNCOMPRESSED'),
           InputFile('eval', 0, cut, 'UNCOMPRESSED')]
  units = [WorkUnit(f.split, f.file_index, (f,)) for f in files]
  with TestPipeline() as p:
    read = (p | beam.Create(units) | beam_audit.ReadRecordBatches(batch_size=2))
    assert_that(read['batches'], equal_to([
        [InputRecord('train', 0, 0, b'x'), InputRecord('train', 0, 1, b'x')],
        [InputRecord('train', 0, 2, b'y')], [InputRecord('train', 1, 0, b'x')],
        [InputRecord('eval', 0, 0, b'first')]]), label='batches')
    file_rows = read['files'] | beam.Map(lambda f: (f.split, f.file_index, f.records,
                                                    f.damage is not None))
    assert_that(file_rows, equal_to([('train', 0, 3, False), ('train', 1, 1, False),
                                     ('eval', 0, 1, True)]), label='files')


def test_parse_and_score_quarantines_bad_records_and_scores_the_rest(trained):
  root, records = trained
  plan = audit_plan.plan_audit(VogSettings(batch_size=8), os.path.join(root, 'run'),
                               fixtures.write_examples_artifact(os.path.join(root, 'ex'),
                                                           {'train': records}))
  scorer = factories.ScorerFactory(plan.entries, None, 'loss', 'label')
  parser = factories.ParserFactory(plan.input_specs, plan.settings, plan.num_classes, None)
  inputs = [InputRecord('train', 0, i, r) for i, r in enumerate(records[:20])]
  inputs.append(InputRecord('train', 0, 20, records[0]))  # an exact copy
  inputs.append(InputRecord('train', 0, 21, b'\x00not an example'))
  batches = [inputs[i:i + 8] for i in range(0, len(inputs), 8)]
  with TestPipeline() as p:
    out = p | beam.Create(batches) | beam_audit.ParseAndScore(scorer, parser)
    rows = out['scored'] | beam.FlatMap(lambda b: zip(b.record_index.tolist(),
                                                      b.example_id, b.vog_raw.tolist()))
    assert_that(rows | beam.Map(lambda r: r[:2]),
                equal_to([(i, f'id-{i}') for i in range(20)] + [(20, 'id-0')]),
                label='scored')
    assert_that(rows | beam.Filter(lambda r: r[0] in (0, 20))
                | beam.Map(lambda r: round(r[2], 7)) | beam.combiners.Count.PerElement()
                | beam.Map(lambda kv: kv[1]),
                equal_to([2]), label='copies score alike')
    # One ScoredBatch per batch of 8 (the last one less its quarantined record).
    assert_that(out['scored'] | beam.Map(len), equal_to([8, 8, 5]), label='batches')
    assert_that(out['quarantined'] | beam.Map(lambda q: (q.record_index, q.kind)),
                equal_to([(21, 'unparsable record')]), label='quarantine')


def test_summarize_scores_normalises_per_class_like_the_numpy_oracle():
  rng = np.random.default_rng(0)
  raw = rng.gamma(2.0, 1.0, 40)
  classes = np.repeat([0, 1, 2, 3], 10)
  batches = [_batch('train', list(range(k, k + 10)), raw[k:k + 10], classes[k:k + 10])
             for k in range(0, 40, 10)]
  raw = raw.astype(np.float32).astype(np.float64)  # as the scorer stores it
  expected = normalize_scores(raw, classes, 'class')
  with TestPipeline() as p:
    out = _summarize(p, batches, 'class', 4)
    placed = out['ranking'] | beam.FlatMap(lambda r: [
        (i, round(r.place('train', int(classes[i]), float(raw[i]), ('train', 0, i))[0], 9))
        for i in range(40)])
    assert_that(placed, equal_to([(i, round(float(expected[i]), 9)) for i in range(40)]),
                label='scores')
    assert_that(out['class_stats'] | beam.Map(lambda kv: (kv[0], kv[1][0],
                                                         round(kv[1][1], 9))),
                equal_to([(('train', c), 10, round(float(raw[classes == c].mean()), 9))
                          for c in range(4)]), label='stats')
    # The four highest normalised scores are flagged, ranked from the highest.
    top = sorted(range(40), key=lambda i: -expected[i])[:4]
    assert_that(out['ranking'] | beam.Map(lambda r: sorted(r.ranks.items())),
                equal_to([sorted((('train', 0, i), rank) for rank, i in
                                 enumerate(top, start=1))]), label='ranks')


def test_percentiles_place_scores_within_their_split():
  batches = ([_batch('train', list(range(k, k + 25)), np.arange(k, k + 25), 0)
              for k in range(0, 100, 25)] + [_batch('eval', list(range(10)),
                                                    1000.0 + np.arange(10), 1)])
  rows = [(b.split, i, int(b.target_class[0]), float(v)) for b in batches
          for i, v in zip(b.record_index.tolist(), b.vog_raw.tolist())]
  with TestPipeline() as p:
    out = _summarize(p, batches, 'raw', 4)
    placed = out['ranking'] | beam.FlatMap(lambda r: [
        (split, i) + tuple(r.place(split, c, v, (split, 0, i))[2:4])
        for split, i, c, v in rows])
    assert_that(placed, equal_to(
        [('train', i, percentiles.decile_of(100 * i / 99),
          percentiles.bucket_of(100 * i / 99, [50, 90])) for i in range(100)] +
        [('eval', i, percentiles.decile_of(100 * i / 9),
          percentiles.bucket_of(100 * i / 9, [50, 90])) for i in range(10)]))


def test_a_signal_ranks_across_the_split_and_vog_score_stays_class_normalised():
  # rank_by='confidence': the least confident examples are flagged wherever their class,
  # vog_score is still VoG normalised within class, and `agreeing` names each signal whose
  # own split-wide rank puts a flagged example above the hard cut (90th percentile).
  rng = np.random.default_rng(1)
  n = 60
  raw = rng.gamma(2.0, 1.0, n)
  classes = np.repeat([0, 1, 2], 20)
  confidence = rng.uniform(0.05, 0.95, n)
  # A batch's signal columns follow signals.REGISTRY.
  column = signals_lib.fields().index(signals_lib.CONFIDENCE)
  values = rng.normal(size=(n, len(signals_lib.REGISTRY))).astype(np.float32)
  values[:, column] = confidence
  confidence = values[:, column].astype(np.float64)  # as the scorer stores it (float32)
  raw = raw.astype(np.float32).astype(np.float64)
  batches = [_batch('train', list(range(k, min(k + 16, n))), raw[k:k + 16],
                    classes[k:k + 16], values[k:k + 16]) for k in range(0, n, 16)]
  whole = score_batch.concat(batches)
  suspicions = {('train', name): v.tolist()
                for name, v in score_batch.suspicions(whole).items()}
  expected_vog = normalize_scores(raw, classes, 'class')
  top = sorted(range(n), key=lambda i: confidence[i])[:5]

  def check(r):
    placed = [r.place('train', int(classes[i]), -float(confidence[i]), ('train', 0, i),
                      float(raw[i])) for i in range(n)]
    assert sorted(r.ranks.items()) == sorted((('train', 0, i), rank)
                                             for rank, i in enumerate(top, start=1))
    for i, (score, pct, _, _, rank) in enumerate(placed):
      assert score == pytest.approx(expected_vog[i])
      assert pct == pytest.approx(100.0 * np.mean(-confidence <= -confidence[i]))
      assert (rank > 0) == (i in top)
    # The Ranking carries the flagged examples' suspicions; counting the split's examples
    # below them, file by file, says exactly which signals agree.
    ranks, flagged = r.flagged_of_split('train')
    assert ranks == [1, 2, 3, 4, 5]
    below = sum(percentiles.agreement_counts(flagged, score_batch.suspicion_matrix(b))
                for b in batches)
    for rank, i in enumerate(top, start=1):
      agreeing = percentiles.agreeing(vocab.AGREEMENT_NAMES, below[rank - 1], n, 90.0)
      oracle = [name for name, col in suspicions.items()
                if 100.0 * np.mean(np.asarray(col) < col[i]) > 90.0]
      assert list(agreeing) == [name for _, name in oracle]
    return True

  with TestPipeline() as p:
    out = _summarize(p, batches, 'raw', 5, rank_by='confidence', vog_normalize='class')
    assert_that(out['ranking'] | beam.Map(check), equal_to([True]), label='ranking')
    # class_stats (summary.json's per-class vog_raw mean and std) stay those of VoG.
    assert_that(out['class_stats'] | beam.Map(lambda kv: (kv[0], round(kv[1][1], 9))),
                equal_to([(('train', c), round(float(raw[classes == c].mean()), 9))
                          for c in range(3)]), label='stats')


def test_each_file_gets_only_its_own_ranks_and_places_them_as_the_whole_ranking():
  # Two splits, three files each, ranked by a signal with agreement: the part of the
  # Ranking a file's writer gets places every example of the file exactly as the whole
  # Ranking does, carries its own flagged examples only, and stays small as the
  # budget grows: no file receives the other files' ranks.
  rng = np.random.default_rng(5)
  batches = []
  for split in ('train', 'eval'):
    for f in range(3):
      n = 40
      raw = rng.gamma(2.0, 1.0, n).astype(np.float32).astype(np.float64)
      classes = rng.integers(0, 3, n)
      values = rng.normal(size=(n, 7)).astype(np.float32)
      batches.append(_batch(split, list(range(n)), raw, classes, values, file_index=f))
  budget = 60
  with TestPipeline() as p:
    out = _summarize(p, batches, 'class', budget, rank_by='confidence',
                     vog_normalize='class')

    def check(whole):
      assert len(whole.ranks) == budget
      reached = []
      for b in batches:
        part = whole.for_file(b.split, b.file_index)
        assert set(part.ranks) == {p for p in whole.ranks
                                   if p[:2] == (b.split, b.file_index)}
        ranked = score_batch.rank_values(b, 'confidence')
        a = whole.place_file(b.split, b.file_index, b.target_class, ranked,
                             b.record_index, b.vog_raw)
        z = part.place_file(b.split, b.file_index, b.target_class, ranked,
                            b.record_index, b.vog_raw)
        for name in a:
          np.testing.assert_array_equal(a[name], z[name], err_msg=name)
        ranks, flagged = part.flagged_of_split(b.split)
        whole_ranks, whole_flagged = whole.flagged_of_split(b.split)
        assert ranks == whole_ranks and len(ranks) > 0
        np.testing.assert_array_equal(flagged, whole_flagged)
        reached.extend(part.ranks.items())
      # Each flagged example's rank reaches one file's writer, once.
      assert sorted(reached) == sorted(whole.ranks.items())
      return True

    assert_that(out['ranking'] | beam.Map(check), equal_to([True]))


def test_a_split_percentile_mixes_its_classes_by_count():
  # Two classes of one split with the same spread around different means: after class
  # normalisation they are one distribution, so a score's percentile is as in one class.
  stats = {('train', 0): percentiles.ClassScores(11, 5.0, 1.0, tuple(np.linspace(3, 7, 11))),
           ('train', 1): percentiles.ClassScores(11, 50.0, 1.0,
                                                 tuple(np.linspace(48, 52, 11)))}
  ranking = percentiles.Ranking('class', (50.0, 90.0), stats, {})
  for z in (-2.5, -1.9, -0.3, 0.1, 0.7, 1.9, 2.5):  # between grid points: no float ties
    assert ranking.percentile('train', z) == pytest.approx(
        percentiles.percentile_of(5.0 + z, np.linspace(3, 7, 11)))
  assert ranking.place('train', 1, 52.0, ('train', 0, 0))[:2] == (2.0, 100.0)


@pytest.mark.parametrize('normalize', ['class', 'abs-class', 'raw'])
def test_review_candidates_per_class_hold_the_global_top(normalize):
  rng = np.random.default_rng(3)
  budget = 7
  rows = [(('train' if i % 3 else 'eval'), int(rng.integers(0, 4)),
           float(rng.gamma(2.0, 1.0)), (('train' if i % 3 else 'eval'), i % 2, i))
          for i in range(300)]
  rows += [('eval', 9, 1.0, ('eval', 0, 1000))]  # a class of one: its score is 0
  classes = {}
  for key in {(r[0], r[1]) for r in rows}:
    values = np.array([r[2] for r in rows if (r[0], r[1]) == key])
    classes[key] = percentiles.ClassScores(len(values), float(values.mean()),
                                           float(values.std()), tuple(values))
  everything = {key: [(r[2], r[3]) for r in rows if (r[0], r[1]) == key] for key in classes}
  candidates = {}
  for key, members in everything.items():
    by = lambda f: sorted(members, key=f, reverse=True)[:budget]  # pylint: disable=cell-var-from-loop
    candidates[key] = (by(lambda c: percentiles.review_key(c[0], c[1])) +
                       by(lambda c: percentiles.review_key(-c[0], c[1])) +
                       by(lambda c: percentiles.review_key(0.0, c[1])))
  assert (percentiles.rank_for_review(classes, candidates, normalize, budget) ==
          percentiles.rank_for_review(classes, everything, normalize, budget))


def test_equal_scores_are_ranked_one_by_one_in_input_order():
  batches = [_batch('train', [0, 1, 2], 5.0, 0), _batch('train', [3, 4, 5, 6, 7],
                                                        np.arange(5.0), 0)]
  with TestPipeline() as p:
    out = _summarize(p, batches, 'raw', 4)
    assert_that(out['ranking'] | beam.Map(lambda r: sorted(r.ranks.items())),
                equal_to([[(('train', 0, 0), 1), (('train', 0, 1), 2), (('train', 0, 2), 3),
                           (('train', 0, 7), 4)]]))


def _write(tmp_path, path, batches, quarantined, ranks, **outputs):
  with TestPipeline() as p:
    count = sum(1 for _ in tf.data.TFRecordDataset(path, 'GZIP'))
    written = ({'units': p | 'U' >> beam.Create([WorkUnit('train', 0, (
                    InputFile('train', 0, path, 'GZIP'),))]),
                'files_read': p | 'F' >> beam.Create([FileRead('train', 0, path, count,
                                                               None, 0, 0)]),
                'scored': p | 'S' >> beam.Create(batches).with_output_types(
                    score_batch.ScoredBatch),
                'quarantined': p | 'Q' >> beam.Create(quarantined).with_output_types(
                    Quarantined),
                'ranking': p | 'R' >> beam.Create([_ranking(ranks)])}
               | beam_writers.WriteScoredExamples(_outputs(tmp_path, **outputs)))
    yield written


def test_write_scored_examples_zips_by_position_and_counts_what_it_wrote(tmp_path):
  records = [fixtures.example(np.zeros(64), 1, 'same').SerializeToString()] * 3
  path = fixtures.write_records(str(tmp_path / 'in.gz'), records + [b'junk'])
  # Two batches of one file, out of order: the writer puts them back in file order.
  scored = [_batch('train', [2], 0.1, 1, ids=['same']),
            _batch('train', [0, 1], 0.1, 1, ids=['same', 'same'])]
  quarantined = [Quarantined('train', 'x', 'unparsable record', '', b'junk', 0, 3)]
  for written in _write(tmp_path, path, scored, quarantined, {('train', 0, 1): 1}):
    assert_that(written['written'], equal_to([beam_writers.FileWritten('train', 0, 3, 1, 0)]),
                label='written')
    assert_that(written['flagged'] | beam.Map(lambda pair: (pair[0].rank,
                                                            pair[0].example_id, pair[1])),
                equal_to([(1, 'same', records[1])]), label='flagged')
  out_dir = str(tmp_path / 'out')
  assert os.listdir(os.path.join(out_dir, 'Split-train')) == ['data_tfrecord-00000-of-00001.gz']
  out = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
      tf.io.gfile.glob(os.path.join(out_dir, 'Split-train', '*.gz')), 'GZIP')]
  assert len(out) == 3  # every copy is its own example
  assert [e.features.feature['vog_flagged'].int64_list.value[0] for e in out] == [0, 1, 0]
  assert [e.features.feature['vog_bucket'].bytes_list.value[0] for e in out] == [b'hard'] * 3
  table = score_table.read_split(str(tmp_path / 'work'), 'train').to_pydict()
  assert table['record_index'] == [0, 1, 2] and table['vog_flagged'] == [0, 1, 0]
  assert table['review_rank'] == [0, 1, 0] and table['example_id'] == ['same'] * 3


def test_a_split_that_is_not_copied_gets_its_score_table_and_its_flagged_bytes(tmp_path):
  records = [fixtures.example(np.full(64, i / 10), 1, f'r{i}').SerializeToString()
             for i in range(6)]
  path = fixtures.write_records(str(tmp_path / 'in.gz'), records)
  scored = [_batch('train', list(range(6)), np.arange(6) / 10, 1,
                   ids=[f'r{i}' for i in range(6)])]
  for written in _write(tmp_path, path, scored, [], {('train', 0, 4): 1}, copy_splits=()):
    assert_that(written['written'], equal_to([beam_writers.FileWritten('train', 0, 6, 1, 0)]),
                label='written')
    assert_that(written['flagged'] | beam.Map(lambda pair: (pair[0].example_id, pair[1])),
                equal_to([('r4', records[4])]), label='flagged')
  assert not os.path.exists(tmp_path / 'out')  # no copy of the examples
  table = score_table.read_split(str(tmp_path / 'work'), 'train').to_pydict()
  assert table['example_id'] == [f'r{i}' for i in range(6)]
  assert table['vog_flagged'] == [0, 0, 0, 0, 1, 0]
  assert table['vog_raw'] == pytest.approx(list(np.arange(6) / 10), rel=1e-6)


def test_write_scored_examples_counts_a_record_without_a_score(tmp_path):
  path = fixtures.write_records(str(tmp_path / 'in.gz'), [b'a', b'b'])
  for written in _write(tmp_path, path, [_batch('train', [0], 0.1, 0)], [], {}):
    assert_that(written['written'], equal_to([beam_writers.FileWritten('train', 0, 1, 0, 1)]))


def test_file_counts_count_a_whole_file_at_once():
  rng = np.random.default_rng(2)
  n = 50
  classes, labels = rng.integers(0, 3, n), rng.integers(-1, 3, n)
  predicted, deciles = rng.integers(0, 3, n), rng.integers(1, 11, n)
  flagged, hard = rng.integers(0, 2, n), rng.integers(0, 2, n)
  signals = {'audit_a': rng.normal(size=n), 'audit_b': rng.normal(size=n)}
  counts = audit_summary.file_counts('s', classes, labels, predicted, deciles, flagged,
                                     hard, signals)
  oracle = {}
  for i in range(n):  # one example at a time, as the summary reads them
    c, d = int(classes[i]), int(deciles[i])
    for key in [('scored', 's'), ('class_decile', 's', c, d)] + (
        [('class_hard', 's', c)] if hard[i] else []) + (
        [('flagged', 's'), ('class_flagged', 's', c)] if flagged[i] else []) + (
        [('class_labelled', 's', c), ('decile_labelled', 's', d)] if labels[i] >= 0
        else []) + ([('class_errors', 's', c), ('decile_errors', 's', d)]
                    if labels[i] >= 0 and predicted[i] != labels[i] else []):
      oracle[key] = oracle.get(key, 0) + 1
    for name, column in signals.items():
      key = ('class_signal', 's', c, name)
      oracle[key] = oracle.get(key, 0.0) + column[i]
  assert set(counts) == set(oracle)
  for key, value in oracle.items():
    assert counts[key] == pytest.approx(value)


def test_audit_summary_fn_combines_tallies_into_counts():
  counts = audit_summary.file_counts(
      'train', np.array([1, 1, 2]), np.array([1, 1, -1]), np.array([1, 2, 2]),
      np.array([10, 3, 1]), np.array([1, 0, 0]), np.array([1, 0, 0]), {})
  # The writer counts its flagged examples by kind too.
  counts.update(audit_summary.kind_counts('train', ['wrong label']))
  tallies = [audit_summary.FileTally('train', 'f0', 4, None),
             audit_summary.CountsTally('train', counts),
             audit_summary.QuarantinedTally('train', 'missing label'),
             audit_summary.ClassStatsTally('train', 1, 2, 0.5, 0.1),
             audit_summary.ClassStatsTally('train', 2, 1, 0.2, 0.0),
             audit_summary.WrittenTally('train', 3, 1, 0),
             audit_summary.HistoryWrittenTally('train', 3)]
  with TestPipeline() as p:
    summary = (p | beam.Create(tallies)
               | beam.CombineGlobally(audit_summary.AuditSummaryFn(['train'], {'x': 1})))

    def check(results):
      (s,) = results
      assert s['x'] == 1
      assert s['counts'] == {'seen': 4, 'scored': 3, 'quarantined': 1, 'flagged': 1}
      assert s['splits']['train']['written'] == 3
      assert s['quarantine_kinds'] == {'train': {'missing label': 1}}
      class_1 = [r for r in s['per_class'] if r['class'] == 1][0]
      assert class_1['error_rate'] == 0.5 and class_1['flagged_share'] == 0.5
      assert class_1['hard'] == 1
      assert class_1['decile_counts'] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
      assert s['flag_kinds'] == {'train': {'wrong label': 1, 'atypical': 0, 'unclear': 0}}
      audit_summary.check_conservation(s, flagged_rows=1)
    assert_that(summary, check)


def test_conservation_check_refuses_flagged_examples_without_a_kind():
  summary = {'counts': {'flagged': 2}, 'splits': {'eval': {
      'seen': 10, 'scored': 10, 'quarantined': 0, 'flagged': 2, 'written': 10,
      'written_flagged': 2, 'unmatched': 0, 'history_written': 10}},
      'flag_kinds': {'eval': {'wrong label': 1, 'atypical': 0, 'unclear': 0}}}
  with pytest.raises(audit_summary.AuditLostExamples,
                     match="flagged 2 examples in split 'eval' but gave 1 of them a kind"):
    audit_summary.check_conservation(summary, flagged_rows=2)
  summary['flag_kinds']['eval']['unclear'] = 1
  audit_summary.check_conservation(summary, flagged_rows=2)


def test_conservation_check_names_the_split_and_counts():
  summary = {'counts': {'flagged': 0}, 'splits': {'eval': {
      'seen': 10, 'scored': 9, 'quarantined': 0, 'flagged': 0, 'written': 9,
      'written_flagged': 0, 'unmatched': 1, 'history_written': 9}}}
  with pytest.raises(audit_summary.AuditLostExamples,
                     match="split 'eval': seen 10, written 9, quarantined 0"):
    audit_summary.check_conservation(summary, flagged_rows=0)


def test_write_difficulty_report_writes_summary_flagged_rows_and_quarantine(tmp_path):
  s = report_rows.FlaggedRow(rank=1, example_id='e', split='train', label=1, predicted_class=1,
                             target_class=1, vog_score=0.3, vog_raw=0.3, vog_percentile=100.0,
                             vog_bucket='hard')
  inputs = {
      'files_read': [FileRead('train', 0, 'f', 2)],
      'tallies': [audit_summary.CountsTally('train', audit_summary.file_counts(
          'train', np.array([1]), np.array([1]), np.array([1]), np.array([10]),
          np.array([1]), np.array([1]), {}))],
      'quarantined': [Quarantined('train', 'q', 'missing label', 'no value', b'raw', 0, 1)],
      'class_stats': [(('train', 1), (1, 0.3, 0.0))],
      'written': [beam_writers.FileWritten('train', 0, 1, 1, 0)],
      'flagged': [(s, b'bytes')],
  }
  work = str(tmp_path)
  with TestPipeline() as p:
    _ = ({k: p | k >> beam.Create(v) for k, v in inputs.items()}
         | beam_writers.WriteDifficultyReport(work, ['train'], {'format_version': 2},
                                              {('train', 0): 0}, 1))
  summary = json.load(open(os.path.join(work, beam_writers.SUMMARY_WORK_FILE)))
  assert summary['counts'] == {'seen': 2, 'scored': 1, 'quarantined': 1, 'flagged': 1}
  flagged = [json.loads(l) for l in open(os.path.join(work, beam_writers.FLAGGED_RECORDS_FILE))]
  assert [r['rank'] for r in flagged] == [1]
  shards = tf.io.gfile.glob(os.path.join(work, 'quarantine-*-of-*.jsonl'))
  rows = [json.loads(l) for path in shards for l in open(path)]
  assert [(r['example_id'], r['kind']) for r in rows] == [('q', 'missing label')]


def _flagged_report(work, per_part):
  """WriteDifficultyReport of seven flagged rows of two splits, whose agreement counts
  come from two files per split; returns the flagged work file's rows."""
  names = vocab.AGREEMENT_NAMES
  rows, agreement = [], []
  for split, ranks in (('train', [1, 3, 4, 7]), ('eval', [2, 5, 6])):
    for rank in ranks:
      rows.append((report_rows.FlaggedRow(
          rank=rank, example_id=f'{split}-{rank}', split=split, label=0, predicted_class=0,
          target_class=0, vog_score=1.0 / rank, vog_raw=1.0 / rank, vog_percentile=99.0,
          vog_bucket='hard', signals={n: 0.0 for n in vocab.SIGNAL_FIELDS}, agreeing=()),
                   f'bytes of {split}-{rank}'.encode()))
    for half in range(2):  # two files of 50 examples: rank r is above 90 - 10 r of them
      below = np.asarray([[max(0, 45 - 5 * r + 3 * j) for j in range(len(names))]
                          for r in ranks])
      agreement.append((split, beam_writers.AgreementCounts(tuple(ranks), 50, below)))
  inputs = {'files_read': [FileRead('train', 0, 'f', 4), FileRead('eval', 0, 'g', 3)],
            'tallies': [], 'quarantined': [], 'class_stats': [],
            'written': [beam_writers.FileWritten('train', 0, 4, 4, 0),
                        beam_writers.FileWritten('eval', 0, 3, 3, 0)],
            'flagged': rows[::-1], 'agreement': agreement}
  with TestPipeline() as p:
    _ = ({k: p | k >> beam.Create(v) for k, v in inputs.items()}
         | beam_writers.WriteDifficultyReport(
             work, ['train', 'eval'], {'format_version': 2}, {('train', 0): 0,
                                                              ('eval', 0): 1}, 2,
             flagged_rows_per_part=per_part))
  with open(os.path.join(work, beam_writers.FLAGGED_RECORDS_FILE)) as f:
    return [json.loads(line) for line in f]


def test_flagged_rows_written_in_parts_join_in_rank_order_with_their_agreement(tmp_path):
  # Seven flagged rows in parts of two ranks: four parts, each written by its own
  # worker, joined into the same file as one part of all of them would be.
  whole = _flagged_report(str(tmp_path / 'whole'), per_part=1000)
  parts = _flagged_report(str(tmp_path / 'parts'), per_part=2)
  assert [r['rank'] for r in parts] == [1, 2, 3, 4, 5, 6, 7]
  assert parts == whole
  assert len(tf.io.gfile.glob(str(tmp_path / 'parts' / beam_writers.FLAGGED_PARTS_DIR /
                                  '*.jsonl'))) == 4
  # Each row has its own split's counts: 100 examples, 90 - 10 r + 6 j of them below
  # name j, so a name agrees (above 90% of the split) when 6 j > 10 r.
  for row in parts:
    expected = [n for j, n in enumerate(vocab.AGREEMENT_NAMES)
                if 2 * max(0, 45 - 5 * row['rank'] + 3 * j) > 90]
    assert row['agreeing'] == expected, row['rank']
  assert any(row['agreeing'] for row in parts)


def test_flagged_parts_that_overlap_are_refused(tmp_path):
  a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
  for path in (a, b):
    open(path, 'w').close()
  with pytest.raises(ValueError, match='flagged parts 0 and 1 overlap'):
    beam_writers._join_flagged_parts([(1, b, 2, 3), (0, a, 1, 2)], str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


def test_batch_parsing_agrees_with_record_by_record_parsing(trained):
  root, records = trained
  plan = audit_plan.plan_audit(VogSettings(), os.path.join(root, 'run'),
                               fixtures.write_examples_artifact(os.path.join(root, 'ex2'),
                                                           {'train': records}))
  parser = factories.ParserFactory(plan.input_specs, plan.settings, plan.num_classes, None)()
  image = np.linspace(0, 1, 64)
  nan_image = image.copy()
  nan_image[3] = np.nan
  cases = [
      records[:10],  # all good: the one-call path
      records[:5] + [fixtures.example(nan_image, 2, 'nan').SerializeToString(),
                     fixtures.example(image, 42, 'range').SerializeToString()],
      records[:3] + [fixtures.example(image, 1).SerializeToString()],  # no id
      records[:3] + [fixtures.example(image[:10], 1, 'short').SerializeToString(),
                     b'\x00junk', fixtures.example(image, None, 'nolabel').SerializeToString()],
  ]
  for case in cases:
    batch = [InputRecord('train', 0, i, r) for i, r in enumerate(case)]
    good, bad = parser.parse_batch(batch)
    one_by_one = [parser.parse('train', r) for r in case]
    expected_bad = [(i, q.kind, q.detail, q.example_id) for i, q in enumerate(one_by_one)
                    if isinstance(q, Quarantined)]
    assert [(q.record_index, q.kind, q.detail, q.example_id) for q in bad] == expected_bad
    expected_good = [(i, e) for i, e in enumerate(one_by_one)
                     if isinstance(e, examples_io.ScorableExample)]
    assert [r.record_index for r in good.records] == [i for i, _ in expected_good]
    assert good.example_ids == [e.example_id for _, e in expected_good]
    assert good.has_example_ids == [e.has_example_id for _, e in expected_good]
    assert good.labels == [e.label for _, e in expected_good]
    np.testing.assert_array_equal(
        good.inputs['image'], np.stack([e.inputs['image'] for _, e in expected_good]))


@pytest.mark.parametrize('normalize', ['class', 'abs-class', 'raw'])
def test_placing_as_arrays_agrees_with_one_by_one(normalize):
  rng = np.random.default_rng(5)
  raw = rng.gamma(2.0, 1.0, 60)
  classes = np.repeat([0, 1, 2], 20)
  stats = {('train', c): percentiles.ClassScores(
      20, float(raw[classes == c].mean()), float(raw[classes == c].std()),
      tuple(np.quantile(raw[classes == c], np.linspace(0, 1, 101))))
           for c in range(3)}
  stats[('train', 3)] = percentiles.ClassScores(1, 2.0, 0.0, (2.0,))  # scores 0
  ranking = percentiles.Ranking(normalize, (50.0, 90.0), stats, {('train', 0, 4): 1})
  classes = list(classes) + [3]
  raw = list(raw) + [2.0]
  positions = [('train', 0, i) for i in range(61)]
  together = ranking.place_all('train', classes, raw, positions)
  for i in range(61):
    z = stats[('train', classes[i])].score(raw[i], normalize)
    share = sum(v.count * v.share_at_or_below(z, normalize) for v in stats.values())
    expected_p = 100.0 * share / sum(v.count for v in stats.values())
    assert together[i][0] == z
    assert together[i][1] == pytest.approx(expected_p, abs=1e-9)
    assert together[i][4] == (1 if i == 4 else 0)


@pytest.mark.parametrize('two_sided', [False, True])
def test_candidates_picked_per_batch_and_merged_are_those_of_the_whole_class(two_sided):
  # Many equal values: ties must go to the earlier position, as review_key says.
  rng = np.random.default_rng(6)
  k, n = 7, 300
  values = np.round(rng.normal(size=n), 1)
  files, records = np.repeat([0, 1, 2], 100), np.tile(np.arange(100), 3)
  batches = [percentiles.batch_candidates(values[i:i + 25], 'train', int(files[i]),
                                          records[i:i + 25], k, two_sided,
                                          np.arange(i, i + 25)[:, None] * 1.0)
             for i in range(0, n, 25)]
  merged = percentiles.select_candidates(
      [percentiles.select_candidates(batches[:5], k, two_sided),
       percentiles.select_candidates(batches[5:], k, two_sided)], k, two_sided)
  everything = [(float(v), ('train', int(f), int(r))) for v, f, r in zip(values, files, records)]
  expected = set()
  keys = [lambda c: percentiles.review_key(c[0], c[1]),
          lambda c: percentiles.review_key(0.0, c[1])]
  if two_sided:
    keys.append(lambda c: percentiles.review_key(-c[0], c[1]))
  for key in keys:
    expected |= {c[1] for c in sorted(everything, key=key, reverse=True)[:k]}
  rows = merged.rows()
  assert {row[1] for row in rows} == expected
  for value, (_, f, r), suspicions in rows:  # each keeps its own value and suspicions
    assert value == values[f * 100 + r] and suspicions == (float(f * 100 + r),)
