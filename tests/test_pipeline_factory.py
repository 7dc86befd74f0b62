"""The pipeline factory: component ids, wiring, Evaluator slices and thresholds, ML Metadata."""

import json
import os

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from components.vog import spec_keys
from components.vog.settings import VogSettings
from pipeline import audit_pipeline
from pipeline.config import MetadataConfig, PipelineConfig


def _config(tmp_path, **overrides):
  return PipelineConfig(data_root=str(tmp_path / 'data'),
                        pipeline_root=str(tmp_path / 'root'),
                        serving_model_dir=str(tmp_path / 'serving'), **overrides)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('factory')
  pipeline = audit_pipeline.create_local_pipeline(_config(tmp, vog_num_checkpoints=6))
  return pipeline, {c.id: c for c in pipeline.components}


def _producer(channel):
  return channel.producer_component_id


def test_component_ids_and_wiring(built):
  pipeline, nodes = built
  assert set(nodes) == set(audit_pipeline.COMPONENT_IDS)
  assert _producer(nodes['Trainer'].inputs['examples']) == 'ImportExampleGen'
  assert _producer(nodes['Trainer'].inputs['schema']) == 'SchemaGen'
  vog = nodes['VarianceOfGradients']
  assert _producer(vog.inputs['model_run']) == 'Trainer'
  assert _producer(vog.inputs['examples']) == 'ImportExampleGen'
  settings = VogSettings.from_json(vog.exec_properties[spec_keys.SETTINGS_KEY])
  assert settings == VogSettings(num_checkpoints=6)
  assert PipelineConfig(data_root='d', pipeline_root='r', serving_model_dir='s',
                        vog_stage='120,240').vog_settings().stage == [120, 240]
  evaluator = nodes['Evaluator']
  assert _producer(evaluator.inputs['examples']) == 'VarianceOfGradients'
  assert evaluator.inputs['examples'].output_key == 'scored_examples'
  assert _producer(evaluator.inputs['baseline_model']) == 'latest_blessed_model_resolver'
  assert json.loads(evaluator.exec_properties['example_splits']) == ['eval']
  gate = nodes['HumanReviewGate']
  assert _producer(gate.inputs['model_blessing']) == 'Evaluator'
  assert gate.inputs['model_blessing'].output_key == 'blessing'  # the Evaluator's
  assert _producer(gate.inputs['evaluation']) == 'Evaluator'
  assert _producer(gate.inputs['difficulty_report']) == 'VarianceOfGradients'
  assert _producer(gate.inputs['model']) == 'Trainer'
  # The Pusher obeys the review, not the Evaluator alone.
  assert _producer(nodes['Pusher'].inputs['model_blessing']) == 'HumanReviewGate'
  assert pipeline.beam_pipeline_args == ['--direct_running_mode=multi_processing',
                                         '--direct_num_workers=0']
  assert pipeline.metadata_connection_config.sqlite.filename_uri.endswith(
      'root/metadata.sqlite')


def test_review_gate_defaults_to_the_written_auto_policy(built):
  _, nodes = built
  gate = nodes['HumanReviewGate'].exec_properties
  assert gate['backend'] == 'auto'
  assert json.loads(gate['auto_policy']) == {'max_quarantined_share': 0.01,
                                             'max_class_flagged_share': 0.5}
  assert json.loads(gate['approvers']) == []


def test_review_gate_backend_and_approvers_come_from_the_config(tmp_path):
  pipeline = audit_pipeline.create_pipeline(_config(
      tmp_path, review_backend='slack', review_approvers=('U0ALICE',),
      slack_channel='C0REVIEW', review_timeout_seconds=600))
  gate = {c.id: c for c in pipeline.components}['HumanReviewGate'].exec_properties
  assert (gate['backend'], json.loads(gate['approvers']), gate['slack_channel'],
          gate['timeout_seconds'], gate['auto_policy']) == (
              'slack', ['U0ALICE'], 'C0REVIEW', 600.0, None)


