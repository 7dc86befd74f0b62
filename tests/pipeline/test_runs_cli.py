"""`vog-audit runs` on an ML Metadata store written here by hand: three audits of one pipeline,
the first with no shipped model to compare with, each later one against the one before it."""

import json

from click.testing import CliRunner
import pytest

from components.vog import vocabulary as vocab

PIPELINE = 'digits_audit'
DRIFT = {
    vocab.FLAGGED_SHARE_CHANGE: 0.019,
    vocab.NEWLY_FLAGGED: 40,
    vocab.STILL_FLAGGED_COUNT: 25,
    vocab.MAX_CLASS_HARD_SHARE_INCREASE: 0.12,
    vocab.MAX_HARD_SHARE_CLASS: 'eval/3',
    vocab.DRIFT_BASELINE_URI: '/root/VarianceOfGradients/difficulty_report/1',
}
CALM = dict(DRIFT, **{vocab.FLAGGED_SHARE_CHANGE: -0.004,
                      vocab.MAX_CLASS_HARD_SHARE_INCREASE: 0.0,
                      vocab.MAX_HARD_SHARE_CLASS: '',
                      vocab.NEWLY_FLAGGED: 3, vocab.STILL_FLAGGED_COUNT: 190,
                      vocab.DRIFT_BASELINE_URI:
                          '/root/VarianceOfGradients/difficulty_report/2'})
LOST = {vocab.DRIFT_UNAVAILABLE: 'the baseline report cannot be read: /root/gone\n'
                                          'summary.json: does not exist',
        vocab.DRIFT_BASELINE_URI: '/root/gone'}
COUNTS = {'seen': 1797, 'scored': 1790, 'quarantined': 7, 'flagged': 200}


def _set(properties, values):
  for key, value in values.items():
    if isinstance(value, str):
      properties[key].string_value = value
    elif isinstance(value, int):
      properties[key].int_value = value
    else:
      properties[key].double_value = value


def _write_store(path, audits):
  """One VarianceOfGradients execution per entry of `audits` (the report's drift properties,
  or None when the executor set none), each writing one DifficultyReport."""
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2 as pb  # pylint: disable=g-import-not-at-top
  config = pb.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
  store = metadata_store.MetadataStore(config)
  report_type = store.put_artifact_type(pb.ArtifactType(name='components.DifficultyReport'))
  audit_type = store.put_execution_type(
      pb.ExecutionType(name='components.vog.component.VarianceOfGradients'))
  context_types = {name: store.put_context_type(pb.ContextType(name=name))
                   for name in ('pipeline', 'pipeline_run', 'node')}
  [pipeline] = store.put_contexts([pb.Context(type_id=context_types['pipeline'], name=PIPELINE)])
  [node] = store.put_contexts([pb.Context(type_id=context_types['node'],
                                          name=f'{PIPELINE}.VarianceOfGradients')])
  for i, drift in enumerate(audits, 1):
    report = pb.Artifact(type_id=report_type, uri=f'/root/VarianceOfGradients/'
                         f'difficulty_report/{i}', state=pb.Artifact.LIVE)
    _set(report.custom_properties, COUNTS)
    _set(report.custom_properties, drift or {})
    execution = pb.Execution(type_id=audit_type, last_known_state=pb.Execution.COMPLETE)
    [run] = store.put_contexts([pb.Context(type_id=context_types['pipeline_run'],
                                           name=f'run-{i}')])
    event = pb.Event(type=pb.Event.OUTPUT)
    event.path.steps.add().key = 'difficulty_report'
    store.put_execution(execution, [(report, event)], [
        pb.Context(id=pipeline, type_id=context_types['pipeline'], name=PIPELINE),
        pb.Context(id=node, type_id=context_types['node'],
                   name=f'{PIPELINE}.VarianceOfGradients'),
        pb.Context(id=run, type_id=context_types['pipeline_run'], name=f'run-{i}')])


@pytest.fixture(name='database')
def _database(tmp_path):
  path = str(tmp_path / 'metadata.sqlite')
  _write_store(path, [None, DRIFT, CALM, LOST])
  return path


def _runs(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  result = CliRunner().invoke(main, ['runs', *args])
  assert result.exit_code == 0, result.output
  return result.output


def _audits(text):
  """{run name: the lines printed under that audit}."""
  blocks = {}
  for line in text.splitlines():
    if line.startswith('#'):
      current = blocks.setdefault(line.split()[-1], [])
    else:
      current.append(line.strip())
  return blocks


def test_each_audit_says_what_changed_since_the_last_shipped_model(database):
  audits = _audits(_runs('--metadata', database))
  assert sorted(audits) == ['run-1', 'run-2', 'run-3', 'run-4']
  assert audits['run-1'] == [
      'out difficulty_report  components.DifficultyReport #1 '
      '/root/VarianceOfGradients/difficulty_report/1',
      'seen 1797, scored 1790, quarantined 7, flagged 200',
      'no drift recorded: no shipped model to compare with']
  assert audits['run-2'][2] == (
      'since the last shipped model: flagged share +1.9 pts; class 3 hard share +12.0 pts '
      '(eval); 40 newly flagged, 25 still flagged; baseline '
      '/root/VarianceOfGradients/difficulty_report/1')
  assert audits['run-3'][2] == (
      "since the last shipped model: flagged share -0.4 pts; no class's hard share rose; "
      '3 newly flagged, 190 still flagged; baseline /root/VarianceOfGradients/difficulty_report/2')
  # A baseline that could not be compared says why, on one line.
  assert audits['run-4'][2] == (
      'drift unavailable: the baseline report cannot be read: /root/gone summary.json: does not '
      'exist; baseline /root/gone')


def test_json_carries_the_drift_properties(database):
  entries = json.loads(_runs('--metadata', database, '--json'))
  drifts = [entry['outputs'][0]['drift'] for entry in entries]
  assert drifts == [{}, DRIFT, CALM, LOST]
