"""What the audit says of its flagged examples, through the component's executor.

Each flagged row says what the reviewer will most likely find (its kind), summary.json
counts the kinds per split, slices.json says which feature values and label pairs the
flagged examples gather in, and rank_by='auto' ranks by what the evidence of
memorisation says: el2n for a model that fits every training label, confidence
otherwise. ML Metadata records the headline of each on the difficulty report.
"""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components.vog import audit
from components.vog import audit_plan
from components.vog import memorisation
from components.vog import spec_keys
from components.vog import executor as vog_executor
from components.vog.compute import auto_rank
from components.vog.compute import flag_kinds
from components.vog.dataflow import beam_audit
from components.vog.report import score_table
from components.vog.settings import VogSettings
import fixtures

N = 300  # 225 train, 75 eval; 10% of the labels flipped
N_MEMORISED = 150  # all of them train, fitted by a model trained long on them
BUDGET = 40


def _records(images, labels, flipped, prefix, seed):
  """tf.Examples with `label_flipped` (the truth) and a `source` that most flipped
  examples share: the slice the audit should find."""
  rng = np.random.default_rng(seed)
  out = []
  for i, (image, label, flip) in enumerate(zip(images, labels, flipped)):
    example = fixtures.example(image, label, f'{prefix}-{i:03d}', label_flipped=int(flip))
    source = b'scanner-b' if rng.random() < (0.9 if flip else 0.05) else b'scanner-a'
    example.features.feature['source'].bytes_list.value.append(source)
    out.append(example.SerializeToString())
  return out


@pytest.fixture(scope='module')
def underfit(tmp_path_factory):
  """A model trained briefly on digits with planted wrong labels: it fits about 80%."""
  root = str(tmp_path_factory.mktemp('findings'))
  images, labels, flipped = fixtures.digits(N, seed=4, flip_rate=0.1)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=4)
  records = _records(images, labels, flipped, 'x', 0)
  cut = N * 3 // 4
  fixtures.write_examples_artifact(os.path.join(root, 'examples'),
                                   {'train': records[:cut], 'eval': records[cut:]})
  return root, {f'x-{i:03d}': bool(f) for i, f in enumerate(flipped)}


@pytest.fixture(scope='module')
def memorised(tmp_path_factory):
  """A model trained long on few digits: it fits every training label, wrong ones too."""
  root = str(tmp_path_factory.mktemp('memorised'))
  images, labels, flipped = fixtures.digits(N_MEMORISED + 50, seed=5, flip_rate=0.1)
  model = fixtures.train_checkpoints(os.path.join(root, 'run'), images[:N_MEMORISED],
                                     labels[:N_MEMORISED], epochs=60)
  fitted = np.argmax(model.predict(images[:N_MEMORISED], verbose=0), axis=1)
  assert np.mean(fitted == labels[:N_MEMORISED]) >= auto_rank.MEMORISED_FIT_SHARE
  records = _records(images, labels, flipped, 'm', 1)
  fixtures.write_examples_artifact(os.path.join(root, 'examples'), {
      'train': records[:N_MEMORISED], 'eval': records[N_MEMORISED:]})
  return root, {f'm-{i:03d}': bool(f) for i, f in enumerate(flipped)}