def test_evaluator_slices_and_both_thresholds(built):
  _, nodes = built
  config = json_format.Parse(nodes['Evaluator'].exec_properties['eval_config'],
                             tfma.EvalConfig())
  slices = [(list(s.feature_keys), dict(s.feature_values)) for s in config.slicing_specs]
  assert slices == [([], {}), (['vog_bucket'], {}), (['vog_decile'], {}), (['label'], {})]
  (accuracy,) = [m for m in config.metrics_specs[0].metrics
                 if m.class_name == 'SparseCategoricalAccuracy']
  by_slice = {json.dumps(dict(t.slicing_specs[0].feature_values)): t.threshold
              for t in accuracy.per_slice_thresholds}
  overall, hard = by_slice['{}'], by_slice['{"vog_bucket": "hard"}']
  assert overall.value_threshold.lower_bound.value == pytest.approx(0.8)
  assert overall.change_threshold.absolute.value == pytest.approx(-0.05)
  assert overall.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
  # Off by default: ranked by confidence, the hard slice is the labels the model disputes.
  assert hard.value_threshold.lower_bound.value == pytest.approx(0.0)
  # A plain metric threshold would apply to every decile and label slice as well.
  assert not accuracy.HasField('threshold')


def test_mysql_metadata_takes_the_password_from_the_environment(tmp_path, monkeypatch):
  # setenv first records the variable's state, so what export_password writes is undone.
  monkeypatch.setenv('MYSQL_PWD', 'unset')
  monkeypatch.delenv('MYSQL_PWD')
  metadata = MetadataConfig(mysql_host='mlmd.internal', mysql_port=3307,
                            mysql_database='vog', mysql_user='auditor')
  config = metadata.connection_config()
  # The connection config is compiled into the IR and logged: it never holds the password.
  assert (config.mysql.host, config.mysql.port, config.mysql.database,
          config.mysql.user, config.mysql.password) == (
              'mlmd.internal', 3307, 'vog', 'auditor', '')
  assert metadata.export_password({'VOG_AUDIT_MYSQL_PASSWORD': 's3cret'})
  assert os.environ['MYSQL_PWD'] == 's3cret' and not metadata.export_password({})
  pipeline = audit_pipeline.create_pipeline(
      _config(tmp_path, metadata=metadata), metadata.connection_config())
  assert pipeline.metadata_connection_config.mysql.host == 'mlmd.internal'
  assert not pipeline.metadata_connection_config.mysql.password


def test_config_from_env():
  config = PipelineConfig.from_env({
      'VOG_AUDIT_HOME': '/srv/vog', 'VOG_AUDIT_MYSQL_HOST': 'db', 'VOG_AUDIT_MYSQL_DATABASE':
      'mlmd', 'VOG_AUDIT_BEAM_ARGS': '--direct_num_workers=4', 'VOG_AUDIT_EPOCHS': '5',
      'VOG_AUDIT_REVIEW_BACKEND': 'local', 'VOG_AUDIT_REVIEW_APPROVERS': 'alice, bob',
      'VOG_AUDIT_REVIEW_TIMEOUT': '7200'})
  assert config.data_root == '/srv/vog/data'
  assert config.metadata_config().kind == 'mysql'
  assert config.beam_args() == ['--direct_num_workers=4'] and config.epochs == 5
  assert (config.review_backend, config.review_approvers, config.review_timeout_seconds) == (
      'local', ('alice', 'bob'), 7200.0)


@pytest.mark.parametrize('make, message', [
    (lambda t: audit_pipeline.create_pipeline(_config(t, epochs=1)),
     'epochs=1; VarianceOfGradients needs at least 2'),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_target='gradient')),
     "target='gradient' is not supported; choose one of"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_stage='warmup')),
     "stage='warmup': give early, middle, late, complete or a list"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, min_hard_accuracy=1.5)),
     r'min_hard_accuracy=1.5 is an accuracy bound and must be in \[0, 1\]'),
    (lambda t: audit_pipeline.create_pipeline(_config(t, review_backend='local')),
     "backend='local' needs approvers"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, review_backend='email')),
     "backend 'email' is not one of slack, local, auto"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, auto_policy=(('max_typo', 1),))),
     "auto_policy rule 'max_typo' is unknown"),
    (lambda t: PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x',
                                        'VOG_AUDIT_REVIEW_TIMEOUT': 'soon'}),
     "VOG_AUDIT_REVIEW_TIMEOUT='soon' is not a number of seconds"),
    (lambda t: MetadataConfig(mysql_host='db').connection_config(),
     'MySQL ML Metadata at db needs a database name'),
    (lambda t: PipelineConfig.from_env({}), 'set VOG_AUDIT_HOME'),
    (lambda t: PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x',
                                        'VOG_AUDIT_MYSQL_HOST': 'db',
                                        'VOG_AUDIT_MYSQL_PORT': 'abc'}),
     "VOG_AUDIT_MYSQL_PORT='abc' is not a port number"),
])
def test_bad_settings_refused_by_name(tmp_path, make, message):
  with pytest.raises(ValueError, match=message):
    make(tmp_path)
