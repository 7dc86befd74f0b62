"""The audit on Beam's PortableRunner, the Fn API path of Dataflow, Flink and Spark.

Beam's own job service (`local_job_service_main`) and an SDK worker pool
(`worker_pool_main`) run as separate processes on localhost; the pipeline goes to the
job service as a portable pipeline proto, with `--environment_type=EXTERNAL` pointing
at the pool, which starts the SDK harness (a `python` process of its own) that runs
the audit's DoFns. The same plan runs once there and once on the DirectRunner; the
counts, the score table, the flagged rows and the copied eval split must agree, and
the checkpoints must have been loaded in the SDK harness, not in this process. A
second audit then compares with the first portable report (the history join by
example_id) and must give the drift the DirectRunner gives.

What this does not cover, and what a real runner needs beyond it (from the Beam
sources installed here):
- Environment. The pool's harness is `python -c ... SdkHarness(...)`: it imports
  from whatever `python` its PATH gives it and fetches no staged artifact (only a
  container entry point is handed the artifact endpoint), so the venv (Beam,
  TensorFlow with TF_USE_LEGACY_KERAS=1, this project) must already be there. Beam's
  default `--environment_type` is DOCKER, the apache/beam_python3.10_sdk image, whose
  boot sequence installs what `--setup_file`, `--requirements_file` or
  `--extra_package` staged; the alternative is an image with the project installed:
  `--sdk_container_image` on Dataflow, `--environment_config=<image>` (or
  `--environment_option=docker_container_image=<image>`) on Flink and Spark. The
  local job service knows the EMBEDDED, EXTERNAL, DOCKER and its own subprocess
  environments: `--environment_type=PROCESS` fails there with KeyError
  'beam:env:process:v1'.
- Files. Every path in the plan (checkpoints, module_file, input shards, the output
  and report folders) is read or written by the workers, so here they share this
  machine's disk; on Dataflow, Flink or Spark clusters they must be on a file system
  every worker and the launcher see (gs:// or a shared mount): the launcher reads
  the baseline report at plan time and the work files the workers wrote, and the
  workers read the baseline's history shards.
- Parallelism. This job service runs one SDK harness per environment; splitting
  across workers and retries of failed bundles are the real runner's, not tested here.
"""

import concurrent.futures
import glob
import json
import os
import socket
import sys
import time

import pytest
import tensorflow as tf

from components.vog import audit
from components.vog import audit_plan
from components.vog.dataflow import drift as drift_lib
from components.vog.report import report_format
from components.vog.settings import VogSettings
import apache_beam as beam
import fixtures
import repo_paths
import service_processes

START_TIMEOUT_S = 90
# One audit on the portable runner. A harness that cannot start (say `python` on the
# pool's PATH lacks Beam) leaves the job waiting for it for ever; this fails it instead.
RUN_TIMEOUT_S = 180
N_TRAIN, N_EVAL = 80, 40


def _accepts(port: int) -> bool:
  try:
    socket.create_connection(('localhost', port), timeout=1).close()
    return True
  except OSError:
    return False


class PortableServices(service_processes.ServiceProcesses):
  """Beam's job service and an SDK worker pool started as processes; `stop()` ends them."""

  def __init__(self, root: str):
    # The pool starts `python` from PATH for each SDK harness, with this environment:
    # the venv's interpreter first, the legacy Keras TF needs, this repository.
    super().__init__(root, service_processes.service_env(PATH=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get('PATH', '')])))
    self.job_port = service_processes.free_port()
    self.pool_port = service_processes.free_port()

  @property
  def pool_pid(self) -> int:
    return self.processes['worker-pool'][0].pid

  def start(self):
    self.start_module('job-service', ['apache_beam.runners.portability.local_job_service_main',
                                '--port', str(self.job_port)])
    self.start_module('worker-pool', ['apache_beam.runners.worker.worker_pool_main',
                                '--service_port', str(self.pool_port)])
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = {'job-service': self.job_port, 'worker-pool': self.pool_port}
    while waiting and time.monotonic() < deadline:
      for name, port in list(waiting.items()):
        if self.processes[name][0].poll() is not None:
          break
        if _accepts(port):
          del waiting[name]
      else:
        if waiting:
          time.sleep(0.3)
        continue
      break  # a process exited
    if waiting:
      logs = self.logs()
      self.stop()
      pytest.fail(f'{sorted(waiting)} did not accept connections on ports {waiting} '
                  f'(waited up to {START_TIMEOUT_S}s):\n{logs}')

  def beam_args(self):
    return ['--runner=PortableRunner', f'--job_endpoint=localhost:{self.job_port}',
            '--environment_type=EXTERNAL', f'--environment_config=localhost:{self.pool_port}']

  def stop(self):
    # On SIGINT the pool exits through its atexit hook, which stops the SDK harnesses
    # it started; SIGTERM would skip that hook.
    self.stop_processes(interrupt=['worker-pool'])


