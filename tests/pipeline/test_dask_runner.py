"""The audit on Beam's DaskRunner, against a dask.distributed cluster of real processes.

A scheduler and two single-threaded workers run as separate processes on 127.0.0.1.
The same plan runs once there and once on the DirectRunner; scores, flagged rows and
counts must agree, and the work must have run inside the worker processes.
"""

import collections
import glob
import json
import os
import time

import distributed
import pytest
import tensorflow as tf

from components.vog import audit
from components.vog import audit_plan
from components.vog.dataflow import drift as drift_lib
from components.vog.report import report_format
from components.vog.report import score_table
from components.vog.settings import VogSettings
import apache_beam as beam
import fixtures
import service_processes

DASK_RUNNER = 'apache_beam.runners.dask.dask_runner.DaskRunner'
NUM_WORKERS = 2
START_TIMEOUT_S = 90
N_TRAIN, N_EVAL = 80, 40


class DaskCluster(service_processes.ServiceProcesses):
  """A scheduler and single-threaded workers started as processes; `stop()` ends them."""

  def __init__(self, root: str):
    super().__init__(root, service_processes.service_env())
    self.port = service_processes.free_port()
    self.address = f'127.0.0.1:{self.port}'
    self.client = None

  def start(self):
    self.start_module('scheduler', ['distributed.cli.dask_scheduler', '--host', '127.0.0.1',
                                    '--port', str(self.port), '--no-dashboard'])
    for i in range(NUM_WORKERS):
      # --no-nanny: the worker is the process started here, so its pid is known.
      self.start_module(f'worker-{i}', [
          'distributed.cli.dask_worker', f'tcp://{self.address}', '--host', '127.0.0.1',
          '--nworkers', '1', '--nthreads', '1', '--no-nanny', '--no-dashboard',
          '--name', f'vog-worker-{i}', '--death-timeout', '120',
          '--local-directory', os.path.join(self.root, f'scratch-{i}')])
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
      self.client = distributed.Client(self.address, timeout=START_TIMEOUT_S,
                                       set_as_default=False)
      self.client.wait_for_workers(NUM_WORKERS,
                                   timeout=max(1.0, deadline - time.monotonic()))
    except Exception as e:  # pylint: disable=broad-except
      try:
        seen = len(self.client.scheduler_info()['workers'])
      except Exception:  # pylint: disable=broad-except
        seen = 0
      logs = self.logs()
      self.stop()
      pytest.fail(f'the dask cluster at {self.address} did not report {NUM_WORKERS} '
                  f'workers within {START_TIMEOUT_S}s (it has {seen}): '
                  f'{type(e).__name__}: {e}\n{logs}')

  def worker_pids(self):
    """{worker address: pid} as the workers report it."""
    return self.client.run(os.getpid)

  def executed_counts(self):
    """{worker address: tasks it has run so far}."""
    return self.client.run(lambda dask_worker: dask_worker.state.executed_count)

  def stop(self):
    if self.client is not None:
      self.client.close()
      self.client = None
    # The DaskRunner opens its own client per pipeline and leaves it open as the
    # default client; close those before the scheduler goes away.
    for _ in range(100):
      try:
        leftover = distributed.default_client()
      except ValueError:
        break
      leftover.close()
    self.stop_processes()


@pytest.fixture(scope='module')
def dask_cluster(tmp_path_factory):
  cluster = DaskCluster(str(tmp_path_factory.mktemp('dask_cluster')))
  cluster.start()
  yield cluster
  cluster.stop()


