"""The Airflow DAG file loads through Airflow's DagBag with the pipeline's tasks and schedule."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import repo_paths

REPO = repo_paths.REPO
DAG_FILE = os.path.join(REPO, 'pipeline', 'airflow_dag.py')
EXPECTED_TASKS = {'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator',
                  'Trainer', 'latest_shipped_audit_resolver', 'VarianceOfGradients',
                  'latest_blessed_model_resolver', 'Evaluator', 'HumanReviewGate', 'Pusher'}

# DagBag runs in a fresh interpreter: AIRFLOW_HOME must be set before airflow is first
# imported, and the parent test process must not carry Airflow's global settings.
# `beam_args` is what each task's executor gets as its Beam arguments: the task's launcher,
# created as the task creates it when it runs, hands `_beam_pipeline_args` to the executor.
_LOAD = textwrap.dedent('''
    import json, sys
    from airflow.models.dagbag import DagBag
    from tfx.orchestration import metadata
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    dag = bag.dags.get('vog-audit')

    def beam_args(task):
      given = task.python_callable.keywords
      launcher = given['component_launcher_class'].create(
          component=given['component'], pipeline_info=given['pipeline_info'],
          driver_args=given['driver_args'],
          metadata_connection=metadata.Metadata(given['metadata_connection_config']),
          beam_pipeline_args=given['beam_pipeline_args'],
          additional_pipeline_args=given['additional_pipeline_args'],
          component_config=given['component_config'])
      return launcher._beam_pipeline_args

    print(json.dumps({
        'errors': {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
        'dag_ids': sorted(bag.dags),
        'tasks': sorted(dag.task_ids) if dag else [],
        'schedule': str(dag.schedule_interval) if dag else None,
        'catchup': dag.catchup if dag else None,
        'edges': sorted([u, d] for u in (dag.task_ids if dag else [])
                        for d in dag.get_task(u).downstream_task_ids),
        'beam_args': {t.task_id: beam_args(t) for t in (dag.tasks if dag else [])},
    }))
''')


def _load(tmp_path, **env):
  dags = tmp_path / 'dags'
  dags.mkdir(exist_ok=True)
  shutil.copy(DAG_FILE, dags / 'vog_audit_dag.py')
  environ = {k: v for k, v in os.environ.items() if not k.startswith('VOG_AUDIT_')}
  environ.update({'AIRFLOW_HOME': str(tmp_path / 'airflow_home'),
                  'AIRFLOW__CORE__LOAD_EXAMPLES': 'False',
                  'AIRFLOW__CORE__UNIT_TEST_MODE': 'True',
                  'TF_USE_LEGACY_KERAS': '1', 'PYTHONPATH': REPO})
  environ.update(env)
  result = subprocess.run([sys.executable, '-c', _LOAD, str(dags)], env=environ,
                          capture_output=True, text=True, timeout=300, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def weekly(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('airflow')
  return _load(tmp, VOG_AUDIT_HOME=str(tmp / 'home'))


def test_dag_loads_without_import_errors(weekly):
  assert weekly['errors'] == {}
  assert weekly['dag_ids'] == ['vog-audit']


def test_every_component_is_a_task_wired_in_pipeline_order(weekly):
  assert set(weekly['tasks']) == EXPECTED_TASKS
  edges = {tuple(e) for e in weekly['edges']}
  for edge in [('ImportExampleGen', 'StatisticsGen'), ('SchemaGen', 'Trainer'),
               ('Trainer', 'VarianceOfGradients'), ('VarianceOfGradients', 'Evaluator'),
               ('latest_blessed_model_resolver', 'Evaluator'), ('Evaluator', 'HumanReviewGate'),
               ('VarianceOfGradients', 'HumanReviewGate'), ('HumanReviewGate', 'Pusher'),
               # The audit of the last shipped model: VoG's drift baseline, and what the
               # gate passes on when it does not bless.
               ('latest_shipped_audit_resolver', 'VarianceOfGradients'),
               ('latest_shipped_audit_resolver', 'HumanReviewGate')]:
    assert edge in edges, edge


def test_weekly_by_default_without_catch_up(weekly):
  assert weekly['schedule'] == '@weekly'
  assert weekly['catchup'] is False


def test_schedule_is_configurable_and_bad_config_is_an_import_error(tmp_path):
  daily = _load(tmp_path, VOG_AUDIT_HOME=str(tmp_path / 'home'),
                VOG_AUDIT_SCHEDULE='0 3 * * *')
  assert daily['errors'] == {} and daily['schedule'] == '0 3 * * *'
  unconfigured = _load(tmp_path)
  assert unconfigured['dag_ids'] == []
  (message,) = unconfigured['errors'].values()
  assert 'set VOG_AUDIT_HOME' in message


def test_every_task_gets_the_pipelines_beam_args_by_default(weekly):
  from pipeline.config import DEFAULT_BEAM_ARGS  # pylint: disable=g-import-not-at-top
  assert weekly['beam_args'] == {task: list(DEFAULT_BEAM_ARGS) for task in EXPECTED_TASKS}


def test_vog_beam_args_reach_the_vog_task_alone(tmp_path):
  loaded = _load(tmp_path, VOG_AUDIT_HOME=str(tmp_path / 'home'),
                 VOG_AUDIT_BEAM_ARGS='--direct_running_mode=in_memory',
                 VOG_AUDIT_VOG_BEAM_ARGS='--direct_num_workers=1 --machine_type=g2-standard-8')
  assert loaded['errors'] == {}
  assert loaded['beam_args'] == {
      **{task: ['--direct_running_mode=in_memory'] for task in EXPECTED_TASKS},
      'VarianceOfGradients': ['--direct_running_mode=in_memory', '--direct_num_workers=1',
                              '--machine_type=g2-standard-8']}


def test_a_bad_vog_beam_arg_is_an_import_error_that_hides_a_secret(tmp_path):
  secret = 'FQoGZXIvYXdzEXAMPLEtoken'
  loaded = _load(tmp_path, VOG_AUDIT_HOME=str(tmp_path / 'home'),
                 VOG_AUDIT_VOG_BEAM_ARGS=f'--direct_num_workers=1 --s3_session_token {secret}')
  assert loaded['dag_ids'] == []
  (message,) = loaded['errors'].values()
  assert ('VOG_AUDIT_VOG_BEAM_ARGS: item 3 (not shown: it may be a secret) does not begin '
          'with "--"') in message
  assert secret not in json.dumps(loaded)


def test_inspection_budget_is_configurable_and_checked():
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  home = {'VOG_AUDIT_HOME': '/srv/vog'}
  assert PipelineConfig.from_env(home).inspection_budget == 200
  config = PipelineConfig.from_env({**home, 'VOG_AUDIT_INSPECTION_BUDGET': '50'})
  assert config.inspection_budget == config.vog_settings().inspection_budget == 50
  with pytest.raises(ValueError, match="VOG_AUDIT_INSPECTION_BUDGET='lots' is not a whole"):
    PipelineConfig.from_env({**home, 'VOG_AUDIT_INSPECTION_BUDGET': 'lots'})


def test_the_launcher_puts_the_pipelines_beam_args_in_front_of_a_components_own():
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline.airflow_launcher import component_beam_args  # pylint: disable=g-import-not-at-top
  examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
  # Outside a pipeline the executor spec holds the component's own arguments alone.
  statistics = tfx.components.StatisticsGen(examples=examples).with_beam_pipeline_args(
      ['--direct_num_workers=1'])
  assert component_beam_args(statistics, ['--direct_running_mode=in_memory']) == [
      '--direct_running_mode=in_memory', '--direct_num_workers=1']
  # Not a Beam component: TFX hands it the pipeline's arguments as extra flags, unchanged.
  schema = tfx.components.SchemaGen(statistics=statistics.outputs['statistics'])
  assert component_beam_args(schema, ['--direct_running_mode=in_memory']) == [
      '--direct_running_mode=in_memory']
