"""The demo pipeline killed with SIGKILL while VarianceOfGradients writes, then run again.

The first run goes in a process group of its own; the moment the first file of a
VarianceOfGradients output appears under the pipeline root, the whole group gets SIGKILL.
The same demo then runs again into the same folder. Checked through ML Metadata and the
published artifacts only: the second run completes; the killed execution never completed
and published nothing; every step after VarianceOfGradients read the new outputs, not the
half-written ones; and the counts match the data once, not twice.
"""

import glob
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from components.vog.report import score_table
import repo_paths

REPO = repo_paths.REPO
PIPELINE_NAME = 'vog-audit-demo'
VOG = 'VarianceOfGradients'
NUM_EXAMPLES = 300
BUDGET = 20
RUN_TIMEOUT_S = 900

# The demo at test size, thresholds opened so that the run goes through to the Pusher.
# Ranked by class-normalised VoG, which flags every class alike: a 2-epoch model has not
# learned some class yet, and ranked by confidence more than half of that class would be
# flagged, which the default review policy rightly refuses to ship.
_RUN = textwrap.dedent(f'''
    import sys
    from pipeline import demo
    demo.run_demo(sys.argv[1], num_examples={NUM_EXAMPLES}, epochs=2, max_checkpoints=2,
                  vog_num_checkpoints=2, inspection_budget={BUDGET}, min_accuracy=0.0,
                  min_hard_accuracy=0.0, max_accuracy_drop=1.0, vog_rank_by='vog',
                  beam_pipeline_args=('--direct_running_mode=in_memory',))
''')


def _start(output_dir):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith('VOG_AUDIT_') and k != 'MYSQL_PWD'}
  env.update(TF_USE_LEGACY_KERAS='1', PYTHONHASHSEED='0', PYTHONPATH=REPO)
  return subprocess.Popen([sys.executable, '-c', _RUN, output_dir], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)


def _vog_output_files(output_dir):
  """Regular files under VarianceOfGradients' output artifacts (not TFX's .system)."""
  root = os.path.join(output_dir, 'pipeline', VOG)
  found = []
  for parent, folders, names in os.walk(root):
    folders[:] = [f for f in folders if f != '.system']
    found.extend(os.path.join(parent, n) for n in names)
  return found


def _log(output_dir):
  path = os.path.join(output_dir, 'demo.log')
  if not os.path.exists(path):
    return ''
  with open(path, errors='replace') as f:
    return f.read()


def _store(output_dir):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
      os.path.join(output_dir, 'metadata.sqlite')))


def _executions(store, node):
  context = store.get_context_by_type_and_name('node', f'{PIPELINE_NAME}.{node}')
  return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _event_types(direction):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  event = metadata_store_pb2.Event
  return {'in': (event.INPUT, event.DECLARED_INPUT),
          'out': (event.OUTPUT, event.DECLARED_OUTPUT)}[direction]


def _artifacts(store, execution, direction):
  """{key: artifact} of `execution`'s input ('in') or output ('out') events."""
  kinds = _event_types(direction)
  events = [e for e in store.get_events_by_execution_ids([execution.id]) if e.type in kinds]
  by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  return {e.path.steps[0].key: by_id[e.artifact_id] for e in events if e.path.steps}


def _records(pattern):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(pattern))
  assert files, pattern
  return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))


@pytest.fixture(scope='module')
def killed_then_rerun(tmp_path_factory):
  """(output folder, files seen at the kill, the second run's output)."""
  output_dir = str(tmp_path_factory.mktemp('killed') / 'demo_output')
  first = _start(output_dir)
  deadline = time.monotonic() + RUN_TIMEOUT_S
  seen = []
  try:
    while not seen and first.poll() is None and time.monotonic() < deadline:
      seen = _vog_output_files(output_dir)
      time.sleep(0.01)
  finally:
    if first.poll() is None:
      os.killpg(first.pid, signal.SIGKILL)
    output = first.communicate(timeout=60)[0].decode(errors='replace')
  assert seen, f'no VarianceOfGradients output appeared; the first run said:\n{output[-5000:]}'
  assert first.returncode == -signal.SIGKILL, output[-5000:]
  log = _log(output_dir)
  assert f'Component {VOG} is running.' in log
  assert f'Component {VOG} is finished.' not in log, 'the kill came after the step ended'

  second = _start(output_dir)
  output = second.communicate(timeout=RUN_TIMEOUT_S)[0].decode(errors='replace')
  assert second.returncode == 0, output[-6000:]
  return output_dir, seen, output


def test_the_killed_execution_never_completed_and_published_nothing(killed_then_rerun):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  output_dir, _, _ = killed_then_rerun
  store = _store(output_dir)
  killed, done = _executions(store, VOG)
  assert killed.last_known_state != metadata_store_pb2.Execution.COMPLETE
  assert done.last_known_state == metadata_store_pb2.Execution.COMPLETE
  assert not [a for a in _artifacts(store, killed, 'out').values()
              if a.state == metadata_store_pb2.Artifact.LIVE]
  # One live DifficultyReport and one live set of scored examples: the completed ones.
  published = _artifacts(store, done, 'out')
  live_reports = [a for a in store.get_artifacts_by_type('components.DifficultyReport')
                  if a.state == metadata_store_pb2.Artifact.LIVE]
  assert [a.id for a in live_reports] == [published['difficulty_report'].id]


def test_later_steps_read_the_new_outputs_not_the_half_written_ones(killed_then_rerun):
  output_dir, seen, _ = killed_then_rerun
  store = _store(output_dir)
  _, done = _executions(store, VOG)
  published = _artifacts(store, done, 'out')
  half_written = {os.path.dirname(p) for p in seen}
  for artifact in published.values():
    assert not any(h == artifact.uri or h.startswith(artifact.uri + os.sep)
                   for h in half_written), (artifact.uri, half_written)
  [evaluator] = _executions(store, 'Evaluator')
  [gate] = _executions(store, 'HumanReviewGate')
  assert _artifacts(store, evaluator, 'in')['examples'].id == published['scored_examples'].id
  assert (_artifacts(store, gate, 'in')['difficulty_report'].id ==
          published['difficulty_report'].id)
  assert 'blessing: BLESSED -> pushed to' in killed_then_rerun[2]


def test_counts_match_the_data_once(killed_then_rerun):
  output_dir, _, output = killed_then_rerun
  store = _store(output_dir)
  _, done = _executions(store, VOG)
  published = _artifacts(store, done, 'out')
  per_split = {os.path.basename(d): _records(os.path.join(d, '*.gz'))
               for d in glob.glob(os.path.join(output_dir, 'data', '*')) if os.path.isdir(d)}
  assert sum(per_split.values()) == NUM_EXAMPLES
  scored = published['scored_examples'].uri
  table = score_table.read_table(published['difficulty_report'].uri).to_pydict()
  for split, count in per_split.items():
    assert table['split'].count(split) == count, split
  # Only the eval split is copied in full, once.
  assert _records(os.path.join(scored, 'Split-eval', '*')) == per_split['eval']
  assert not os.path.exists(os.path.join(scored, 'Split-train'))
  report = {k: getattr(v, v.WhichOneof('value'))
            for k, v in published['difficulty_report'].custom_properties.items()}
  assert (report['seen'], report['scored'], report['flagged']) == (
      NUM_EXAMPLES, NUM_EXAMPLES, BUDGET)
  printed = dict(re.findall(r'^  (\w+) +(\d+) scored, 0 quarantined, \d+ flagged \(of \d+ seen\)',
                            output, re.M))
  assert {k: int(v) for k, v in printed.items()} == per_split
