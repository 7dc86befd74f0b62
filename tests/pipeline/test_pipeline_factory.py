"""The pipeline factory: component ids, wiring, Evaluator slices and thresholds, ML Metadata."""

import json
import os

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format

from components.vog import beam_args
from components.vog import spec_keys
from components.vog.settings import VogSettings
from pipeline import audit_pipeline
from pipeline.config import DEFAULT_BEAM_ARGS, MetadataConfig, PipelineConfig


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
  # The reference data's record of its planted wrong labels is never sliced.
  assert settings == VogSettings(num_checkpoints=6, slice_leave_out=['label_flipped'])
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


PIPELINE_BEAM_ARGS = ('--direct_running_mode=multi_processing', '--direct_num_workers=0',
                      '--experiments=shared')
# A GPU pool for VoG alone, as on Dataflow; one option also given to the whole pipeline.
VOG_BEAM_ARGS = ('--direct_num_workers=1', '--machine_type=g2-standard-8',
                 '--experiments=vog_gpu')


def _beam_components(pipeline):
  from tfx.dsl.components.base import executor_spec  # pylint: disable=g-import-not-at-top
  return {c.id: c for c in pipeline.components
          if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec)}


def _ir_beam_args(pipeline):
  """{node id: Beam args} of the compiled IR, which LocalDagRunner executes."""
  from tfx.dsl.compiler import compiler  # pylint: disable=g-import-not-at-top
  from tfx.proto.orchestration import executable_spec_pb2  # pylint: disable=g-import-not-at-top
  from tfx.proto.orchestration import pipeline_pb2  # pylint: disable=g-import-not-at-top
  deployment = pipeline_pb2.IntermediateDeploymentConfig()
  compiler.Compiler().compile(pipeline).deployment_config.Unpack(deployment)
  found = {}
  for node_id, packed in deployment.executor_specs.items():
    beam_spec = executable_spec_pb2.BeamExecutableSpec()
    if packed.Unpack(beam_spec):
      found[node_id] = [p.value.string_value for p in beam_spec.beam_pipeline_args_placeholders]
  return found


def test_without_vog_beam_args_every_beam_component_gets_the_pipelines(built):
  pipeline, _ = built
  beam = _beam_components(pipeline)
  assert set(beam) == {'ImportExampleGen', 'StatisticsGen', 'VarianceOfGradients',
                       'Evaluator'}
  for node_id, component in beam.items():
    assert component.executor_spec.beam_pipeline_args == list(DEFAULT_BEAM_ARGS), node_id


def test_vog_beam_args_go_to_the_vog_component_alone_after_the_pipelines(tmp_path):
  pipeline = audit_pipeline.create_local_pipeline(_config(
      tmp_path, beam_pipeline_args=PIPELINE_BEAM_ARGS,
      vog_beam_pipeline_args=list(VOG_BEAM_ARGS)))
  assert pipeline.beam_pipeline_args == list(PIPELINE_BEAM_ARGS)
  expected = {node_id: list(PIPELINE_BEAM_ARGS) for node_id in
              ('ImportExampleGen', 'StatisticsGen', 'Evaluator')}
  expected['VarianceOfGradients'] = list(PIPELINE_BEAM_ARGS + VOG_BEAM_ARGS)
  assert {node_id: c.executor_spec.beam_pipeline_args
          for node_id, c in _beam_components(pipeline).items()} == expected
  assert _ir_beam_args(pipeline) == expected
  # What Beam makes of VoG's list: its single-valued options win, a repeatable one keeps
  # both values, and the pipeline's other options still apply.
  from apache_beam.options import pipeline_options as po  # pylint: disable=g-import-not-at-top
  options = po.PipelineOptions(expected['VarianceOfGradients'])
  assert options.view_as(po.DirectOptions).direct_num_workers == 1
  assert options.view_as(po.DirectOptions).direct_running_mode == 'multi_processing'
  assert options.view_as(po.WorkerOptions).machine_type == 'g2-standard-8'
  assert options.view_as(po.DebugOptions).experiments == ['shared', 'vog_gpu']


def test_review_gate_defaults_to_the_written_auto_policy(built):
  _, nodes = built
  gate = nodes['HumanReviewGate'].exec_properties
  assert gate['backend'] == 'auto'
  assert json.loads(gate['auto_policy']) == {'max_quarantined_share': 0.01,
                                             'max_class_flagged_share': 0.5}
  assert json.loads(gate['approvers']) == []


def test_review_gate_backend_and_approvers_come_from_the_config(tmp_path):
  pipeline = audit_pipeline.create_pipeline(_config(
      tmp_path, review_backend='slack', review_approvers=('U0ALICE', 'U0BOB'),
      review_quorum=2, slack_channel='C0REVIEW', review_timeout_seconds=600))
  gate = {c.id: c for c in pipeline.components}['HumanReviewGate'].exec_properties
  assert (gate['backend'], json.loads(gate['approvers']), gate['slack_channel'],
          gate['timeout_seconds'], gate['auto_policy'], gate['quorum']) == (
              'slack', ['U0ALICE', 'U0BOB'], 'C0REVIEW', 600.0, None, 2)


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
      'VOG_AUDIT_REVIEW_TIMEOUT': '7200', 'VOG_AUDIT_REVIEW_QUORUM': '2'})
  assert config.data_root == '/srv/vog/data'
  assert config.metadata_config().kind == 'mysql'
  assert config.beam_args() == ['--direct_num_workers=4'] and config.epochs == 5
  assert (config.review_backend, config.review_approvers, config.review_timeout_seconds,
          config.review_quorum) == ('local', ('alice', 'bob'), 7200.0, 2)
  with pytest.raises(ValueError, match="VOG_AUDIT_REVIEW_QUORUM='two' is not a whole"):
    PipelineConfig.from_env({'VOG_AUDIT_HOME': '/srv/vog', 'VOG_AUDIT_REVIEW_QUORUM': 'two'})
  assert config.vog_beam_pipeline_args == () and config.vog_beam_args() == []


