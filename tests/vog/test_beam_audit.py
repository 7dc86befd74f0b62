"""The Beam audit: runners agree, bad records are quarantined, bad config fails early.

Configuration errors are checked through the component's executor and through
`vog-audit score` (exit code 2, one clear line).
"""

import base64
import glob
import json
import os

from click.testing import CliRunner
import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.types import artifact_utils

from components.vog import audit
from components.vog import audit_errors
from components.vog import audit_plan
from components.vog.report import score_table
from components.vog import spec_keys
from components.vog import executor as vog_executor
from components.vog.settings import VogSettings
from pipeline.cli import main as cli
import apache_beam as beam
import fixtures

N_GOOD = 120


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('beam_audit'))
  images, labels, _ = fixtures.digits(N_GOOD, seed=2)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  records = [fixtures.example(im, lab, f'ok-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  return root, images, labels, records


def _run(plan, out, beam_args=()):
  summary = audit.run_audit(plan, beam.Pipeline(argv=list(beam_args)),
                            os.path.join(out, 'scored'), os.path.join(out, 'report'))
  return summary, fixtures.score_rows(os.path.join(out, 'report'))


def test_multiprocessing_runner_gives_the_same_scores(trained, tmp_path):
  root, _, _, records = trained
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {
      'train': records[:80], 'eval': records[80:]})
  plan = audit_plan.plan_audit(VogSettings(batch_size=16, inspection_budget=10),
                               os.path.join(root, 'run'), patterns)
  summary_1, in_process = _run(plan, str(tmp_path / 'a'))
  summary_2, two_workers = _run(plan, str(tmp_path / 'b'), [
      '--direct_running_mode=multi_processing', '--direct_num_workers=2'])
  assert set(in_process) == set(two_workers) and len(in_process) == N_GOOD
  for key, row in in_process.items():
    other = two_workers[key]
    assert other['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5)
    assert other['vog_score'] == pytest.approx(row['vog_score'], rel=1e-4, abs=1e-6)
    assert other['vog_bucket'] == row['vog_bucket']
    assert other['vog_flagged'] == row['vog_flagged']
  assert summary_1['counts'] == summary_2['counts']


def test_bad_records_are_quarantined_and_none_is_lost(trained, tmp_path):
  root, images, labels, records = trained
  bad = {
      'no-label': fixtures.example(images[0], None, 'no-label'),
      'nan-pixel': fixtures.example(np.where(np.arange(64) == 5, np.nan,
                                             images[1].reshape(-1)), labels[1], 'nan-pixel'),
      'short': fixtures.example(images[2].reshape(-1)[:60], labels[2], 'short'),
      'label-99': fixtures.example(images[3], 99, 'label-99'),
  }
  planted = [e.SerializeToString() for e in bad.values()] + [b'\x00garbage bytes']
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'),
                                              {'train': records[:50] + planted})
  plan = audit_plan.plan_audit(VogSettings(inspection_budget=5), os.path.join(root, 'run'),
                               patterns)
  summary, scored = _run(plan, str(tmp_path / 'out'))
  assert summary['counts'] == {'seen': 55, 'scored': 50, 'quarantined': 5, 'flagged': 5}
  counters = summary['beam_counters']
  assert (counters['seen'], counters['scored'], counters['quarantined']) == (55, 50, 5)
  assert {k[1] for k in scored} == {f'ok-{i}' for i in range(50)}
  rows = [json.loads(l) for path in glob.glob(str(tmp_path / 'out' / 'report' /
                                              'quarantine-*-of-*.jsonl'))
          for l in open(path)]
  reasons = {r['example_id']: r['reason'] for r in rows}
  assert reasons['no-label'].startswith('missing label')
  assert reasons['nan-pixel'] == "non-finite value: feature 'image'"
  assert reasons['short'].startswith("wrong shape: feature 'image' has 60 values")
  assert reasons['label-99'].startswith('label out of range: 99 is outside [0, 10)')
  garbage = [r for r in rows if r['kind'] == 'unparsable record']
  assert len(garbage) == 1
  # Nothing is lost: the quarantined record's bytes come back exactly.
  assert base64.b64decode(garbage[0]['record_base64']) == b'\x00garbage bytes'
  assert summary['quarantine_kinds']['train'] == {
      'missing label': 1, 'non-finite value': 1, 'wrong shape': 1,
      'label out of range': 1, 'unparsable record': 1}


def _executor_inputs(root, patterns_root, splits):
  examples = standard_artifacts.Examples()
  examples.uri = patterns_root
  examples.split_names = artifact_utils.encode_split_names(splits)
  model_run = standard_artifacts.ModelRun()
  model_run.uri = os.path.join(root, 'run')
  return examples, model_run


def _exec_properties(**overrides):
  # As a compiled spec could carry it: not validated on the way in.
  settings = dict(VogSettings(batch_size=32, inspection_budget=10).to_json(), **overrides)
  return {spec_keys.SETTINGS_KEY: json.dumps(settings),
          spec_keys.MODULE_FILE_KEY: None}


def _bad_cases(root, tmp_path, records):
  """(name, executor kwargs, CLI args, expected message) for each configuration error."""
  good = str(tmp_path / 'good')
  fixtures.write_examples_artifact(good, {'train': records[:20]})
  empty = str(tmp_path / 'empty')
  fixtures.write_examples_artifact(empty, {'train': []})
  other = str(tmp_path / 'other_features')
  fixtures.write_examples_artifact(other, {'train': [
      tf.train.Example(features=tf.train.Features(feature={
          'pixels': tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * 64)),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))})
      ).SerializeToString()]})
  no_manifest = str(tmp_path / 'no_manifest')
  os.makedirs(no_manifest)
  run = os.path.join(root, 'run')
  return [
      ('missing manifest', dict(model_run=no_manifest, examples=good), 
       ['--model-run', no_manifest, '--examples', good], 'no checkpoint manifest at'),
      ('unknown split', dict(examples=good, props={'splits': ['eval']}),
       ['--model-run', run, '--examples', good, '--split', 'eval'],
       "split(s) ['eval'] do not exist in the examples; available: ['train']"),
      ('empty split', dict(examples=empty), ['--model-run', run, '--examples', empty],
       "split 'train' holds no examples"),
      ('model input missing', dict(examples=other),
       ['--model-run', run, '--examples', other],
       "model input(s) ['image'] are not features of split 'train'"),
      ('negative budget', dict(examples=good, props={'inspection_budget': -1}),
       ['--model-run', run, '--examples', good, '--inspection-budget', '-1'],
       'inspection_budget=-1'),
      ('stage too small', dict(examples=good, props={'stage': 'early'}),
       ['--model-run', run, '--examples', good, '--stage', 'early'],
       "stage 'early' holds 1 of the 3 saved checkpoints"),
      ('unknown ranking', dict(examples=good, props={'rank_by': 'aum'}),
       ['--model-run', run, '--examples', good, '--rank-by', 'aum'],
       "rank_by='aum' is not supported; choose one of auto, vog, confidence"),
      ('copy of a split not scored', dict(examples=good, props={'copy_splits': ['eval']}),
       ['--model-run', run, '--examples', good, '--copy-splits', 'eval'],
       "copy_splits names ['eval'], which the audit does not score (it scores ['train'])"),
      ('signal without labels', dict(examples=good, props={
          'rank_by': 'el2n', 'label_mode': 'predicted', 'label_key': None}),
       ['--model-run', run, '--examples', good, '--rank-by', 'el2n', '--label-mode',
        'predicted', '--label-key', ''],
       "rank_by='el2n' compares the model with the label"),
  ]