@pytest.fixture(scope='module')
def portable(tmp_path_factory):
  services = PortableServices(str(tmp_path_factory.mktemp('portable_services')))
  services.start()
  yield services
  services.stop()


# A user module whose custom_objects() notes the process that loads it, its parent and
# the factory (ScorerFactory or ParserFactory) that asked; the audit loads the user
# module wherever it builds a scorer or a parser.
PID_MODULE = '''
import json
import os
import sys


def custom_objects():
  factory, frame = None, sys._getframe(1)
  while frame is not None and factory is None:
    name = type(frame.f_locals.get('self')).__name__
    factory = name if name.endswith('Factory') else None
    frame = frame.f_back
  with open({log!r}, 'a') as f:
    f.write(json.dumps({{'pid': os.getpid(), 'ppid': os.getppid(),
                        'factory': factory}}) + '\\n')
  return {{}}
'''


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('portable_audit'))
  images, labels, _ = fixtures.digits(N_TRAIN + N_EVAL, seed=7)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  records = [fixtures.example(im, lab, f'ex-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  return root, records


def _eval_copies(folder):
  """The example ids of the scored eval split (the split copied in full)."""
  ids = []
  for path in glob.glob(os.path.join(folder, 'Split-eval', '*.gz')):
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      ids.append(example.features.feature['example_id'].bytes_list.value[0].decode())
  return sorted(ids)


def _flagged_rows(report_dir):
  with open(os.path.join(report_dir, 'flagged.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def _run(plan, out, beam_args=()):
  summary = audit.run_audit(plan, beam.Pipeline(argv=list(beam_args)),
                            os.path.join(out, 'scored'), os.path.join(out, 'report'))
  assert _eval_copies(os.path.join(out, 'scored')) == sorted(
      f'ex-{i}' for i in range(N_TRAIN, N_TRAIN + N_EVAL))
  assert not os.path.exists(os.path.join(out, 'scored', 'Split-train'))
  report = os.path.join(out, 'report')
  return summary, fixtures.score_rows(report), _flagged_rows(report)


def _bounded(portable, what, timeout, fn, *args):
  """fn(*args) in a thread, failing with the services' logs if it raises or is not done
  within `timeout` seconds (a harness that cannot start leaves a job waiting)."""
  executor = concurrent.futures.ThreadPoolExecutor(1)
  future = executor.submit(fn, *args)
  try:
    concurrent.futures.wait([future], timeout=timeout)
  finally:
    executor.shutdown(wait=False)
  if not future.done():
    logs = portable.logs()
    portable.stop()  # ends the job's streams, so the run's thread ends too
    pytest.fail(f'{what} did not finish on the PortableRunner within {timeout}s\n{logs}')
  error = future.exception()
  if error is not None:
    # The SDK harness writes its errors to the worker pool's log (its stderr).
    pytest.fail(f'{what} failed on the PortableRunner: {type(error).__name__}: '
                f'{error}\n{portable.logs()}')
  return future.result()


def _run_portable(portable, plan, out):
  """_run on the PortableRunner, failing with the services' logs if it fails or hangs."""
  return _bounded(portable, 'the audit', RUN_TIMEOUT_S, _run, plan, out,
                  portable.beam_args())


def _loads(log):
  """[(pid, ppid, factory)] of each load of the user module, in order."""
  if not os.path.exists(log):
    return []
  with open(log) as f:
    loads = [json.loads(line) for line in f if line.strip()]
  return [(load['pid'], load['ppid'], load['factory']) for load in loads]


def _assert_same_rows(direct, other):
  assert set(other) == set(direct)
  for key, row in direct.items():
    got = other[key]
    assert got['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5), key
    assert got['vog_score'] == pytest.approx(row['vog_score'], rel=1e-4, abs=1e-6), key
    assert {k: got[k] for k in ('vog_percentile', 'vog_bucket', 'vog_flagged')} == \
        {k: row[k] for k in ('vog_percentile', 'vog_bucket', 'vog_flagged')}, key


def _assert_same_flagged(direct, other):
  assert len(other) == len(direct) > 0
  exact = ('rank', 'example_id', 'split', 'label', 'predicted_class', 'target_class',
           'agreeing', 'vog_bucket', 'vog_percentile')
  for row, got in zip(direct, other):
    assert {k: got[k] for k in exact} == {k: row[k] for k in exact}
    assert got['vog_score'] == pytest.approx(row['vog_score'], rel=1e-4, abs=1e-6)
    assert got['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5)


def _histories(report):
  return sorted((row.example_id, row.split, row.flagged, row.streak)
                for path in report_format.history_files(report)
                for _, row in drift_lib.read_history_shard(path))


def test_portable_runner_matches_the_direct_runner(portable, trained, tmp_path):
  root, records = trained
  train, evaluation = records[:N_TRAIN], records[N_TRAIN:]
  examples = str(tmp_path / 'examples')
  patterns = {'train': fixtures.write_split(examples, 'train', [train[:40], train[40:]]),
              'eval': fixtures.write_split(examples, 'eval', [evaluation])}
  pid_log = str(tmp_path / 'loads.jsonl')
  module_file = str(tmp_path / 'pid_module.py')
  with open(module_file, 'w') as f:
    f.write(PID_MODULE.format(log=pid_log))
  settings = VogSettings(batch_size=16, inspection_budget=10)
  plan = audit_plan.plan_audit(settings, os.path.join(root, 'run'), patterns,
                               module_file=module_file)

  direct_summary, direct_rows, direct_flagged = _run(plan, str(tmp_path / 'direct'))
  assert 'ScorerFactory' in {factory for _, _, factory in _loads(pid_log)}
  os.remove(pid_log)

  start = time.monotonic()
  summary, rows, flagged = _run_portable(portable, plan, str(tmp_path / 'portable'))
  portable_seconds = time.monotonic() - start

  # The checkpoints were loaded in an SDK harness the worker pool started, not here;
  # this process only plans, reads back the work files and writes the report.
  loads = _loads(pid_log)
  harnesses = {pid for pid, ppid, _ in loads if ppid == portable.pool_pid}
  assert harnesses and os.getpid() not in harnesses, (loads, portable.pool_pid)
  scorer_pids = {pid for pid, _, factory in loads if factory == 'ScorerFactory'}
  assert scorer_pids and scorer_pids <= harnesses, (loads, portable.pool_pid)

  total = N_TRAIN + N_EVAL
  for name, s in (('direct', direct_summary), ('portable', summary)):
    assert s['counts']['seen'] == s['counts']['scored'] == total, name
    assert s['counts']['quarantined'] == 0, name
    assert s['splits']['train']['seen'] == N_TRAIN, name
    assert s['splits']['eval']['seen'] == N_EVAL, name
  for key in ('counts', 'splits', 'quarantine_kinds', 'error_rate_by_decile'):
    assert summary[key] == direct_summary[key], key
  assert len(summary['per_class']) == len(direct_summary['per_class'])
  for row, other in zip(direct_summary['per_class'], summary['per_class']):
    assert {k: other[k] for k in ('split', 'class', 'count', 'flagged')} == \
        {k: row[k] for k in ('split', 'class', 'count', 'flagged')}
    assert other['vog_raw_mean'] == pytest.approx(row['vog_raw_mean'], rel=1e-5)
  # The job service reports the workers' Beam counters through the job API.
  assert summary['beam_counters'] == direct_summary['beam_counters'] != {}

  assert len(rows) == total
  _assert_same_rows(direct_rows, rows)
  _assert_same_flagged(direct_flagged, flagged)
  print(f'portable run: {portable_seconds:.1f}s, harness pids {sorted(harnesses)}')

  # The next audit compares with the portable one: the history join by example_id
  # runs in the harness too, and gives what the DirectRunner gives.
  plan = audit_plan.plan_audit(settings, os.path.join(root, 'run'), patterns,
                               module_file=module_file,
                               baseline={'uri': str(tmp_path / 'portable' / 'report')})
  again = {'direct': _run(plan, str(tmp_path / 'direct2')),
           'portable': _run_portable(portable, plan, str(tmp_path / 'portable2'))}
  for name, (s, _, flagged_again) in again.items():
    drift = s['drift']
    # The same checkpoints on the same data: every example matched, the same flagged.
    assert drift['unavailable'] is None, name
    assert {d['split']: d['matched'] for d in drift['splits']} == \
        {'train': N_TRAIN, 'eval': N_EVAL}, name
    assert drift['streaks'] == {'2': len(flagged_again)}, name
    assert {r['drift_status'] for r in flagged_again} == {'still_flagged'}, name
  assert again['portable'][0]['drift'] == again['direct'][0]['drift']
  assert again['portable'][0]['counts'] == again['direct'][0]['counts']
  _assert_same_rows(again['direct'][1], again['portable'][1])
  _assert_same_flagged(again['direct'][2], again['portable'][2])
  for row, other in zip(again['direct'][2], again['portable'][2]):
    assert (other['drift_status'], other['flagged_streak']) == \
        (row['drift_status'], row['flagged_streak'])
  histories = {name: _histories(str(tmp_path / f'{name}2' / 'report')) for name in again}
  assert histories['portable'] == histories['direct']
  assert len(histories['portable']) == total


def test_the_command_line_runs_the_audit_on_the_portable_runner(portable, trained, tmp_path):
  # What a user types for a portable runner: `vog-audit score` with the runner's Beam
  # flags, each as one --beam-arg. It scores what the DirectRunner scores, and the
  # checkpoints are loaded in the pool's SDK harness.
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  root, records = trained
  examples = str(tmp_path / 'examples')
  fixtures.write_split(examples, 'train', [records[:40], records[40:N_TRAIN]])
  fixtures.write_split(examples, 'eval', [records[N_TRAIN:]])
  pid_log = str(tmp_path / 'loads.jsonl')
  module_file = str(tmp_path / 'pid_module.py')
  with open(module_file, 'w') as f:
    f.write(PID_MODULE.format(log=pid_log))
  common = ['score', '--model-run', os.path.join(root, 'run'), '--examples', examples,
            '--batch-size', '16', '--inspection-budget', '8', '--module-file', module_file]
  direct = CliRunner().invoke(cli, common + ['--output', str(tmp_path / 'direct')])
  assert direct.exit_code == 0, direct.output
  os.remove(pid_log)
  result = _bounded(portable, 'vog-audit score', RUN_TIMEOUT_S, CliRunner().invoke, cli,
                    common + ['--output', str(tmp_path / 'portable')] +
                    [f'--beam-arg={a}' for a in portable.beam_args()])
  assert result.exit_code == 0, (result.output, portable.logs())
  harnesses = {pid for pid, ppid, factory in _loads(pid_log)
               if ppid == portable.pool_pid and factory == 'ScorerFactory'}
  assert harnesses and os.getpid() not in harnesses
  reports = {name: str(tmp_path / name / 'difficulty_report')
             for name in ('direct', 'portable')}
  rows = {name: fixtures.score_rows(report) for name, report in reports.items()}
  assert len(rows['portable']) == N_TRAIN + N_EVAL
  _assert_same_rows(rows['direct'], rows['portable'])
  _assert_same_flagged(_flagged_rows(reports['direct']), _flagged_rows(reports['portable']))


def test_the_component_in_a_pipeline_runs_its_audit_on_the_portable_runner(portable, tmp_path):
  # The VoG step alone gets the portable runner's flags (with_beam_pipeline_args, what
  # the config's vog_beam_pipeline_args sets); ImportExampleGen and the Trainer run on
  # the pipeline's DirectRunner. The step completes in ML Metadata, its scores are the
  # checkpoints' own, and they were computed in the pool's SDK harness.
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from components import DifficultyReport  # pylint: disable=g-import-not-at-top
  from components import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import checkpoints  # pylint: disable=g-import-not-at-top
  from components.vog.report import score_table  # pylint: disable=g-import-not-at-top
  from components.vog.compute.scoring import VogScorer  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  n = 96
  images, labels, _ = fixtures.digits(n, seed=3)
  records = [fixtures.example(im, lab, f'digit-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  data = str(tmp_path / 'data')
  fixtures.write_records(os.path.join(data, 'train', 'part.gz'), records[:64])
  fixtures.write_records(os.path.join(data, 'eval', 'part.gz'), records[64:])
  pid_log = str(tmp_path / 'loads.jsonl')
  module_file = str(tmp_path / 'pid_module.py')
  with open(module_file, 'w') as f:
    f.write(PID_MODULE.format(log=pid_log))
  example_gen = tfx.components.ImportExampleGen(
      input_base=data, input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name='train', pattern='train/*'),
          tfx.proto.Input.Split(name='eval', pattern='eval/*')]))
  trainer = tfx.components.Trainer(
      module_file=os.path.join(repo_paths.TESTS, 'vog_trainer_module.py'),
      examples=example_gen.outputs['examples'],
      train_args=tfx.proto.TrainArgs(num_steps=1), eval_args=tfx.proto.EvalArgs(num_steps=1))
  vog = VarianceOfGradients(
      examples=example_gen.outputs['examples'], model_run=trainer.outputs['model_run'],
      label_key='label', batch_size=32, inspection_budget=8,
      module_file=module_file).with_beam_pipeline_args(portable.beam_args())
  store = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(tmp_path / 'metadata.sqlite'))
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='vog_portable', pipeline_root=str(tmp_path / 'pipeline'),
      components=[example_gen, trainer, vog], metadata_connection_config=store,
      beam_pipeline_args=['--direct_running_mode=in_memory'])
  # ImportExampleGen and the Trainer run first, on the DirectRunner: two more minutes.
  _bounded(portable, 'the pipeline', RUN_TIMEOUT_S + 120,
           tfx.orchestration.LocalDagRunner().run, pipeline)

  with metadata.Metadata(store) as m:
    [execution] = m.store.get_executions_by_type(
        'components.vog.component.VarianceOfGradients')
    [model_run] = m.store.get_artifacts_by_type('ModelRun')
    [report] = m.store.get_artifacts_by_type(DifficultyReport.TYPE_NAME)
  assert metadata_store_pb2.Execution.State.Name(execution.last_known_state) == 'COMPLETE'
  harnesses = {pid for pid, ppid, factory in _loads(pid_log)
               if ppid == portable.pool_pid and factory == 'ScorerFactory'}
  assert harnesses and os.getpid() not in harnesses, _loads(pid_log)
  table = score_table.read_table(report.uri).to_pydict()
  order = [int(i.split('-')[1]) for i in table['example_id']]
  assert sorted(order) == list(range(n))
  scorer = VogScorer(checkpoints.load_checkpoint_models(
      checkpoints.load_manifest(model_run.uri)), target='loss')
  expected = scorer.score({'image': images}, labels).vog_raw
  np.testing.assert_allclose(np.array(table['vog_raw']), expected[order], rtol=1e-5)
  assert sum(table['vog_flagged']) == 8