def _execute(root, name, **settings):
  """Runs the executor on the fixture's examples; (summary, flagged rows, report folder,
  the report's ML Metadata custom properties)."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(root, 'examples')
  examples.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  model_run = standard_artifacts.ModelRun()
  model_run.uri = os.path.join(root, 'run')
  scored, report = standard_artifacts.Examples(), standard_artifacts.Examples()
  scored.uri = os.path.join(root, name, 'scored')
  report.uri = os.path.join(root, name, 'report')
  os.makedirs(report.uri)
  values = dict(VogSettings(batch_size=64, inspection_budget=BUDGET, copy_splits='all',
                            slice_leave_out=['label_flipped']).to_json(), **settings)
  vog_executor.Executor().Do(
      {'examples': [examples], 'model_run': [model_run]},
      {'scored_examples': [scored], 'difficulty_report': [report]},
      {spec_keys.SETTINGS_KEY: json.dumps(values), spec_keys.MODULE_FILE_KEY: None})
  with open(os.path.join(report.uri, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(report.uri, 'flagged.jsonl')) as f:
    flagged = [json.loads(line) for line in f]
  properties = {k: getattr(v, v.WhichOneof('value'))
                for k, v in report.mlmd_artifact.custom_properties.items()}
  return summary, flagged, report.uri, properties


@pytest.fixture(scope='module')
def underfit_audit(underfit):
  return _execute(underfit[0], 'audit')


@pytest.fixture(scope='module')
def memorised_audit(memorised):
  return _execute(memorised[0], 'audit')


def _kind_counts(flagged):
  found = {}
  for row in flagged:
    found.setdefault(row['split'], collections.Counter())[row['kind']] += 1
  return {split: {k: c[k] for k in flag_kinds.KINDS} for split, c in found.items()}


def test_every_flagged_row_has_its_kind_and_the_summary_counts_them(underfit, underfit_audit):
  _, truth = underfit
  summary, flagged, _, properties = underfit_audit
  assert len(flagged) == BUDGET
  for row in flagged:
    assert row['kind'] == flag_kinds.kind(row['signals']), row
  assert summary['flag_kinds'] == _kind_counts(flagged)
  assert summary['flag_kind_rule']['rule'] == 'margin_mean'
  assert summary['flag_kind_rule']['memorised'] is False
  # The planted wrong labels that were flagged are called wrong labels; the few flags
  # called `wrong label` that are not planted are rare.
  planted = [row for row in flagged if truth[row['example_id']]]
  called = [row for row in flagged if row['kind'] == flag_kinds.WRONG_LABEL]
  assert len(planted) >= 20
  assert sum(row['kind'] == flag_kinds.WRONG_LABEL for row in planted) >= 0.8 * len(planted)
  assert sum(truth[row['example_id']] for row in called) >= 0.8 * len(called)
  # ML Metadata: every split's kinds, summed.
  totals = {k: sum(c[k] for c in summary['flag_kinds'].values()) for k in flag_kinds.KINDS}
  assert (properties['flagged_wrong_label'], properties['flagged_atypical'],
          properties['flagged_unclear']) == (totals[flag_kinds.WRONG_LABEL],
                                             totals[flag_kinds.ATYPICAL],
                                             totals[flag_kinds.UNCLEAR])
  assert sum(totals.values()) == properties['flagged'] == BUDGET


def test_auto_ranks_by_confidence_and_records_the_evidence(underfit_audit):
  summary, flagged, report_dir, properties = underfit_audit
  assert summary['ranked_by'] == summary['settings']['rank_by'] == 'confidence'
  chosen = summary['auto_rank']
  assert (chosen['chosen'], chosen['signal'], chosen['split']) == (
      'confidence', 'confidence', 'train')
  assert chosen['memorised'] is False and 'not memorised' in chosen['reason']
  # Every training example was sampled (fewer than the sample size): the fitted share is
  # that of the examples whose label the last checkpoint predicts, as the score table says.
  table = score_table.read_table(report_dir).to_pydict()
  margins = [m for m, split in zip(table['audit_margin_last'], table['split'])
             if split == 'train']
  assert chosen['examples'] == chosen['sampled'] == len(margins) == N * 3 // 4
  assert chosen['fitted_share'] == pytest.approx(np.mean(np.array(margins) > 0), abs=1e-6)
  assert chosen['fitted_share'] < auto_rank.MEMORISED_FIT_SHARE
  assert summary['memorisation']['evidence'] == chosen['evidence']
  assert summary['memorisation']['memorised'] is False
  assert (properties['rank_by'], properties['ranked_by'], properties['memorised']) == (
      'confidence', 'confidence', 0)
  confidence = [row['signals']['audit_confidence'] for row in flagged]
  assert confidence == sorted(confidence)


def test_slices_find_the_planted_source_and_leave_the_truth_out(underfit_audit):
  summary, _, report_dir, properties = underfit_audit
  with open(os.path.join(report_dir, 'slices.json')) as f:
    slices = json.load(f)
  assert slices['settings']['left_out'] == ['label', 'label_flipped']
  assert summary['slices']['file'] == 'slices.json'
  assert set(summary['slices']['top']) == set(slices['splits']) == {'train', 'eval'}
  for split, entry in slices['splits'].items():
    assert summary['slices']['top'][split] == entry['rows'][:5], split
    features = {row['feature'] for row in entry['rows']}
    assert not features & {'label', 'label_flipped', 'example_id'}, split
    assert not any(f.startswith(('vog_', 'audit_')) for f in features), split
  best = slices['splits']['train']['rows'][0]
  assert (best['feature'], best['value']) == ('source', 'scanner-b')
  assert best['share_' + best['group']] > 3 * best['share_in_split']
  assert properties['top_slice'].startswith('train: source=scanner-b (')


def test_a_model_that_fits_every_training_label_is_ranked_by_el2n(memorised,
                                                                   memorised_audit):
  _, truth = memorised
  summary, flagged, _, properties = memorised_audit
  chosen = summary['auto_rank']
  assert (chosen['chosen'], chosen['memorised'], chosen['examples']) == (
      'el2n', True, N_MEMORISED)
  assert chosen['fitted_share'] >= auto_rank.MEMORISED_FIT_SHARE
  assert summary['ranked_by'] == summary['settings']['rank_by'] == 'el2n'
  assert (properties['rank_by'], properties['ranked_by'], properties['memorised']) == (
      'el2n', 'el2n', 1)
  # Most suspect first: the largest el2n at the earliest checkpoint.
  el2n = [row['signals']['audit_el2n'] for row in flagged]
  assert el2n == sorted(el2n, reverse=True)
  # Kinds by the memorised rule: el2n, never atypical.
  assert summary['flag_kind_rule'] == {
      'rule': 'el2n', 'memorised': True, 'reason': summary['flag_kind_rule']['reason']}
  for row in flagged:
    assert row['kind'] == flag_kinds.kind(row['signals'], memorised=True), row
  assert summary['flag_kinds'] == _kind_counts(flagged)
  assert properties['flagged_atypical'] == 0
  planted = [row for row in flagged if truth[row['example_id']]]
  assert sum(row['kind'] == flag_kinds.WRONG_LABEL for row in planted) >= 0.6 * len(planted)


def test_without_labels_every_flag_is_unclear_and_nothing_is_measured(underfit):
  summary, flagged, _, properties = _execute(underfit[0], 'predicted',
                                             label_mode='predicted', label_key=None)
  assert {row['kind'] for row in flagged} == {flag_kinds.UNCLEAR}
  assert summary['flag_kind_rule'] == {'rule': 'no labels', 'memorised': None,
                                       'reason': flag_kinds.WITHOUT_LABELS_REASON}
  assert summary['auto_rank'] is None and summary['memorisation'] is None
  assert summary['ranked_by'] == summary['settings']['rank_by'] == 'vog'
  assert properties['flagged_unclear'] == properties['flagged'] == BUDGET
  assert properties['flagged_wrong_label'] == properties['flagged_atypical'] == 0
  assert 'memorised' not in properties
  assert properties['ranked_by'] == 'vog'


# Planning alone: the sample, and what is recorded when auto does not choose.


def _patterns(root):
  return {split: os.path.join(root, 'examples', f'Split-{split}', '*')
          for split in ('train', 'eval')}


def test_a_named_ranking_keeps_its_signal_and_still_records_the_evidence(underfit):
  root, _ = underfit
  plan = audit_plan.plan_audit(VogSettings(rank_by='margin_mean'), os.path.join(root, 'run'),
                               _patterns(root))
  header = audit.summary_header(plan).to_json()
  assert plan.settings.ranked_by == header['ranked_by'] == 'margin_mean'
  assert header['auto_rank'] is None
  assert header['memorisation']['evidence']['examples'] == N * 3 // 4
  assert header['flag_kind_rule']['rule'] == 'margin_mean'


def test_without_a_train_split_the_first_split_stands_in_and_says_so(underfit):
  root, _ = underfit
  plan = audit_plan.plan_audit(VogSettings(splits=['eval']), os.path.join(root, 'run'),
                               _patterns(root))
  assert plan.memorisation.split == 'eval'
  assert plan.auto_rank['split'] == 'eval'
  assert "no 'train' split, so its first split 'eval' stands in" in plan.auto_rank['reason']
  assert plan.auto_rank['examples'] == N - N * 3 // 4


def test_a_sample_that_cannot_be_scored_gives_no_evidence_and_confidence(underfit, tmp_path):
  root, _ = underfit
  good = [r.numpy() for r in tf.data.TFRecordDataset(
      _patterns(root)['eval'].replace('*', 'data_tfrecord-00000-of-00001.gz'), 'GZIP')]
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {
      'train': [b'\x00not an example %d' % i for i in range(30)], 'eval': good})
  plan = audit_plan.plan_audit(VogSettings(), os.path.join(root, 'run'), patterns)
  assert plan.settings.ranked_by == 'confidence'
  assert plan.auto_rank['evidence'] is None and plan.auto_rank['examples'] == 0
  assert 'no evidence of memorisation was gathered' in plan.auto_rank['reason']
  assert 'no sampled example could be scored' in plan.auto_rank['reason']
  assert '30 could not be scored' in plan.auto_rank['reason']
  header = audit.summary_header(plan).to_json()
  assert header['memorisation']['memorised'] is None
  assert header['flag_kind_rule']['memorised'] is None


def test_the_sample_spreads_over_the_files_of_the_split(tmp_path):
  files = []
  for i in range(100):
    path = fixtures.write_records(str(tmp_path / f'part-{i:03d}.gz'),
                                  [b'%d/%d' % (i, j) for j in range(100)])
    files.append(beam_audit.InputFile('train', i, path, None))
  records, opened = memorisation.sample_records(files)
  assert len(records) == memorisation.SAMPLE_SIZE and opened == 16
  per_file = collections.Counter(int(r.split(b'/')[0]) for r in records)
  assert min(per_file) == 0 and max(per_file) == 99 and len(per_file) == 16
  assert max(per_file.values()) - min(per_file.values()) <= 1
  # Each file gives its first records.
  assert all(int(r.split(b'/')[1]) < 63 for r in records)
  # Small files: the sample reads on, through more files, until it is full.
  small, _ = memorisation.sample_records(files[:30], size=200, max_files=64)
  assert len(small) == 200
  few, opened = memorisation.sample_records(
      [beam_audit.InputFile('train', i, f.path, None) for i, f in enumerate(files[:3])],
      size=1000)
  assert len(few) == 300 and opened == 3
