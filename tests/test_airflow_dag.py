"""The Airflow DAG file loads through Airflow's DagBag with the pipeline's tasks and schedule."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAG_FILE = os.path.join(REPO, 'pipeline', 'airflow_dag.py')
EXPECTED_TASKS = {'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator',
                  'Trainer', 'latest_shipped_audit_resolver', 'VarianceOfGradients',
                  'latest_blessed_model_resolver', 'Evaluator', 'HumanReviewGate', 'Pusher'}

# DagBag runs in a fresh interpreter: AIRFLOW_HOME must be set before airflow is first
# imported, and the parent test process must not carry Airflow's global settings.
_LOAD = textwrap.dedent('''
    import json, sys
    from airflow.models.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    dag = bag.dags.get('vog-audit')
    print(json.dumps({
        'errors': {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
        'dag_ids': sorted(bag.dags),
        'tasks': sorted(dag.task_ids) if dag else [],
        'schedule': str(dag.schedule_interval) if dag else None,
        'catchup': dag.catchup if dag else None,
        'edges': sorted([u, d] for u in (dag.task_ids if dag else [])
                        for d in dag.get_task(u).downstream_task_ids),
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


def test_inspection_budget_is_configurable_and_checked():
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  home = {'VOG_AUDIT_HOME': '/srv/vog'}
  assert PipelineConfig.from_env(home).inspection_budget == 200
  config = PipelineConfig.from_env({**home, 'VOG_AUDIT_INSPECTION_BUDGET': '50'})
  assert config.inspection_budget == config.vog_settings().inspection_budget == 50
  with pytest.raises(ValueError, match="VOG_AUDIT_INSPECTION_BUDGET='lots' is not a whole"):
    PipelineConfig.from_env({**home, 'VOG_AUDIT_INSPECTION_BUDGET': 'lots'})
