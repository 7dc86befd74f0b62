"""`vog-audit` on hostile or broken input: every failure is exit code 2 and one line, a
record above max_record_bytes is quarantined unread, and a `score` killed mid-run
publishes nothing and is run again into the same --output."""

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from click.testing import CliRunner
import pytest

from components.vog import audit_plan
from components.vog.dataflow import beam_audit
from components.vog.report import report_format as fmt
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.report import score_table
from pipeline.cli import main as cli
import fixtures
import repo_paths

ROOT = repo_paths.REPO
N = 60
HUGE_AT = 7  # the record index, in part-0, of the one too large to score
PADDING = 300_000  # bytes of zeros that make it too large: they gzip to a few hundred
LIMIT = 100_000
KILL_FILES = 300  # input files of the run that is killed while it writes them


def _score(*args):
  return CliRunner().invoke(cli, ['score', *[str(a) for a in args]])


@pytest.fixture(scope='module')
def audited(tmp_path_factory):
  """Checkpoints, inputs with one record of 300 KB, and the report of their audit with
  the default max_record_bytes (64 MiB), which scores it."""
  root = tmp_path_factory.mktemp('hostile')
  images, labels, _ = fixtures.digits(N, seed=4)
  fixtures.train_checkpoints(str(root / 'run'), images, labels, epochs=2)
  records = [fixtures.example(im, lab, f'ok-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  huge = fixtures.example(images[0], labels[0], 'huge')
  huge.features.feature['padding'].bytes_list.value.append(b'\0' * PADDING)
  records.insert(HUGE_AT, huge.SerializeToString())
  fixtures.write_records(str(root / 'data' / 'part-0.gz'), records[:N // 2])
  fixtures.write_records(str(root / 'data' / 'part-1.gz'), records[N // 2:])
  for k in range(KILL_FILES):
    fixtures.write_records(str(root / 'many' / f'part-{k:03d}.gz'), [records[k % N]])
  result = _score('--model-run', root / 'run', '--examples', root / 'data' / '*.gz',
                  '--output', root / 'out', '--inspection-budget', 5)
  assert result.exit_code == 0, result.output
  assert 'scored 61, quarantined 0' in result.output
  return {'root': root, 'huge_size': len(records[HUGE_AT]),
          'report': root / 'out' / 'difficulty_report'}


def test_a_record_above_max_record_bytes_is_quarantined_unread(audited, tmp_path):
  root = audited['root']
  assert os.path.getsize(root / 'data' / 'part-0.gz') < 10_000  # a small file on disk
  result = _score('--model-run', root / 'run', '--examples', root / 'data' / '*.gz',
                  '--output', tmp_path, '--max-record-bytes', LIMIT, '--inspection-budget', 5)
  assert result.exit_code == 0, result.output
  assert 'scored 60, quarantined 1, flagged 5 of 61 examples' in result.output
  report = tmp_path / 'difficulty_report'
  summary = json.loads((report / vocab.SUMMARY_FILE).read_text())
  assert summary['counts'] == {'seen': N + 1, 'scored': N, 'quarantined': 1, 'flagged': 5}
  assert summary['quarantine_kinds'] == {'data': {'record too large': 1}}
  assert summary['settings']['max_record_bytes'] == LIMIT
  rows = list(fmt.load_report(str(report)).quarantine_rows())
  path = str(root / 'data' / 'part-0.gz')
  assert rows == [report_rows.QuarantineRow(
      'data', f'{path}#{HUGE_AT}', 'record too large',
      f'record too large: record {HUGE_AT} of {path}: the record is '
      f'{audited["huge_size"]:,} bytes, above the limit of {LIMIT:,} (max_record_bytes); '
      'it was checked but not read into memory', b'')]
  assert 'huge' not in score_table.read_table(str(report)).to_pydict()['example_id']


@contextlib.contextmanager
def _read_only(path):
  """`path` and all it holds made unwritable for this user: `chattr +i` for root, whom
  permissions do not stop, `chmod a-w` otherwise; skips where neither works."""
  paths = [path] + glob.glob(os.path.join(path, '**'), recursive=True)
  root = os.geteuid() == 0
  if root:
    if not shutil.which('chattr') or subprocess.run(
        ['chattr', '-R', '+i', path], capture_output=True, check=False).returncode:
      pytest.skip('chattr cannot make a folder read-only for root here')
  else:
    modes = {p: os.stat(p).st_mode for p in paths}
    for p in paths:
      os.chmod(p, modes[p] & ~0o222)
  try:
    probe = os.path.join(path, 'probe')
    try:
      open(probe, 'w').close()
      os.remove(probe)
      pytest.skip(f'{path} stays writable here')
    except OSError:
      pass
    yield
  finally:
    if root:
      subprocess.run(['chattr', '-R', '-i', path], check=True)
    else:
      for p in paths:
        os.chmod(p, modes[p])


def _output_read_only(audited, tmp_path):
  out = tmp_path / 'read-only'
  out.mkdir()
  return out, ['score', '--model-run', audited['root'] / 'run', '--examples',
               audited['root'] / 'data' / '*.gz', '--output', out]


def _bogus_runner(audited, tmp_path):
  return None, ['score', '--model-run', audited['root'] / 'run', '--examples',
                audited['root'] / 'data' / '*.gz', '--output', tmp_path / 'out',
                '--beam-arg=--runner=Bogus']


def _report_read_only(audited, tmp_path):
  report = shutil.copytree(audited['report'], tmp_path / 'report')
  return report, ['report', report]


def _summary_a_folder(audited, tmp_path):
  report = shutil.copytree(audited['report'], tmp_path / 'report')
  os.remove(report / vocab.SUMMARY_FILE)
  os.mkdir(report / vocab.SUMMARY_FILE)
  return None, ['report', report]


@pytest.mark.parametrize('case, message', [
    (_output_read_only, 'error: --output {tmp}/read-only cannot be written ('),
    (_bogus_runner, 'error: --beam-arg=--runner=Bogus: Unexpected pipeline runner: Bogus.'),
    (_report_read_only, 'error: the review page cannot be written into {tmp}/report ('),
    (_summary_a_folder, 'error: {tmp}/report/summary.json is a folder, not a file - give the '
                        'difficulty_report folder of an audit'),
], ids=['score into a read-only folder', 'unknown Beam runner',
        'report in a read-only folder', 'summary.json a folder'])
def test_each_failure_is_exit_code_2_and_one_line(audited, tmp_path, case, message):
  read_only, args = case(audited, tmp_path)
  with _read_only(str(read_only)) if read_only else contextlib.nullcontext():
    result = CliRunner().invoke(cli, [str(a) for a in args])
  assert result.exit_code == 2, result.output
  assert len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
  assert 'Traceback' not in result.output
  assert not os.path.exists(tmp_path / 'out')  # nothing was left behind


def _scored_files(folder):
  """The scored example files under `folder`, hidden folders included, by final name."""
  return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
          if f.startswith('data_tfrecord-') and '.tmp-' not in f]


def test_a_killed_score_publishes_nothing_and_a_rerun_completes(audited, tmp_path):
  root, out = audited['root'], tmp_path / 'out'
  args = ['score', '--model-run', str(root / 'run'), '--examples',
          str(root / 'many' / '*.gz'), '--output', str(out), '--copy-splits', 'all',
          '--inspection-budget', '5']
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1')
  process = subprocess.Popen(
      [sys.executable, '-c', 'from pipeline.cli import main; main()', *args], cwd=ROOT,
      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 300
    while not _scored_files(out) and process.poll() is None and time.monotonic() < deadline:
      time.sleep(0.01)
    assert process.poll() is None, 'the run ended before any scored file was written'
    assert _scored_files(out), 'no scored file was written in 300s'
  finally:
    process.send_signal(signal.SIGKILL)
    process.wait()
  assert process.returncode == -signal.SIGKILL
  # Killed while writing its scored files: nothing is under the names results have.
  assert not os.path.exists(out / 'scored_examples')
  assert not os.path.exists(out / 'difficulty_report')

  result = CliRunner().invoke(cli, args)
  assert result.exit_code == 0, result.output
  assert f'removing what an earlier run that did not finish left in {out}/.incomplete' in (
      result.output)
  # Every work unit's file (the input files grouped by size), each once.
  units = beam_audit.work_units(audit_plan.input_files('data', str(root / 'many' / '*.gz')))
  assert 1 < len(units) < KILL_FILES
  assert len(_scored_files(out / 'scored_examples')) == len(units)
  summary = json.loads((out / 'difficulty_report' / vocab.SUMMARY_FILE).read_text())
  assert summary['counts']['seen'] == summary['counts']['scored'] == KILL_FILES
  assert sorted(os.listdir(out)) == ['difficulty_report', 'scored_examples']
