"""`vog-audit score` and `report` with every input and output on a URI (TensorFlow's
ram:// file system, in this process), and the folder helpers of components.vog.inputs.storage
on local paths and on ram://."""

import os
import threading
import time
import uuid

from click.testing import CliRunner
import pytest
import tensorflow as tf

from components.vog.report import report_format as fmt

from components.vog import vocabulary as vocab
from components.vog.inputs import storage
from pipeline.cli import main as cli
import fixtures

N_TRAIN, N_EVAL = 60, 30
SCORE_ARGS = ['--batch-size', '32', '--inspection-budget', '5',
              '--beam-arg=--direct_num_workers=1',
              '--beam-arg=--direct_running_mode=in_memory']
# custom_objects with an entry the checkpoints do not need: the module is loaded from
# the --module-file URI and its objects handed to the model loader.
MODULE = 'def custom_objects():\n  return {"vog_test_identity": lambda x: x}\n'


def _ram_root() -> str:
  return f'ram://vog-{uuid.uuid4().hex}'


def _write(path: str, text: str) -> None:
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)


def _read(path: str) -> str:
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def _copy_tree(local: str, uri: str) -> None:
  """Copies local folder `local` to `uri`, every folder made on the way."""
  for folder, _, names in os.walk(local):
    target = os.path.join(uri, os.path.relpath(folder, local)).rstrip('/.')
    tf.io.gfile.makedirs(target)
    for name in names:
      tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, name))


def _score(model_run, examples, output, module_file):
  return CliRunner().invoke(cli, ['score', '--model-run', model_run, '--examples', examples,
                                  '--output', output, '--module-file', module_file]
                            + SCORE_ARGS)