def test_vog_beam_args_from_env_split_like_the_pipelines():
  config = PipelineConfig.from_env({
      'VOG_AUDIT_HOME': '/srv/vog', 'VOG_AUDIT_BEAM_ARGS': '--direct_num_workers=4',
      'VOG_AUDIT_VOG_BEAM_ARGS': ' --machine_type=g2-standard-8\t--dataflow_service_options='
                                 'worker_accelerator=type:nvidia-l4;count:1 '})
  assert config.beam_args() == ['--direct_num_workers=4']
  assert config.vog_beam_args() == [
      '--machine_type=g2-standard-8',
      '--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1']


@pytest.mark.parametrize('make, message', [
    (lambda t: audit_pipeline.create_pipeline(_config(t, epochs=1)),
     'epochs=1; VarianceOfGradients needs at least 2'),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_target='gradient')),
     "target='gradient' is not supported; choose one of"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_stage='warmup')),
     "stage='warmup': give early, middle, late, complete or a list"),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_copy_splits=['train'])),
     r"vog_copy_splits=\['train'\] and vog_splits=None leave the 'eval' split out of "
     'scored_examples, which the Evaluator reads'),
    (lambda t: audit_pipeline.create_pipeline(_config(t, vog_splits=['train'])),
     "leave the 'eval' split out of scored_examples"),
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
                                        'VOG_AUDIT_VOG_BEAM_ARGS': '--runner DataflowRunner'}),
     "VOG_AUDIT_VOG_BEAM_ARGS: item 2, 'DataflowRunner', does not begin with \"--\" and an "
     'option name; join it to the option before it as one item: --runner=VALUE'),
    (lambda t: _config(t, vog_beam_pipeline_args=('machine_type=g2-standard-8',)),
     "vog_beam_pipeline_args: item 1, 'machine_type=g2-standard-8', does not begin with"),
    (lambda t: _config(t, vog_beam_pipeline_args='--runner=DataflowRunner'),
     'vog_beam_pipeline_args must be a list of Beam arguments such as '
     r"\['--runner=DataflowRunner'\], not one string"),
    (lambda t: _config(t, vog_beam_pipeline_args=('--', '--runner=DataflowRunner')),
     "vog_beam_pipeline_args: item 1, '--', does not begin with"),
    (lambda t: _config(t, vog_beam_pipeline_args=(4,)),
     'vog_beam_pipeline_args: item 1 is of type int, not a string'),
    (lambda t: PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x',
                                        'VOG_AUDIT_MYSQL_HOST': 'db',
                                        'VOG_AUDIT_MYSQL_PORT': 'abc'}),
     "VOG_AUDIT_MYSQL_PORT='abc' is not a port number"),
])
def test_bad_settings_refused_by_name(tmp_path, make, message):
  with pytest.raises(ValueError, match=message):
    make(tmp_path)


SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY'


@pytest.mark.parametrize('make, setting', [
    (lambda t: PipelineConfig.from_env({
        'VOG_AUDIT_HOME': '/x', 'VOG_AUDIT_VOG_BEAM_ARGS': f'--s3_secret_access_key {SECRET}'}),
     'VOG_AUDIT_VOG_BEAM_ARGS: item 2 (not shown: it may be a secret)'),
    (lambda t: _config(t, vog_beam_pipeline_args=('--s3_session_token', SECRET)),
     'vog_beam_pipeline_args: item 2 (not shown: it may be a secret)'),
    (lambda t: _config(t, vog_beam_pipeline_args=(f'https://auditor:{SECRET}@flink:8081',)),
     'vog_beam_pipeline_args: item 1 (not shown: it may be a secret)'),
])
def test_a_refused_secret_is_named_by_position_never_repeated(tmp_path, make, setting):
  with pytest.raises(ValueError) as refused:
    make(tmp_path)
  assert str(refused.value).startswith(setting)
  assert SECRET not in str(refused.value) and SECRET not in repr(refused.value)


def test_secret_looking_values_are_hidden_where_beam_args_are_logged():
  # What the VarianceOfGradients executor logs as the Beam arguments it runs with.
  args = ['--runner=DataflowRunner', f'--s3_secret_access_key={SECRET}',
          '--azure_connection_string', SECRET, f'--flink_master=https://a:{SECRET}@flink',
          '--labels', 'tfx_runner=airflow', f'--API-KEY={SECRET}']
  assert beam_args.shown(args) == [
      '--runner=DataflowRunner', '--s3_secret_access_key=<hidden>',
      '--azure_connection_string', '<hidden>', '--flink_master=<hidden>',
      '--labels', 'tfx_runner=airflow', '--API-KEY=<hidden>']
