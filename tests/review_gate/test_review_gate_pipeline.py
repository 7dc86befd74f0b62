"""HumanReviewGate in a real LocalDagRunner pipeline with SQLite ML Metadata and the stock Pusher.

Importers bring a tiny saved Keras model, a DifficultyReport folder and TFMA metrics; the gate
asks the Slack stand-in on 127.0.0.1; the Pusher pushes to a folder only after an approval.
"""

import logging as py_logging
import os

from click.testing import CliRunner

import review_gate_support as support
from slack_server import FakeSlack

ALICE = 'U0ALICE'


def _saved_model(folder: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.Dense(3)])
  model.save(os.path.join(folder, 'Format-Serving'))
  return folder


def _pipeline(tmp_path, api_url, enable_cache=False, timeout_seconds=30):
  from tfx.components import Pusher  # pylint: disable=g-import-not-at-top
  from tfx.dsl.components.common.importer import Importer  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import pipeline as tfx_pipeline  # pylint: disable=g-import-not-at-top
  from tfx.proto import pusher_pb2  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import HumanReviewGate  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top

  inputs = tmp_path / 'inputs'
  model_dir = str(inputs / 'model')
  if not os.path.exists(model_dir):
    _saved_model(model_dir)
    support.write_report(str(inputs / 'report'))
    support.write_evaluation(str(inputs / 'evaluation'), overall=0.931, hard=0.612)
  model = Importer(source_uri=model_dir,
                   artifact_type=standard_artifacts.Model).with_id('model_importer')
  report = Importer(source_uri=str(inputs / 'report'), artifact_type=DifficultyReport,
                    custom_properties=support.SUMMARY['counts']).with_id('report_importer')
  evaluation = Importer(source_uri=str(inputs / 'evaluation'),
                        artifact_type=standard_artifacts.ModelEvaluation).with_id(
                            'evaluation_importer')
  gate = HumanReviewGate(
      model=model.outputs['result'], difficulty_report=report.outputs['result'],
      evaluation=evaluation.outputs['result'], backend='slack', approvers=[ALICE],
      slack_channel='C0REVIEW', slack_api_url=api_url, timeout_seconds=timeout_seconds,
      poll_interval_seconds=0.2)
  pusher = Pusher(
      model=model.outputs['result'], model_blessing=gate.outputs['review_blessing'],
      push_destination=pusher_pb2.PushDestination(
          filesystem=pusher_pb2.PushDestination.Filesystem(
              base_directory=str(tmp_path / 'serving'))))
  return tfx_pipeline.Pipeline(
      pipeline_name='digits_audit', pipeline_root=str(tmp_path / 'root'),
      components=[model, report, evaluation, gate, pusher], enable_cache=enable_cache,
      metadata_connection_config=metadata.sqlite_metadata_connection_config(
          str(tmp_path / 'metadata.sqlite')))


def _latest(store, type_name):
  artifacts = store.get_artifacts_by_type(type_name)
  return max(artifacts, key=lambda a: a.id)


def _props(artifact):
  return {k: getattr(v, v.WhichOneof('value')) for k, v in artifact.custom_properties.items()}