@pytest.fixture(scope='module')
def audits(tmp_path_factory):
  """The same audit run twice: once on local folders, once with the checkpoints, the
  examples, the module file and --output all on ram://."""
  local = str(tmp_path_factory.mktemp('remote_storage'))
  images, labels, _ = fixtures.digits(N_TRAIN + N_EVAL, seed=6)
  fixtures.train_checkpoints(os.path.join(local, 'run'), images[:N_TRAIN],
                             labels[:N_TRAIN], epochs=3)
  records = [fixtures.example(im, lab, f'ex-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  examples = os.path.join(local, 'examples')
  fixtures.write_split(examples, 'train', [records[:N_TRAIN]])
  fixtures.write_split(examples, 'eval', [records[N_TRAIN:]])
  _write(os.path.join(local, 'module.py'), MODULE)
  ram = _ram_root()
  for name in ('run', 'examples'):
    _copy_tree(os.path.join(local, name), f'{ram}/{name}')
  _write(f'{ram}/module.py', MODULE)
  local_result = _score(os.path.join(local, 'run'), examples, os.path.join(local, 'out'),
                        os.path.join(local, 'module.py'))
  assert local_result.exit_code == 0, local_result.output
  ram_result = _score(f'{ram}/run', f'{ram}/examples', f'{ram}/out', f'{ram}/module.py')
  yield {'local': os.path.join(local, 'out'), 'ram': f'{ram}/out', 'result': ram_result,
         'args': (f'{ram}/run', f'{ram}/examples', f'{ram}/out', f'{ram}/module.py')}
  storage.remove_tree(ram)


def test_score_on_ram_gives_the_results_of_local_folders(audits):
  result, out = audits['result'], audits['ram']
  assert result.exit_code == 0, result.output
  assert f'report: {out}/difficulty_report/report.html' in result.output
  assert not os.path.exists('ram:')  # nothing written to a local folder named 'ram:'
  assert sorted(storage.list_dir(out)) == ['difficulty_report', 'scored_examples']
  summary = fmt.load_report(f'{out}/difficulty_report').summary
  local = fmt.load_report(os.path.join(audits['local'], 'difficulty_report')).summary
  assert summary.counts == local.counts
  assert summary.counts['seen'] == N_TRAIN + N_EVAL
  rows = fixtures.score_rows(f'{out}/difficulty_report')
  local_rows = fixtures.score_rows(os.path.join(audits['local'], 'difficulty_report'))
  assert set(rows) == set(local_rows)
  for key, row in local_rows.items():
    assert rows[key]['vog_raw'] == pytest.approx(row['vog_raw'], rel=1e-6)
    assert rows[key]['vog_flagged'] == row['vog_flagged']
  assert storage.list_dir(f'{out}/scored_examples') == ['Split-eval']
  assert tf.io.gfile.glob(f'{out}/scored_examples/Split-eval/*')
  assert _read(f'{out}/difficulty_report/report.html').startswith('<!DOCTYPE html>')


def test_a_second_score_into_the_same_ram_output_is_refused(audits):
  assert audits['result'].exit_code == 0, audits['result'].output
  out = audits['ram']
  summary = _read(f'{out}/difficulty_report/{vocab.SUMMARY_FILE}')
  result = _score(*audits['args'])
  assert result.exit_code == 2, result.output
  assert result.stderr.strip() == (
      f'error: {out}/scored_examples is not empty; choose a new --output so earlier '
      'results are kept')
  assert _read(f'{out}/difficulty_report/{vocab.SUMMARY_FILE}') == summary
  assert sorted(storage.list_dir(out)) == ['difficulty_report', 'scored_examples']


def test_report_rebuilds_the_page_in_a_ram_folder(audits):
  assert audits['result'].exit_code == 0, audits['result'].output
  report_dir = f'{audits["ram"]}/difficulty_report'
  tf.io.gfile.remove(f'{report_dir}/{vocab.REPORT_FILE}')
  result = CliRunner().invoke(cli, ['report', report_dir])
  assert result.exit_code == 0, result.output
  assert f'report: {report_dir}/{vocab.REPORT_FILE}' in result.output
  assert _read(f'{report_dir}/{vocab.REPORT_FILE}').startswith('<!DOCTYPE html>')
  assert not os.path.exists('ram:')


def test_report_refuses_a_ram_path_that_is_no_folder():
  result = CliRunner().invoke(cli, ['report', f'{_ram_root()}/difficulty_report'])
  assert result.exit_code == 2
  assert 'is not a folder; give the difficulty_report folder of an audit' in result.stderr


# Nested folders, a dot-file, an empty folder, and a sibling whose name begins with the
# moved folder's (ram:// lists folders by bare name prefix).
TREE = {'x.txt': 'x', '.hidden': 'h', 'b/y.txt': 'y', 'b/c/z': 'z', 'b_sibling/w': 'w'}


@pytest.fixture(params=['local', 'ram'])
def root(request, tmp_path):
  return str(tmp_path) if request.param == 'local' else _ram_root()


def _make_tree(folder):
  for name, text in TREE.items():
    _write(f'{folder}/{name}', text)
  tf.io.gfile.makedirs(f'{folder}/empty')


def test_move_tree_keeps_every_file(root):
  _make_tree(f'{root}/src/a')
  _write(f'{root}/src/a_sibling', 'not moved')
  tf.io.gfile.makedirs(f'{root}/dst')  # an empty destination folder gives way
  storage.move_tree(f'{root}/src/a', f'{root}/dst', last=('x.txt',))
  for name, text in TREE.items():
    assert _read(f'{root}/dst/{name}') == text, name
    assert not tf.io.gfile.exists(f'{root}/src/a/{name}'), name
  assert storage.is_empty_dir(f'{root}/dst/empty')
  assert storage.list_dir(f'{root}/src') == ['a_sibling']
  assert _read(f'{root}/src/a_sibling') == 'not moved'
  _write(f'{root}/src/b/f', 'f')
  with pytest.raises(OSError):  # a destination that holds files is refused
    storage.move_tree(f'{root}/src/b', f'{root}/dst')
  assert _read(f'{root}/src/b/f') == 'f'


def test_remove_tree_removes_all_and_a_missing_path_quietly(root):
  _make_tree(f'{root}/t')
  storage.remove_tree(f'{root}/t')
  assert not tf.io.gfile.glob(f'{root}/t/*')
  assert not storage.exists(f'{root}/t') or storage.is_empty_dir(f'{root}/t')
  storage.remove_tree(f'{root}/t')
  storage.remove_tree(f'{root}/never-made/t')


def test_is_local():
  assert storage.is_local('/tmp/x') and storage.is_local('out') and storage.is_local(
      'file:///tmp/x')
  assert not storage.is_local('gs://bucket/x') and not storage.is_local('ram://x')


def test_each_keeps_order_and_spreads_remote_calls_over_threads():
  def slow(i):
    time.sleep(0.05)
    return i, threading.get_ident()

  local = storage.each('/tmp', slow, list(range(8)))
  remote = storage.each('ram://x', slow, list(range(8)))
  assert [i for i, _ in local] == [i for i, _ in remote] == list(range(8))
  assert len({t for _, t in local}) == 1
  assert len({t for _, t in remote}) > 1

  def fails(i):
    if i == 3:
      raise tf.errors.NotFoundError(None, None, f'item {i} is gone')
    return i

  with pytest.raises(tf.errors.NotFoundError, match='item 3 is gone'):
    storage.each('ram://x', fails, list(range(8)))
