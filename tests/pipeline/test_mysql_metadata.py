"""The reference pipeline with ML Metadata on a real MariaDB, the password only in the environment.

A module fixture starts MariaDB (Debian's `mariadb-server`, installed with apt-get when
`mariadbd` is missing) on 127.0.0.1 with a throwaway data directory, and creates a database
and a user with a random password through the server's socket. The demo pipeline then runs
against it in a fresh interpreter whose only copy of the password is VOG_AUDIT_MYSQL_PASSWORD.
Checked: the artifacts and the review decision are in MySQL, and the password is in no file
under the output folder (pipeline root and demo.log), no line the run printed or logged, and
no row of any ML Metadata table. Without MariaDB the compiled pipeline, the Airflow DAG and the
Kubeflow spec are checked for the password as well.
"""

import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import List

import pytest
import repo_paths

REPO = repo_paths.REPO
DATABASE = 'vog_mlmd'
USER = 'vog_auditor'
START_TIMEOUT_S = 60
PIPELINE_TIMEOUT_S = 900
NUM_EXAMPLES = 200


def _binary(name: str):
  """`name` on PATH or in the sbin folders, which a non-root PATH often lacks."""
  return shutil.which(name) or shutil.which(name, path='/usr/sbin:/usr/local/sbin:/sbin')


def _install_mariadb() -> None:
  """Installs Debian's mariadb-server and client with apt-get, or fails saying what to do."""
  if os.geteuid() != 0 or not shutil.which('apt-get'):
    pytest.fail('mariadbd is not installed and this test cannot install it (it needs root '
                'and apt-get); run `apt-get install -y mariadb-server mariadb-client` first')
  env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
  for command in (['apt-get', 'update', '-q'],
                  ['apt-get', 'install', '-y', '-q', '--no-install-recommends',
                   'mariadb-server', 'mariadb-client']):
    try:
      result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
      pytest.fail(f'`{" ".join(command)}` did not finish in 15 minutes; install '
                  'mariadb-server by hand and re-run')
    if result.returncode != 0:
      pytest.fail(f'`{" ".join(command)}` failed with exit {result.returncode}; install '
                  f'mariadb-server by hand and re-run:\n{(result.stdout + result.stderr)[-3000:]}')
  if not _binary('mariadbd'):
    pytest.fail('apt-get installed mariadb-server but no mariadbd is on PATH or in /usr/sbin')


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@dataclasses.dataclass
class MariaDB:
  """A running throwaway server: where it listens and the user the pipeline connects as."""
  port: int
  socket_path: str
  password: str
  host: str = '127.0.0.1'
  database: str = DATABASE
  user: str = USER
  started_in_s: float = 0.0

  def sql(self, statements: str, database: str = '') -> bytes:
    """Runs `statements` as root over the socket; returns the raw tab-separated output.

    The statements go through stdin, so a password in them never shows in a process list.
    """
    command = [_binary('mariadb'), '--no-defaults', f'--socket={self.socket_path}',
               '--user=root', '--batch', '--raw', '--skip-column-names']
    if database:
      command.append(database)
    result = subprocess.run(command, input=statements.encode(), capture_output=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors='replace')
    return result.stdout


def _wait_until_up(server: MariaDB, process: subprocess.Popen, log: str) -> None:
  deadline = time.monotonic() + START_TIMEOUT_S
  admin = [_binary('mariadb-admin'), '--no-defaults', f'--socket={server.socket_path}',
           '--user=root', '--connect-timeout=2', 'ping']
  while time.monotonic() < deadline:
    if process.poll() is not None:
      break
    if subprocess.run(admin, capture_output=True, timeout=30).returncode == 0:
      return
    time.sleep(0.2)
  with open(log, errors='replace') as f:
    tail = f.read()[-3000:]
  process.kill()
  pytest.fail(f'mariadbd did not accept connections within {START_TIMEOUT_S}s '
              f'(exit {process.poll()}); its log:\n{tail}')