def test_configuration_errors_fail_before_beam(trained, tmp_path):
  root, _, _, records = trained
  for name, case, cli_args, message in _bad_cases(root, tmp_path, records):
    examples, model_run = _executor_inputs(root, case['examples'], ['train'])
    if 'model_run' in case:
      model_run.uri = case['model_run']
    scored = standard_artifacts.Examples()
    scored.uri = str(tmp_path / name / 'scored')
    report = standard_artifacts.Examples()
    report.uri = str(tmp_path / name / 'report')
    with pytest.raises(ValueError, match=_escape(message)):
      vog_executor.Executor().Do(
          {'examples': [examples], 'model_run': [model_run]},
          {'scored_examples': [scored], 'difficulty_report': [report]},
          _exec_properties(**case.get('props', {})))
    assert not os.path.exists(scored.uri), name  # nothing written

    result = CliRunner().invoke(cli, ['score', '--output', str(tmp_path / name / 'cli')]
                                + cli_args)
    assert result.exit_code == 2, (name, result.output)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith('error:')]
    assert len(error_lines) == 1 and message in error_lines[0], (name, result.stderr)


def _escape(text):
  import re  # pylint: disable=g-import-not-at-top
  return re.escape(text)


def test_cli_on_a_tfrecord_glob_reproduces_the_component(trained, tmp_path):
  root, images, labels, records = trained
  fixtures.write_records(str(tmp_path / 'files' / 'part-0.gz'), records[:60])
  fixtures.write_records(str(tmp_path / 'files' / 'part-1.gz'), records[60:])
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'artifact')
  fixtures.write_examples_artifact(examples.uri, {'data': records})
  examples.split_names = artifact_utils.encode_split_names(['data'])
  model_run = standard_artifacts.ModelRun()
  model_run.uri = os.path.join(root, 'run')
  scored, report = standard_artifacts.Examples(), standard_artifacts.Examples()
  scored.uri, report.uri = str(tmp_path / 'c' / 'scored'), str(tmp_path / 'c' / 'report')
  os.makedirs(report.uri)
  vog_executor.Executor().Do({'examples': [examples], 'model_run': [model_run]},
                             {'scored_examples': [scored], 'difficulty_report': [report]},
                             _exec_properties())
  component = fixtures.score_rows(report.uri)
  # Only the eval split is copied by default; 'data' has its score table alone.
  assert not os.path.exists(os.path.join(scored.uri, 'Split-data'))

  result = CliRunner().invoke(cli, [
      'score', '--model-run', os.path.join(root, 'run'), '--examples',
      str(tmp_path / 'files' / 'part-*.gz'), '--output', str(tmp_path / 'cli'),
      '--batch-size', '32', '--inspection-budget', '10'])
  assert result.exit_code == 0, result.output
  assert ('scored 120, quarantined 0, flagged 10 of 120 examples, ranked by confidence'
          in result.output)
  assert os.path.join(str(tmp_path / 'cli'), 'difficulty_report', 'report.html') in result.output
  cli_rows = fixtures.score_rows(str(tmp_path / 'cli' / 'difficulty_report'))
  assert set(cli_rows) == set(component)
  for key, row in component.items():
    assert cli_rows[key]['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-6)
    assert cli_rows[key]['vog_score'] == pytest.approx(row['vog_score'], rel=1e-5, abs=1e-7)
    assert cli_rows[key]['vog_flagged'] == row['vog_flagged']
  report_dir = tmp_path / 'cli' / 'difficulty_report'
  for name in ('summary.json', 'flagged.jsonl', 'quarantine-00000-of-00002.jsonl',
               'quarantine-00001-of-00002.jsonl', 'report.html', 'flagged_examples.tfrecord',
               'flagged.png'):
    assert (report_dir / name).exists(), name

  # The page can be rebuilt from the report folder alone.
  first_page = (report_dir / 'report.html').read_text()
  (report_dir / 'report.html').unlink()
  (report_dir / 'flagged.png').unlink()
  result = CliRunner().invoke(cli, ['report', str(report_dir)])
  assert result.exit_code == 0, result.output
  rebuilt = (report_dir / 'report.html').read_text()
  flagged_ids = [json.loads(l)['example_id'] for l in open(report_dir / 'flagged.jsonl')]
  assert len(flagged_ids) == 10
  assert all(i in rebuilt for i in flagged_ids)
  assert rebuilt.count('data:image/png;base64') == first_page.count('data:image/png;base64') > 0
  assert (report_dir / 'flagged.png').exists()
  # Damaged files in the folder are named, never a traceback.
  shard = report_dir / 'quarantine-00001-of-00002.jsonl'
  shard.write_text('{"split": "data", "example_id": "x", "kind": "bad"\n')
  result = CliRunner().invoke(cli, ['report', str(report_dir)])
  assert result.exit_code == 2 and 'quarantine-00001-of-00002.jsonl line 1' in result.stderr
  assert 'Traceback' not in result.output
  shard.write_text('')
  examples_file = report_dir / 'flagged_examples.tfrecord'
  examples_file.write_bytes(examples_file.read_bytes()[:-7])
  result = CliRunner().invoke(cli, ['report', str(report_dir)])
  assert result.exit_code == 2 and 'flagged_examples.tfrecord' in result.stderr
  assert 'Traceback' not in result.output
  (report_dir / 'flagged_examples.tfrecord').unlink()
  result = CliRunner().invoke(cli, ['report', str(report_dir)])
  assert result.exit_code == 2
  assert 'flagged_examples.tfrecord' in result.stderr and 'Traceback' not in result.output


def _flagged_in_scored_examples(folder):
  count = 0
  for path in glob.glob(os.path.join(folder, 'Split-*', '*.gz')):
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      f = tf.train.Example.FromString(record.numpy()).features.feature
      count += f['vog_flagged'].int64_list.value[0]
  return count


def test_exact_duplicates_are_separate_examples_and_counts_agree(trained, tmp_path):
  root, _, _, records = trained
  # The highest-scoring record of a first audit, copied twice more, and many copies
  # of an ordinary one: every copy must be written, flagged and counted on its own.
  # Raw scores do not depend on the other examples, so the copies stay on top.
  settings = VogSettings(inspection_budget=5, normalize='raw', copy_splits='all')
  data = records[:40] + [records[0]] * 5 + [b'\x00junk'] * 2
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'first'), {'train': data})
  _run(audit_plan.plan_audit(settings, os.path.join(root, 'run'), patterns), str(tmp_path / 'a'))
  top_id = json.loads(open(tmp_path / 'a' / 'report' / 'flagged.jsonl').readline())[
      'example_id']
  top = records[int(top_id.split('-')[1])]
  data += [top, top]
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'dup'), {'train': data})
  plan = audit_plan.plan_audit(settings, os.path.join(root, 'run'), patterns)
  summary, _ = _run(plan, str(tmp_path / 'b'))
  split = summary['splits']['train']
  assert split['seen'] == len(data) == split['written'] + split['quarantined']
  assert (split['written'], split['quarantined']) == (len(data) - 2, 2)
  report = tmp_path / 'b' / 'report'
  flagged = [json.loads(l) for l in open(report / 'flagged.jsonl')]
  assert summary['counts']['flagged'] == len(flagged) == 5
  assert _flagged_in_scored_examples(str(tmp_path / 'b' / 'scored')) == 5
  table = score_table.read_split(str(report), 'train').to_pydict()
  assert sum(table['vog_flagged']) == 5
  assert [r['rank'] for r in flagged] == [1, 2, 3, 4, 5]
  assert [r['example_id'] for r in flagged].count(top_id) == 3
  ids = []
  for path in glob.glob(str(tmp_path / 'b' / 'scored' / 'Split-*' / '*.gz')):
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      f = tf.train.Example.FromString(record.numpy()).features.feature
      ids.append(f['example_id'].bytes_list.value[0].decode())
  assert ids.count(top_id) == 3 + (top_id == 'ok-0') * 6
  assert ids.count('ok-0') >= 6
  assert sorted(table['example_id']) == sorted(ids)


