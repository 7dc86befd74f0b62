"""Audit progress: workers' counts add up across processes, and the terminal bar shows them."""

import io
import multiprocessing
import os
import pickle
import pty
import re
import threading
import time

import pytest

from components.vog.dataflow import progress
from components.vog.dataflow.progress import FILES, READ, SCORED
from pipeline.cli import score as score_cli

WORKERS = 4
ADDS = 300


def _worker(sink, seed):
  """Adds from two threads at once, as a Beam worker's DoFns do, then flushes."""
  def add(kind, step):
    for i in range(ADDS):
      sink.add(kind, (seed + i) % step + 1)
  threads = [threading.Thread(target=add, args=(SCORED, 7)),
             threading.Thread(target=add, args=(READ, 3))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  sink.add(FILES, 1)
  sink.flush()


def _expected(seed):
  return {SCORED: sum((seed + i) % 7 + 1 for i in range(ADDS)),
          READ: sum((seed + i) % 3 + 1 for i in range(ADDS)), FILES: 1}


@pytest.mark.parametrize('method', ['spawn', 'fork'])
def test_counts_from_many_processes_add_up(tmp_path, method):
  sink = progress.ProgressSink(str(tmp_path / 'progress'))
  sink.add(SCORED, 5)  # The driver's own counts must not be copied into forked children.
  sink.flush()
  context = multiprocessing.get_context(method)
  processes = [context.Process(target=_worker, args=(sink, seed)) for seed in range(WORKERS)]
  for p in processes:
    p.start()
  for p in processes:
    p.join(timeout=120)
    assert p.exitcode == 0
  expected = {kind: sum(_expected(s)[kind] for s in range(WORKERS)) for kind in
              (SCORED, READ, FILES)}
  expected[SCORED] += 5
  assert sink.totals() == expected
  # One small file per process: the driver's and each worker's.
  names = os.listdir(tmp_path / 'progress')
  assert len(names) == WORKERS + 1 and all(n.endswith('.json') for n in names), names
  bar = progress.ProgressBar(str(tmp_path / 'progress'), num_files=WORKERS,
                             estimated_total=10, width=200)
  assert f'{expected[SCORED]}/{expected[READ]} examples' in bar.render()


def test_sink_pickles_to_its_folder_alone(tmp_path):
  sink = progress.ProgressSink(str(tmp_path), min_interval_s=3600)
  sink.add(SCORED, 2)
  copy = pickle.loads(pickle.dumps(sink))
  assert (copy.directory, copy.min_interval_s) == (sink.directory, 3600)
  copy.add(SCORED, 3)  # Same process: both copies count into one file.
  assert sink.totals() == {SCORED: 2}  # The first add wrote; the next waits for flush.
  copy.flush()
  assert sink.totals() == {SCORED: 5}


def test_writes_are_throttled(tmp_path, monkeypatch):
  sink = progress.ProgressSink(str(tmp_path), min_interval_s=60)
  writes = []
  real_replace = os.replace
  monkeypatch.setattr(progress.os, 'replace',
                      lambda a, b: (writes.append(b), real_replace(a, b)))
  for _ in range(1000):
    sink.add(SCORED, 1)
  assert len(writes) == 1 and sink.totals() == {SCORED: 1}
  sink.flush()
  sink.flush()  # Nothing new: no write.
  assert len(writes) == 2 and sink.totals() == {SCORED: 1000}


def test_a_folder_that_cannot_be_written_does_not_raise(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  sink = progress.ProgressSink(str(blocker / 'progress'))
  for _ in range(10):
    sink.add(SCORED, 1)
  sink.flush()
  assert sink.totals() == {}


def test_unreadable_progress_files_are_skipped(tmp_path):
  (tmp_path / 'progress-host-1.json').write_text('{"counts": {"scored": 4}}')
  (tmp_path / 'progress-host-2.json').write_text('{"counts": ')
  (tmp_path / 'progress-host-3.json.tmp').write_text('{"counts": {"scored": 100}}')
  assert progress.read_totals(str(tmp_path)) == {SCORED: 4}
  assert progress.read_totals(str(tmp_path / 'missing')) == {}


class _Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


def _write(folder, name, **counts):
  with open(os.path.join(folder, f'progress-test-{name}.json'), 'w') as f:
    f.write('{"counts": %s}' % str(counts).replace("'", '"'))


def test_bar_estimates_until_every_file_is_read(tmp_path):
  clock = _Clock()
  bar = progress.ProgressBar(str(tmp_path), num_files=3, estimated_total=1000, width=200,
                             clock=clock)
  assert '0/~1000 examples  -/s' in bar.render()
  _write(tmp_path, 'a', read=400, files=1, scored=100)
  clock.now += 2
  line = bar.render()
  assert '100/~1000 examples  50/s  0:18 left  files 1/3' in line
  assert '[##----------------------]' in line
  _write(tmp_path, 'a', read=1200, files=2, scored=1100)  # The estimate was low.
  clock.now += 2
  assert '1100/~1200 examples' in bar.render()
  _write(tmp_path, 'a', read=900, files=2, scored=400)
  _write(tmp_path, 'b', read=300, files=1, scored=800)
  clock.now += 2
  line = bar.render()
  assert '1200/1200 examples' in line and 'files 3/3' in line
  assert '[########################]' in line


def test_bar_fits_the_terminal_width(tmp_path):
  _write(tmp_path, 'a', read=10, files=1, scored=5)
  line = progress.ProgressBar(str(tmp_path), num_files=1, width=30).render()
  assert len(line) == 29 and line.startswith('scoring [')


def test_estimate_from_file_sizes(tmp_path):
  # Imported here: worker processes import this module, and fixtures brings TensorFlow.
  import fixtures  # pylint: disable=g-import-not-at-top
  images, labels, _ = fixtures.digits(600, seed=3)
  records = [fixtures.example(im, lab, f'e-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  gz = [str(tmp_path / 'gz' / f'part-{i}.gz') for i in range(3)]
  for i, path in enumerate(gz):
    fixtures.write_records(path, records[i * 200:(i + 1) * 200])
  # The first file is read whole (200 < 1000 records): its bytes per record hold.
  assert progress.estimate_records(gz) == pytest.approx(600, rel=0.05)
  # Past the sample, gzip's ratio is measured by compressing the sampled records.
  assert progress.estimate_records(gz, sample_records=50) == pytest.approx(600, rel=0.35)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  plain = str(tmp_path / 'plain.tfrecord')
  with tf.io.TFRecordWriter(plain) as writer:
    for r in records:
      writer.write(r)
  assert progress.estimate_records([plain], sample_records=50) == pytest.approx(
      600, rel=0.05)
  assert progress.estimate_records([plain], 'UNCOMPRESSED') == 600
  assert progress.estimate_records([]) is None
  assert progress.estimate_records([str(tmp_path / 'missing.gz')]) is None


class _TerminalText(io.StringIO):
  def isatty(self):
    return True


def _worker_main(sink, files, per_file):
  for _ in range(files):
    sink.add(READ, per_file)
    sink.add(FILES, 1)
    for _ in range(per_file // 10):
      sink.add(SCORED, 10)
      time.sleep(0.02)
  sink.flush()


def _fake_audit(sink, files=2, per_file=60):
  """Stands in for the audit: a separate worker process counting as the Beam code does."""
  process = multiprocessing.get_context('spawn').Process(target=_worker_main,
                                                         args=(sink, files, per_file))
  process.start()
  process.join(timeout=120)
  assert process.exitcode == 0
  return {'counts': {'scored': files * per_file}}


def test_cli_bar_on_a_terminal_shows_counts_and_rate():
  stream = _TerminalText()
  assert score_cli._shows_bar(stream, [])  # pylint: disable=protected-access
  assert not score_cli._shows_bar(stream, ['--runner=DataflowRunner'])  # pylint: disable=protected-access
  assert not score_cli._shows_bar(io.StringIO(), [])  # pylint: disable=protected-access
  result = score_cli.run_with_progress_bar(_fake_audit, num_files=2, estimated_total=100,
                                           stream=stream, interval_s=0.05)
  assert result == {'counts': {'scored': 120}}
  text = stream.getvalue()
  lines = text.split('\r')
  assert text.endswith('\n') and len(lines) > 2
  assert '0/~100 examples' in lines[1]
  final = lines[-1]
  assert '120/120 examples' in final and 'files 2/2' in final
  rate = re.search(r'examples  (\d+(\.\d)?)/s', final)
  assert rate and float(rate.group(1)) > 0, final


def test_cli_bar_on_a_pseudo_terminal_and_when_the_audit_raises():
  main, secondary = pty.openpty()
  try:
    stream = os.fdopen(secondary, 'w', buffering=1)
    assert score_cli._shows_bar(stream, ['--runner', 'DirectRunner'])  # pylint: disable=protected-access

    def failing_audit(sink):
      sink.add(READ, 7)
      sink.add(FILES, 1)
      sink.add(SCORED, 7)
      sink.flush()
      time.sleep(0.2)
      raise RuntimeError('worker lost')

    with pytest.raises(RuntimeError, match='worker lost'):
      score_cli.run_with_progress_bar(failing_audit, num_files=1, estimated_total=None,
                                      stream=stream, interval_s=0.05)
    stream.flush()
    shown = os.read(main, 65536).decode()
  finally:
    os.close(main)
    stream.close()
  assert '\r' in shown and shown.rstrip().endswith('files 1/1')
  assert '7/7 examples' in shown and '/s' in shown