@pytest.fixture(scope='module')
def mariadb():
  """A MariaDB server on 127.0.0.1 with a database and a password-protected user."""
  started = time.monotonic()
  if not (_binary('mariadbd') and _binary('mariadb-install-db') and _binary('mariadb')):
    _install_mariadb()
  # A short folder: the socket path must stay under the 108 bytes Unix sockets allow.
  folder = tempfile.mkdtemp(prefix='vog-mariadb-')
  data, log = os.path.join(folder, 'data'), os.path.join(folder, 'mariadbd.log')
  as_root = ['--user=root'] if os.geteuid() == 0 else []
  install = subprocess.run(
      [_binary('mariadb-install-db'), '--no-defaults', f'--datadir={data}',
       '--auth-root-authentication-method=normal', '--skip-test-db', *as_root],
      capture_output=True, text=True, timeout=300)
  if install.returncode != 0:
    shutil.rmtree(folder, ignore_errors=True)
    pytest.fail(f'mariadb-install-db failed:\n{(install.stdout + install.stderr)[-3000:]}')
  server = MariaDB(port=_free_port(), socket_path=os.path.join(folder, 'sock'),
                   password='pw-' + secrets.token_urlsafe(18))
  process = subprocess.Popen(
      [_binary('mariadbd'), '--no-defaults', f'--datadir={data}', f'--port={server.port}',
       '--bind-address=127.0.0.1', f'--socket={server.socket_path}', '--skip-name-resolve',
       f'--pid-file={os.path.join(folder, "pid")}', f'--log-error={log}',
       '--innodb-buffer-pool-size=64M', *as_root],
      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _wait_until_up(server, process, log)
    server.sql(textwrap.dedent(f'''
        CREATE DATABASE {DATABASE};
        CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{server.password}';
        GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'127.0.0.1';
    '''))
    server.started_in_s = time.monotonic() - started
    yield server
  finally:
    process.terminate()
    try:
      process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
    shutil.rmtree(folder, ignore_errors=True)


# The demo at test size, with the thresholds opened so that the model is blessed and the
# auto policy decides the review; the MySQL store comes from VOG_AUDIT_MYSQL_* variables.
# Ranked by class-normalised VoG, which flags every class alike: a 2-epoch model has not
# learned some class yet, and ranked by confidence more than half of that class would be
# flagged, which the default review policy rightly refuses to ship.
_RUN = textwrap.dedent('''
    import os, sys
    from pipeline import demo
    from pipeline.config import PipelineConfig
    store = PipelineConfig.from_env({'VOG_AUDIT_HOME': sys.argv[1], **os.environ}).metadata
    demo.run_demo(sys.argv[1], num_examples=int(sys.argv[2]), epochs=2, max_checkpoints=2,
                  vog_num_checkpoints=2, inspection_budget=20, min_accuracy=0.0,
                  min_hard_accuracy=0.0, max_accuracy_drop=1.0, metadata=store,
                  vog_rank_by='vog',
                  beam_pipeline_args=('--direct_running_mode=in_memory',))
''')


@dataclasses.dataclass
class Run:
  output_dir: str
  returncode: int
  output: bytes
  took_s: float


@pytest.fixture(scope='module')
def run(mariadb, tmp_path_factory):
  """The demo pipeline run once against `mariadb`, its stdout and stderr captured."""
  output_dir = str(tmp_path_factory.mktemp('mysql_demo') / 'demo_output')
  env = {k: v for k, v in os.environ.items()
         if not k.startswith('VOG_AUDIT_') and k != 'MYSQL_PWD'}
  env.update(TF_USE_LEGACY_KERAS='1', PYTHONHASHSEED='0', PYTHONPATH=REPO,
             VOG_AUDIT_MYSQL_HOST=mariadb.host, VOG_AUDIT_MYSQL_PORT=str(mariadb.port),
             VOG_AUDIT_MYSQL_DATABASE=mariadb.database, VOG_AUDIT_MYSQL_USER=mariadb.user,
             VOG_AUDIT_MYSQL_PASSWORD=mariadb.password)
  started = time.monotonic()
  result = subprocess.run([sys.executable, '-c', _RUN, output_dir, str(NUM_EXAMPLES)],
                          cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=PIPELINE_TIMEOUT_S)
  return Run(output_dir, result.returncode, result.stdout, time.monotonic() - started)


def _store(server: MariaDB):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  config = metadata_store_pb2.ConnectionConfig()
  config.mysql.host, config.mysql.port = server.host, server.port
  config.mysql.database, config.mysql.user = server.database, server.user
  config.mysql.password = server.password
  return metadata_store.MetadataStore(config)


def _props(artifact):
  return {k: getattr(v, v.WhichOneof('value')) for k, v in artifact.custom_properties.items()}


def test_the_pipeline_records_artifacts_and_the_review_in_mysql(mariadb, run):
  assert run.returncode == 0, run.output.decode(errors='replace')[-6000:]
  store = _store(mariadb)
  for type_name in ('Examples', 'Model', 'ModelRun', 'components.DifficultyReport',
                    'ModelBlessing', 'PushedModel'):
    artifacts = store.get_artifacts_by_type(type_name)
    assert artifacts, f'no {type_name} artifact in MySQL'
    for artifact in artifacts:
      assert artifact.uri.startswith(os.path.join(run.output_dir, 'pipeline')), artifact.uri
  [review] = [_props(b) for b in store.get_artifacts_by_type('ModelBlessing')
              if 'review_decision' in b.custom_properties]
  assert (review['review_decision'], review['reviewer'], review['blessed']) == (
      'approved', 'auto_policy', 1)
  [pushed] = store.get_artifacts_by_type('PushedModel')
  assert _props(pushed)['pushed'] == 1
  [pipeline] = store.get_contexts_by_type('pipeline')
  assert pipeline.name == 'vog-audit-demo'
  # The demo read its summary back from the same store.
  assert b'review: approved by auto_policy (auto backend)' in run.output
  assert not os.path.exists(os.path.join(run.output_dir, 'metadata.sqlite'))


def _files_holding(folder: str, secret: bytes) -> List[str]:
  found, checked = [], 0
  for parent, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(parent, name)
      if os.path.isfile(path) and not os.path.islink(path):
        with open(path, 'rb') as f:
          if secret in f.read():
            found.append(os.path.relpath(path, folder))
        checked += 1
  assert checked > 20, f'only {checked} files under {folder}; did the pipeline run?'
  return found


def test_the_password_is_in_no_file_under_the_output_folder(mariadb, run):
  assert run.returncode == 0, run.output.decode(errors='replace')[-6000:]
  # The output folder holds the pipeline root, the data and demo.log (TFX's log lines).
  assert _files_holding(run.output_dir, mariadb.password.encode()) == []


def test_the_password_is_in_no_log_line(mariadb, run):
  assert run.returncode == 0, run.output.decode(errors='replace')[-6000:]
  with open(os.path.join(run.output_dir, 'demo.log'), 'rb') as f:
    log = f.read()
  # The runner logged its connection (without the password) and every step.
  assert b'Using connection config' in log and f'port: {mariadb.port}'.encode() in log
  assert b'Component Pusher is finished.' in log
  for name, text in (('demo.log', log), ('stdout and stderr', run.output)):
    assert mariadb.password.encode() not in text, f'the password is in {name}'
    assert b'password:' not in text, f'a password field is in {name}'


def test_the_password_is_in_no_ml_metadata_row(mariadb, run):
  assert run.returncode == 0, run.output.decode(errors='replace')[-6000:]
  tables = mariadb.sql('SHOW TABLES;', mariadb.database).decode().split()
  assert {'Artifact', 'Execution', 'Context', 'ExecutionProperty'} <= set(tables)
  dump = b''.join(mariadb.sql(f'SELECT * FROM `{t}`;', mariadb.database) for t in tables)
  # The dump holds what the run recorded, so not finding the password means something.
  assert run.output_dir.encode() in dump and b'review_decision' in dump
  assert mariadb.password.encode() not in dump


def test_the_mariadb_fixture_starts_in_bounded_time(mariadb, run):
  # Reported, not asserted tightly: the first run on a fresh machine includes apt-get.
  print(f'\nMariaDB ready in {mariadb.started_in_s:.1f}s; pipeline run {run.took_s:.0f}s')
  assert mariadb.started_in_s < 1200


_AIRFLOW = textwrap.dedent('''
    import json, os, sys
    from airflow.models.dagbag import DagBag
    from airflow.serialization.serialized_objects import SerializedDAG
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
    dag = bag.dags['vog-audit']
    configs = [str(t.python_callable.keywords['metadata_connection_config'])
               for t in dag.tasks]
    print(json.dumps({'errors': {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
                      'configs': configs,
                      'serialized': json.dumps(SerializedDAG.to_dict(dag), default=str),
                      'mysql_pwd_set': bool(os.environ.get('MYSQL_PWD'))}))
''')


def test_compiled_pipeline_airflow_dag_and_kubeflow_spec_hold_no_password(
    tmp_path, monkeypatch):
  """No MariaDB needed: what the runners are handed before anything connects."""
  from tfx.dsl.compiler import compiler  # pylint: disable=g-import-not-at-top
  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  password = 'pw-' + secrets.token_urlsafe(18)
  mysql = {'VOG_AUDIT_HOME': str(tmp_path / 'home'), 'VOG_AUDIT_MYSQL_HOST': 'mlmd.internal',
           'VOG_AUDIT_MYSQL_DATABASE': 'vog', 'VOG_AUDIT_MYSQL_USER': 'auditor',
           'VOG_AUDIT_MYSQL_PASSWORD': password}
  for name, value in mysql.items():
    monkeypatch.setenv(name, value)
  monkeypatch.delenv('MYSQL_PWD', raising=False)  # restored after the test

  pipeline = audit_pipeline.create_local_pipeline(PipelineConfig.from_env())
  assert pipeline.metadata_connection_config.mysql.host == 'mlmd.internal'
  ir = compiler.Compiler().compile(pipeline)
  assert password.encode() not in ir.SerializeToString()
  assert password not in str(ir) and 'mlmd.internal' in str(ir)

  dags = tmp_path / 'dags'
  dags.mkdir()
  shutil.copy(os.path.join(REPO, 'pipeline', 'airflow_dag.py'), dags / 'vog_audit_dag.py')
  env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / 'airflow_home'),
             AIRFLOW__CORE__LOAD_EXAMPLES='False', AIRFLOW__CORE__UNIT_TEST_MODE='True',
             TF_USE_LEGACY_KERAS='1', PYTHONPATH=REPO)
  result = subprocess.run([sys.executable, '-c', _AIRFLOW, str(dags)], env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  airflow = json.loads(result.stdout.strip().splitlines()[-1])
  assert airflow['errors'] == {}
  assert len(airflow['configs']) == len(audit_pipeline.COMPONENT_IDS)  # one task each
  assert all('mlmd.internal' in c and password not in c for c in airflow['configs'])
  assert password not in airflow['serialized'] and password not in result.stderr
  # A task process imports the DAG file too, which hands the password to MySQL's client.
  assert airflow['mysql_pwd_set']

  out = tmp_path / 'kfp'
  result = subprocess.run([sys.executable, '-m', 'kubeflow.compile', '--output', str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert password not in (out / 'vog_audit_pipeline.json').read_text()
  assert password not in result.stdout + result.stderr