# A user module whose custom_objects() notes the pid of every process that loads it;
# the audit loads the user module wherever it builds a scorer or a parser.
PID_MODULE = '''
import os


def custom_objects():
  with open({log!r}, 'a') as f:
    f.write(f'{{os.getpid()}}\\n')
  return {{}}
'''


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('dask_audit'))
  images, labels, _ = fixtures.digits(N_TRAIN + N_EVAL, seed=5)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  records = [fixtures.example(im, lab, f'ex-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  return root, records


def _scored_rows(report_dir):
  """{(split, example_id): [rows of each copy, sorted]} from the audit's score table."""
  rows = collections.defaultdict(list)
  for row in score_table.read_table(report_dir).to_pylist():
    rows[(row['split'], row['example_id'])].append({
        k: row[k] for k in ('vog_raw', 'vog_score', 'vog_percentile', 'vog_decile',
                            'vog_bucket', 'vog_flagged')})
  return {k: sorted(v, key=lambda r: r['vog_raw']) for k, v in rows.items()}


def _eval_copies(folder):
  """How many examples the scored eval split holds (the split copied in full)."""
  return sum(1 for path in glob.glob(os.path.join(folder, 'Split-eval', '*.gz'))
             for _ in tf.data.TFRecordDataset(path, compression_type='GZIP'))


def _flagged_rows(report_dir):
  with open(os.path.join(report_dir, 'flagged.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def _run(plan, out, beam_args):
  summary = audit.run_audit(plan, beam.Pipeline(argv=list(beam_args)),
                            os.path.join(out, 'scored'), os.path.join(out, 'report'))
  assert _eval_copies(os.path.join(out, 'scored')) == N_EVAL + 1
  assert not os.path.exists(os.path.join(out, 'scored', 'Split-train'))
  return (summary, _scored_rows(os.path.join(out, 'report')),
          _flagged_rows(os.path.join(out, 'report')))


def _pids(log):
  if not os.path.exists(log):
    return collections.Counter()
  with open(log) as f:
    return collections.Counter(int(line) for line in f if line.strip())


def test_dask_runner_matches_the_direct_runner(dask_cluster, trained, tmp_path):
  root, records = trained
  train, evaluation = records[:N_TRAIN], records[N_TRAIN:]
  # Exact duplicates (identical bytes): three copies of one train record across both
  # shards, two copies of one eval record.
  train_shards = [train[:40] + [train[3]], train[40:] + [train[3]]]
  eval_shards = [evaluation[:20] + [evaluation[7]], evaluation[20:]]
  examples = str(tmp_path / 'examples')
  patterns = {'train': fixtures.write_split(examples, 'train', train_shards),
              'eval': fixtures.write_split(examples, 'eval', eval_shards)}
  expected_copies = collections.Counter(
      {('train', f'ex-{i}'): 1 for i in range(N_TRAIN)})
  expected_copies.update({('eval', f'ex-{i}'): 1 for i in range(N_TRAIN, N_TRAIN + N_EVAL)})
  expected_copies[('train', 'ex-3')] = 3
  expected_copies[('eval', f'ex-{N_TRAIN + 7}')] = 2
  total = sum(expected_copies.values())

  pid_log = str(tmp_path / 'scorer_pids.txt')
  module_file = str(tmp_path / 'pid_module.py')
  with open(module_file, 'w') as f:
    f.write(PID_MODULE.format(log=pid_log))
  plan = audit_plan.plan_audit(VogSettings(batch_size=16, inspection_budget=12),
                               os.path.join(root, 'run'), patterns, module_file=module_file)

  direct_summary, direct_scored, direct_flagged = _run(plan, str(tmp_path / 'direct'), [])
  os.remove(pid_log)

  worker_pids = dask_cluster.worker_pids()
  assert os.getpid() not in worker_pids.values()
  before = dask_cluster.executed_counts()
  start = time.monotonic()
  try:
    dask_summary, dask_scored, dask_flagged = _run(
        plan, str(tmp_path / 'dask'),
        [f'--runner={DASK_RUNNER}', f'--dask_client_address={dask_cluster.address}',
         '--dask_npartitions=2'])
  except Exception as e:  # pylint: disable=broad-except
    pytest.fail(f'the audit failed on the DaskRunner: {type(e).__name__}: {e}\n'
                f'{dask_cluster.logs()}')
  dask_seconds = time.monotonic() - start
  after = dask_cluster.executed_counts()

  # The work ran in the worker processes: both ran tasks, and the checkpoints were
  # loaded there, not in this process (which only plans and writes the report).
  ran = {addr: after[addr] - before.get(addr, 0) for addr in after}
  assert len(ran) == 2 and all(n > 0 for n in ran.values()), ran
  loaded_in = _pids(pid_log)
  assert set(worker_pids.values()) <= set(loaded_in), (worker_pids, loaded_in)

  # Every copy of every example is scored, written and counted, on both runners.
  for name, scored in (('direct', direct_scored), ('dask', dask_scored)):
    copies = collections.Counter({k: len(v) for k, v in scored.items()})
    assert copies == expected_copies, (name, copies - expected_copies,
                                       expected_copies - copies)
  for name, summary, scored in (('direct', direct_summary, direct_scored),
                                ('dask', dask_summary, dask_scored)):
    assert summary['counts']['seen'] == summary['counts']['scored'] == total, name
    assert summary['counts']['quarantined'] == 0, name
    assert summary['splits']['train']['seen'] == N_TRAIN + 2, name
    assert summary['splits']['eval']['seen'] == N_EVAL + 1, name
    # What the summary counts per decile is what the written rows say, copy by copy.
    written = collections.Counter((split, row['vog_decile'])
                                  for (split, _), rows in scored.items() for row in rows)
    counted = {(r['split'], r['decile']): r['count'] for r in summary['error_rate_by_decile']}
    assert counted == dict(written), (name, counted, dict(written))

  for key, rows in direct_scored.items():
    for row, other in zip(rows, dask_scored[key]):
      assert other['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5), key
      assert other['vog_score'] == pytest.approx(row['vog_score'], rel=1e-4, abs=1e-6), key
      assert other['vog_percentile'] == row['vog_percentile'], key
      assert other['vog_decile'] == row['vog_decile'], key
      assert other['vog_bucket'] == row['vog_bucket'], key
      assert other['vog_flagged'] == row['vog_flagged'], key
  for copies in (direct_scored[('train', 'ex-3')], dask_scored[('train', 'ex-3')]):
    assert len({json.dumps(c, sort_keys=True) for c in copies}) == 1  # identical scores

  assert len(dask_flagged) == len(direct_flagged) > 0
  for row, other in zip(direct_flagged, dask_flagged):
    exact = ('rank', 'example_id', 'split', 'label', 'predicted_class', 'target_class',
             'vog_bucket', 'vog_percentile')
    assert {k: other[k] for k in exact} == {k: row[k] for k in exact}
    assert other['vog_score'] == pytest.approx(row['vog_score'], rel=1e-4, abs=1e-6)
    assert other['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5)

  for key in ('counts', 'splits', 'quarantine_kinds', 'error_rate_by_decile'):
    assert dask_summary[key] == direct_summary[key], key
  assert len(dask_summary['per_class']) == len(direct_summary['per_class'])
  for row, other in zip(direct_summary['per_class'], dask_summary['per_class']):
    assert {k: other[k] for k in ('split', 'class', 'count', 'flagged')} == \
        {k: row[k] for k in ('split', 'class', 'count', 'flagged')}
    assert other['vog_raw_mean'] == pytest.approx(row['vog_raw_mean'], rel=1e-5)
  # The DaskRunner has no metrics API; the audit reports no Beam counters there.
  assert dask_summary['beam_counters'] == {}
  print(f'dask run: {dask_seconds:.1f}s, tasks per worker {ran}')

  # The next audit compares with this one: the history join by example_id runs on the
  # workers too, and gives what the DirectRunner gives, copies of one record included.
  plan = audit_plan.plan_audit(VogSettings(batch_size=16, inspection_budget=12),
                               os.path.join(root, 'run'), patterns, module_file=module_file,
                               baseline={'uri': str(tmp_path / 'direct' / 'report')})
  again = {'direct': _run(plan, str(tmp_path / 'direct2'), [])}
  try:
    again['dask'] = _run(plan, str(tmp_path / 'dask2'),
                         [f'--runner={DASK_RUNNER}',
                          f'--dask_client_address={dask_cluster.address}',
                          '--dask_npartitions=2'])
  except Exception as e:  # pylint: disable=broad-except
    pytest.fail(f'the audit with a baseline failed on the DaskRunner: {type(e).__name__}: '
                f'{e}\n{dask_cluster.logs()}')
  for name, (summary, _, flagged) in again.items():
    drift = summary['drift']
    # The same checkpoints on the same data: every example matched, the same ones flagged.
    assert drift['unavailable'] is None, name
    matched = {s['split']: s['matched'] for s in drift['splits']}
    assert matched == {'train': N_TRAIN + 2, 'eval': N_EVAL + 1}, name
    assert drift['streaks'] == {'2': len(flagged)}, name
    assert {r['drift_status'] for r in flagged} == {'still_flagged'}, name
  assert again['dask'][0]['drift'] == again['direct'][0]['drift']
  assert again['dask'][0]['streaks'] == again['direct'][0]['streaks']
  histories = {}
  for name in again:
    report = str(tmp_path / f'{name}2' / 'report')
    histories[name] = sorted(
        (row.example_id, row.split, row.flagged, row.streak)
        for path in report_format.history_files(report) for _, row in
        drift_lib.read_history_shard(path))
  assert histories['dask'] == histories['direct']
  assert len(histories['dask']) == total


def test_the_command_line_runs_the_audit_on_a_dask_cluster(dask_cluster, trained, tmp_path):
  # What a user types: `vog-audit score --runner dask --dask-address HOST:PORT`; the
  # partitions default to one per work unit. It scores what the DirectRunner scores.
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  root, records = trained
  examples = str(tmp_path / 'examples')
  fixtures.write_split(examples, 'train', [records[:40], records[40:N_TRAIN]])
  fixtures.write_split(examples, 'eval', [records[N_TRAIN:]])
  common = ['score', '--model-run', os.path.join(root, 'run'), '--examples', examples,
            '--batch-size', '16', '--inspection-budget', '8']
  direct = CliRunner().invoke(cli, common + ['--output', str(tmp_path / 'direct')])
  assert direct.exit_code == 0, direct.output
  before = dask_cluster.executed_counts()
  on_dask = CliRunner().invoke(cli, common + [
      '--output', str(tmp_path / 'dask'), '--runner', 'dask',
      '--dask-address', f'tcp://{dask_cluster.address}'])
  assert on_dask.exit_code == 0, (on_dask.output, dask_cluster.logs())
  after = dask_cluster.executed_counts()
  assert all(after[a] > before.get(a, 0) for a in after), (before, after)
  rows = {name: _scored_rows(str(tmp_path / name / 'difficulty_report'))
          for name in ('direct', 'dask')}
  assert len(rows['dask']) == N_TRAIN + N_EVAL
  for key, copies in rows['direct'].items():
    for row, other in zip(copies, rows['dask'][key]):
      assert other['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-5), key
      assert {k: other[k] for k in ('vog_percentile', 'vog_bucket', 'vog_flagged')} == \
          {k: row[k] for k in ('vog_percentile', 'vog_bucket', 'vog_flagged')}, key
  assert _flagged_rows(str(tmp_path / 'dask' / 'difficulty_report')) == _flagged_rows(
      str(tmp_path / 'direct' / 'difficulty_report'))


@pytest.mark.parametrize('args, message', [
    (['--runner', 'dask'], '--runner dask needs --dask-address HOST:PORT'),
    (['--runner', 'dask', '--dask-address', 'nowhere'],
     "--dask-address 'nowhere' is not HOST:PORT"),
    (['--runner', 'dask', '--dask-address', f'127.0.0.1:{service_processes.free_port()}'],
     'no scheduler answers there'),
    (['--dask-address', '127.0.0.1:8786'], '--dask-address and --dask-partitions go with '
                                            '--runner dask'),
    (['--runner', 'dask', '--beam-arg=--runner=DirectRunner', '--dask-address', 'a:1'],
     '--runner dask and --beam-arg=--runner both name a runner'),
])
def test_the_command_line_refuses_a_dask_run_it_cannot_make(trained, tmp_path, args, message):
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  root, records = trained
  examples = str(tmp_path / 'examples')
  fixtures.write_split(examples, 'train', [records[:20]])
  result = CliRunner().invoke(cli, ['score', '--model-run', os.path.join(root, 'run'),
                                    '--examples', examples, '--output',
                                    str(tmp_path / 'out')] + args)
  assert result.exit_code == 2, result.output
  assert message in result.stderr and 'Traceback' not in result.output