def test_pusher_pushes_only_after_approval(tmp_path, token, caplog, capfd):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  caplog.set_level(py_logging.INFO)
  db = str(tmp_path / 'metadata.sqlite')
  serving = tmp_path / 'serving'

  with FakeSlack(token) as slack:
    slack.auto_replies = [(ALICE, 'reject: class 8 needs relabelling first')]
    LocalDagRunner().run(_pipeline(tmp_path, slack.api_url))
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(db))
    rejected = _props(_latest(store, 'ModelBlessing'))
    assert (rejected['blessed'], rejected['review_decision'], rejected['reviewer'],
            rejected['review_comment']) == (0, 'rejected', ALICE,
                                            'class 8 needs relabelling first')
    assert _props(_latest(store, 'PushedModel'))['pushed'] == 0
    assert not serving.exists() or not os.listdir(serving)

    slack.auto_replies = [(ALICE, 'approve')]
    LocalDagRunner().run(_pipeline(tmp_path, slack.api_url))
    approved = _props(_latest(store, 'ModelBlessing'))
    assert (approved['blessed'], approved['review_decision'], approved['reviewer']) == (
        1, 'approved', ALICE)
    assert approved['slack_channel'] == 'C0REVIEW'
    assert approved['slack_thread_ts'] == slack.threads()[1]
    assert approved['current_model_id'] == _latest(store, 'Model').id
    assert _props(_latest(store, 'PushedModel'))['pushed'] == 1
    [version] = os.listdir(serving)
    assert os.path.exists(serving / version / 'saved_model.pb')
    posts = slack.top_level_posts()
    assert len(posts) == 2  # one message per review, and two reviews
    assert 'hard slice 61.2%' in str(posts[1]['params']['blocks'])
    # The same model asked again got a new review, not the closed one.
    assert approved['review_id'] != rejected['review_id']

  result = CliRunner().invoke(main, ['runs', '--metadata', db])
  assert result.exit_code == 0, result.output
  text = result.output
  assert text.count('HumanReviewGate (HumanReviewGate) COMPLETE') == 2
  assert 'review rejected by U0ALICE' in text and 'review approved by U0ALICE' in text
  assert 'comment: class 8 needs relabelling first' in text
  assert f'thread {slack.threads()[1]}) -> BLESSED' in text
  assert 'in  model              Model #' in text and 'from model_importer #' in text
  assert 'seen 1797, scored 1790, quarantined 7, flagged 200' in text

  # The token went to Slack and nowhere else: not in logs, files, artifacts or ML Metadata.
  out, err = capfd.readouterr()
  assert token not in out + err + caplog.text + text
  checked = 0
  for folder, _, files in os.walk(tmp_path):
    for name in files:
      with open(os.path.join(folder, name), 'rb') as f:
        assert token.encode() not in f.read(), os.path.join(folder, name)
      checked += 1
  assert checked > 10 and os.path.getsize(db) > 0


def _gate_executions(store):
  types = [t.name for t in store.get_execution_types() if t.name.endswith('HumanReviewGate')]
  return sorted((e for name in types for e in store.get_executions_by_type(name)),
                key=lambda e: e.id)


def test_cache_never_serves_a_timeout_and_may_serve_an_approval(tmp_path, token):
  """With caching on and the same model and report: a timeout is asked again, an approval kept."""
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # pylint: disable=g-import-not-at-top
  db = str(tmp_path / 'metadata.sqlite')

  with FakeSlack(token) as slack:
    LocalDagRunner().run(_pipeline(tmp_path, slack.api_url, enable_cache=True,
                                   timeout_seconds=2))
    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(db))
    timed_out = _latest(store, 'ModelBlessing')
    props = _props(timed_out)
    assert (props['blessed'], props['review_decision']) == (0, 'timeout')
    assert props['review_cache'] == 'not reusable: with caching on, the next run asks again'

    # Same inputs, same parameters: TFX would reuse the timeout; the gate asks again instead.
    slack.auto_replies = [(ALICE, 'approve')]
    LocalDagRunner().run(_pipeline(tmp_path, slack.api_url, enable_cache=True,
                                   timeout_seconds=2))
    approved = _latest(store, 'ModelBlessing')
    props = _props(approved)
    assert approved.id != timed_out.id
    assert (props['blessed'], props['review_decision'], props['reviewer']) == (
        1, 'approved', ALICE)
    assert props['review_cache'] == ('reusable: with caching on, TFX may reuse this approval for '
                                     'the same model and report')
    assert len(slack.top_level_posts()) == 2

    # Once more: the approval of this model and report comes from the cache; nobody is asked.
    LocalDagRunner().run(_pipeline(tmp_path, slack.api_url, enable_cache=True,
                                   timeout_seconds=2))
    assert _latest(store, 'ModelBlessing').id == approved.id
    assert len(slack.top_level_posts()) == 2
    states = [e.last_known_state for e in _gate_executions(store)]
    assert states == [metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.COMPLETE,
                      metadata_store_pb2.Execution.CACHED]


def test_runs_refuses_a_missing_database(tmp_path):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  result = CliRunner().invoke(main, ['runs', '--metadata', str(tmp_path / 'nope.sqlite')])
  assert result.exit_code == 2
  assert result.output.strip() == (f'error: no ML Metadata database at {tmp_path}/nope.sqlite; '
                                   'pass the SQLite file the pipeline writes (e.g. '
                                   'demo_output/metadata.sqlite)')
  assert not (tmp_path / 'nope.sqlite').exists()