def test_a_damaged_input_file_stops_the_audit_naming_the_file(trained, tmp_path):
  root, _, _, records = trained
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {'train': records[:70]})
  good = fixtures.write_records(
      str(tmp_path / 'ex' / 'Split-train' / 'plain-part'), records[70:90], gzip=False)
  damaged = str(tmp_path / 'ex' / 'Split-train' / 'zz-damaged')
  with open(good, 'rb') as f:
    data = f.read()
  with open(damaged, 'wb') as f:
    f.write(data[:len(data) * 3 // 4 + 7])  # cut inside record 15
  os.makedirs(str(tmp_path / 'ex' / 'Split-train' / 'a-folder'))  # globs keep files only
  plan = audit_plan.plan_audit(VogSettings(inspection_budget=5), os.path.join(root, 'run'),
                               patterns)
  # The folder is left out; each file's compression is found as it is read.
  assert [os.path.basename(f.path) for f in plan.split_files['train']] == [
      'data_tfrecord-00000-of-00001.gz', 'plain-part', 'zz-damaged']
  with pytest.raises(audit_errors.AuditInputError, match=r'input file .*zz-damaged is damaged at '
                     r'record 15 \(byte offset \d+ of the file\): the file ends inside'):
    _run(plan, str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out' / 'report' / 'summary.json')

  result = CliRunner().invoke(cli, [
      'score', '--model-run', os.path.join(root, 'run'), '--examples',
      os.path.join(str(tmp_path / 'ex' / 'Split-train'), '*'), '--output',
      str(tmp_path / 'cli')])
  assert result.exit_code == 2, result.output
  assert 'zz-damaged' in result.stderr and 'Traceback' not in result.output
