"""VogCheckpointCallback, the manifest loader and stage selection."""

import json
import os
import re
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from components import VogCheckpointCallback
from components.vog.inputs import checkpoints
from components.vog.compute.stages import checkpoints_for_stage
import repo_paths


def _tiny_model(width=2, name='x'):
  inp = tf.keras.Input((width,), name=name)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(3, activation='softmax')(inp))
  model.compile(optimizer='sgd', loss='sparse_categorical_crossentropy',
                metrics=['accuracy'])
  return model


def _fit(model_run_dir, epochs, max_checkpoints, model=None):
  model = model or _tiny_model()
  x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
  y = np.arange(40) % 3
  model.fit(x, y, epochs=epochs, batch_size=10, verbose=0,
            callbacks=[VogCheckpointCallback(model_run_dir, max_checkpoints)])
  return model


def test_epochs_to_save_spreads_evenly_and_keeps_the_last():
  assert checkpoints.epochs_to_save(4, 10) == [1, 2, 3, 4]
  assert checkpoints.epochs_to_save(100, 10) == list(range(10, 101, 10))
  saved = checkpoints.epochs_to_save(15, 10)
  assert len(saved) == 10 and saved[-1] == 15 and saved == sorted(saved)
  with pytest.raises(ValueError, match='at least 2'):
    checkpoints.epochs_to_save(5, 1)


def test_callback_writes_full_models_and_manifest(tmp_path):
  _fit(str(tmp_path), epochs=5, max_checkpoints=3)
  folder = tmp_path / 'vog_checkpoints'
  manifest = json.loads((folder / 'manifest.json').read_text())
  assert manifest['format_version'] == 1
  entries = manifest['checkpoints']
  assert [e['epoch'] for e in entries] == [2, 4, 5]
  assert [e['step'] for e in entries] == [8, 16, 20]  # 4 batches an epoch
  assert all(not os.path.isabs(e['path']) for e in entries)
  assert set(entries[0]['metrics']) == {'loss', 'accuracy'}
  loaded = checkpoints.load_manifest(str(tmp_path))
  models = checkpoints.load_checkpoint_models(loaded)
  # Full models: each loads and predicts without the model-building code.
  preds = [m.predict(np.ones((1, 2), np.float32), verbose=0) for m in models]
  assert not np.allclose(preds[0], preds[-1])


def _write_manifest(folder, entries):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / 'manifest.json').write_text(json.dumps(
      {'format_version': 1, 'checkpoints': entries}))


def test_manifest_missing(tmp_path):
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'no checkpoint manifest at .*vog_checkpoints/manifest.json'
                     r' - add VogCheckpointCallback'):
    checkpoints.load_manifest(str(tmp_path))


def test_manifest_empty(tmp_path):
  _write_manifest(tmp_path / 'vog_checkpoints', [])
  with pytest.raises(checkpoints.CheckpointError, match='lists no checkpoints'):
    checkpoints.load_manifest(str(tmp_path))


def test_manifest_with_one_checkpoint(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  folder = tmp_path / 'vog_checkpoints'
  manifest = json.loads((folder / 'manifest.json').read_text())
  _write_manifest(folder, manifest['checkpoints'][:1])
  with pytest.raises(checkpoints.CheckpointError,
                     match='lists 1 usable checkpoint at .* needs at least 2'):
    checkpoints.load_manifest(str(tmp_path))


def test_manifest_names_a_file_that_is_not_there(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  os.remove(tmp_path / 'vog_checkpoints' / 'epoch-0001.keras')
  with pytest.raises(checkpoints.CheckpointError,
                     match='names .*epoch-0001.keras, which is not there'):
    checkpoints.load_manifest(str(tmp_path))


def test_checkpoint_that_does_not_load(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  (tmp_path / 'vog_checkpoints' / 'epoch-0002.keras').write_bytes(b'not a model')
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError,
                     match='epoch-0002.keras does not load as a Keras model'):
    checkpoints.load_checkpoint_models(entries)


def test_checkpoints_with_different_inputs(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  other = _tiny_model(width=5, name='x')
  other.save(str(tmp_path / 'vog_checkpoints' / 'epoch-0002.keras'))
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError, match='input signature'):
    checkpoints.load_checkpoint_models(entries)


@pytest.mark.parametrize('count,stage,expected', [
    (2, 'complete', [0, 1]),
    (3, 'complete', [0, 1, 2]),
    (7, 'early', [0, 1, 2]),
    (7, 'middle', [3, 4]),
    (7, 'late', [5, 6]),
    (7, 'complete', [0, 1, 2, 3, 4, 5, 6]),
    (20, 'early', [0, 1, 2, 3, 4, 5, 6]),
    (20, 'middle', [7, 8, 9, 10, 11, 12, 13]),
    (20, 'late', [14, 15, 16, 17, 18, 19]),
])
def test_stage_selection(count, stage, expected):
  steps = [100 * (i + 1) for i in range(count)]
  assert checkpoints_for_stage(steps[::-1], stage, 50) == [steps[i] for i in expected]


def test_stage_selection_caps_evenly_keeping_both_ends():
  steps = list(range(10, 210, 10))  # 20 checkpoints
  assert checkpoints_for_stage(steps, 'complete', 4) == [10, 70, 140, 200]
  assert checkpoints_for_stage(steps, 'early', 2) == [10, 70]


@pytest.mark.parametrize('count,stage,held', [(2, 'early', 1), (2, 'late', 0),
                                              (3, 'middle', 1)])
def test_stage_too_small_names_the_fix(count, stage, held):
  with pytest.raises(ValueError, match=f"stage '{stage}' holds {held} of the {count} saved"
                     r".*stage='complete'"):
    checkpoints_for_stage(list(range(count)), stage, 10)


def test_explicit_steps_and_their_errors():
  assert checkpoints_for_stage([5, 10, 15, 20], [20, 5], 10) == [5, 20]
  with pytest.raises(ValueError, match=r'steps \[7\] that were not saved'):
    checkpoints_for_stage([5, 10, 15], [5, 7], 10)
  with pytest.raises(ValueError, match='num_checkpoints=1'):
    checkpoints_for_stage([5, 10, 15], 'complete', 1)
  with pytest.raises(ValueError, match="stage='first' is not supported"):
    checkpoints_for_stage([5, 10, 15], 'first', 3)


# Untrusted manifests and checkpoint files stay inert.

def _manifest_entries(tmp_path):
  return json.loads((tmp_path / 'vog_checkpoints' / 'manifest.json').read_text())['checkpoints']


def _outside_checkpoint(tmp_path):
  """A valid zip .keras model outside the checkpoint folder."""
  outside = tmp_path / 'outside'
  outside.mkdir()
  _tiny_model().save(str(outside / 'model.keras'))
  return outside / 'model.keras'


@pytest.mark.parametrize('name, problem', [
    ('../../outside/model.keras', r'climbs out of the folder with \.\.'),
    ('../outside/model.keras', r'climbs out of the folder with \.\.'),
    ('sub/../../outside/model.keras', r'climbs out of the folder with \.\.'),
    ('ABSOLUTE', 'is absolute'),
    ('', 'has an empty path'),
])
def test_manifest_paths_outside_the_folder_are_refused(tmp_path, name, problem):
  _fit(str(tmp_path / 'run'), epochs=2, max_checkpoints=2)
  outside = _outside_checkpoint(tmp_path / 'run')
  if name == 'ABSOLUTE':
    name = str(outside)
  entries = _manifest_entries(tmp_path / 'run')
  entries[1]['path'] = name
  _write_manifest(tmp_path / 'run' / 'vog_checkpoints', entries)
  with pytest.raises(checkpoints.CheckpointError) as e:
    checkpoints.load_manifest(str(tmp_path / 'run'))
  message = str(e.value)
  assert re.search(f'manifest .*/vog_checkpoints/manifest.json: entry 1 .*{problem}', message)
  if name:
    assert repr(name) in message
  assert message.endswith(
      f'a manifest may only name files inside {tmp_path}/run/vog_checkpoints; re-run the '
      'Trainer with VogCheckpointCallback, which writes plain file names, or copy the '
      'checkpoints into that folder and list them by name')


# A file:// model run is on this machine's disk too: its links are checked as well.
@pytest.mark.parametrize('as_uri', [str, lambda path: f'file://{path}'], ids=['path', 'file-uri'])
def test_a_symlink_out_of_the_folder_is_refused(tmp_path, as_uri):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  outside = _outside_checkpoint(tmp_path)
  link = tmp_path / 'vog_checkpoints' / 'epoch-0002.keras'
  link.unlink()
  link.symlink_to(outside)
  with pytest.raises(checkpoints.CheckpointError,
                     match=f"entry 1 path 'epoch-0002.keras' resolves to {outside}, outside "
                     f'{tmp_path}/vog_checkpoints \\(through a symbolic link\\) - a manifest '
                     'may only name files inside'):
    checkpoints.load_manifest(as_uri(tmp_path))


def test_a_symlink_inside_the_folder_still_loads(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  folder = tmp_path / 'vog_checkpoints'
  (folder / 'latest.keras').symlink_to(folder / 'epoch-0002.keras')
  entries = _manifest_entries(tmp_path)
  entries[1]['path'] = 'latest.keras'
  _write_manifest(folder, entries)
  models = checkpoints.load_checkpoint_models(checkpoints.load_manifest(str(tmp_path)))
  assert len(models) == 2


def _hdf5_with_a_lambda_that_writes(path, marker):
  """An HDF5 model file whose Lambda layer creates `marker` whenever the model is built."""
  inp = tf.keras.Input((2,), name='x')
  touch = lambda t, m=str(marker): (__import__('pathlib').Path(m).touch(), t)[1]
  out = tf.keras.layers.Lambda(touch)(tf.keras.layers.Dense(3)(inp))
  tf.keras.Model(inp, out).save(str(path), save_format='h5')
  os.remove(marker)  # building the model above ran the lambda once


def test_an_hdf5_file_named_keras_is_refused_before_keras_reads_it(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  marker = tmp_path / 'code_ran'
  planted = tmp_path / 'vog_checkpoints' / 'epoch-0002.keras'
  _hdf5_with_a_lambda_that_writes(tmp_path / 'planted.h5', marker)
  os.replace(tmp_path / 'planted.h5', planted)
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"epoch-0002.keras does not load as a Keras model: it is not a zip "
                     r"\.keras file \(it starts with b'\\x89HDF'\); only that format is "
                     'loaded, because HDF5 and SavedModel files can run code while loading '
                     '- re-run the Trainer with VogCheckpointCallback'):
    checkpoints.load_checkpoint_models(entries)
  assert not marker.exists()
  # What the check prevents: Keras itself, safe mode or not, runs the Lambda of this file.
  tf.keras.models.load_model(str(planted), compile=False, safe_mode=True)
  assert marker.exists()


def _rewrite_config(path, change):
  with zipfile.ZipFile(path) as archive:
    files = {name: archive.read(name) for name in archive.namelist()}
  config = json.loads(files['config.json'])
  change(config)
  files['config.json'] = json.dumps(config).encode()
  with zipfile.ZipFile(path, 'w') as archive:
    for name, data in files.items():
      archive.writestr(name, data)


def test_a_keras_zip_that_names_code_outside_keras_is_refused(tmp_path):
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)

  def use_os_system(config):
    [dense] = [l for l in config['config']['layers'] if l['class_name'] == 'Dense']
    dense['config']['activation'] = {'module': 'builtins', 'class_name': 'function',
                                     'config': 'exec', 'registered_name': 'function'}
    dense['config']['kernel_initializer'] = {'module': 'os', 'class_name': 'system',
                                             'config': {}, 'registered_name': None}

  _rewrite_config(tmp_path / 'vog_checkpoints' / 'epoch-0002.keras', use_os_system)
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError,
                     match='epoch-0002.keras does not load as a Keras model without importing '
                     'builtins.exec, os.system from outside Keras, which a checkpoint may not '
                     'ask for - if you trust that code, return it from custom_objects in the '
                     'module_file'):
    checkpoints.load_checkpoint_models(entries)


class ScaledDense(tf.keras.layers.Dense):
  """A custom layer, as a Trainer module file might define one."""


def test_custom_layers_load_only_through_custom_objects(tmp_path):
  inp = tf.keras.Input((2,), name='x')
  model = tf.keras.Model(inp, ScaledDense(3, activation='softmax')(inp))
  model.compile(optimizer='sgd', loss='sparse_categorical_crossentropy')
  _fit(str(tmp_path), epochs=2, max_checkpoints=2, model=model)
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'without importing test_checkpoints\.ScaledDense from outside'):
    checkpoints.load_checkpoint_models(entries)
  models = checkpoints.load_checkpoint_models(entries, {'ScaledDense': ScaledDense})
  assert isinstance(models[0].layers[-1], ScaledDense)


def test_a_supplied_name_elsewhere_in_a_node_does_not_let_its_module_in(tmp_path):
  # Keras looks a function up by its `config` alone; a registered_name that
  # custom_objects happens to supply must not wave os.system through.
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)

  def sneak_os_system(config):
    [dense] = [l for l in config['config']['layers'] if l['class_name'] == 'Dense']
    dense['config']['activation'] = {'module': 'os', 'class_name': 'function',
                                     'config': 'system', 'registered_name': 'ScaledDense'}

  _rewrite_config(tmp_path / 'vog_checkpoints' / 'epoch-0002.keras', sneak_os_system)
  entries = checkpoints.load_manifest(str(tmp_path))
  with pytest.raises(checkpoints.CheckpointError, match=r'without importing os\.system'):
    checkpoints.load_checkpoint_models(entries, {'ScaledDense': ScaledDense})


def test_checkpoints_saved_from_another_thread_are_zip_keras_files(tmp_path):
  # Keras chooses the .keras format per thread; a trainer run in a thread pool (an
  # orchestrator's) must still write checkpoints the audit can load.
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
  path = str(tmp_path / 'ckpt.keras')
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pool.submit(checkpoints._save_model, model, path).result()
  with open(path, 'rb') as f:
    assert f.read(2) == b'PK'


# A manifest or checkpoint that is no regular file, nests too deep or lists one file
# twice is refused by name, by the loader and by `vog-audit score` (exit 2, one line).

@pytest.fixture(scope='module')
def saved_run(tmp_path_factory):
  """A run with four saved checkpoints, copied by each test that breaks it."""
  root = tmp_path_factory.mktemp('saved_run')
  _fit(str(root / 'run'), epochs=4, max_checkpoints=4)
  examples = root / 'examples.tfrecord'
  with tf.io.TFRecordWriter(str(examples)) as writer:
    writer.write(tf.train.Example().SerializeToString())
  return root


def _manifest_a_folder(folder):
  (folder / 'manifest.json').unlink()
  (folder / 'manifest.json').mkdir()


def _manifest_nested(folder):
  (folder / 'manifest.json').write_text(
      '{"format_version": 1, "checkpoints": ' + '[' * 50_000 + ']' * 50_000 + '}')


def _checkpoint_a_folder(folder):
  (folder / 'epoch-0002.keras').unlink()
  (folder / 'epoch-0002.keras').mkdir()


def _one_file_four_times(folder):
  entries = _manifest_entries(folder.parent)
  _write_manifest(folder, [dict(e, path='epoch-0001.keras') for e in entries])


def _one_file_under_two_names(folder):
  (folder / 'latest.keras').symlink_to(folder / 'epoch-0004.keras')
  entries = _manifest_entries(folder.parent)
  entries[2]['path'] = 'latest.keras'
  _write_manifest(folder, entries)


@pytest.mark.parametrize('break_it, problem', [
    (_manifest_a_folder, r'checkpoint manifest .*/vog_checkpoints/manifest.json is a folder, '
                         r'not a file - re-run the Trainer'),
    (_manifest_nested, r'checkpoint manifest .*/manifest.json nests 50001 levels deep, more '
                       r'than the 8 this file ever has'),
    (_checkpoint_a_folder, r'manifest.json: entry 1 names a checkpoint that cannot be loaded: '
                           r'.*/epoch-0002.keras is a folder, not a file'),
    (_one_file_four_times, r'manifest.json lists .*/epoch-0001.keras more than once \(entries '
                           r'0 and 1\); one model listed under several steps has no variance'),
    (_one_file_under_two_names, r'manifest.json lists .*/epoch-0004.keras more than once '
                                r'\(entries 2 and 3\)'),
], ids=['manifest folder', 'manifest nested', 'checkpoint folder', 'listed four times',
        'listed under two names'])
def test_a_manifest_entry_that_cannot_be_a_checkpoint_is_refused(saved_run, tmp_path,
                                                                 break_it, problem):
  import shutil  # pylint: disable=g-import-not-at-top
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'run'
  shutil.copytree(saved_run / 'run', run, symlinks=True)
  break_it(run / 'vog_checkpoints')
  with pytest.raises(checkpoints.CheckpointError, match=problem):
    checkpoints.load_manifest(str(run))
  result = CliRunner().invoke(cli, ['score', '--model-run', str(run), '--examples',
                                    str(saved_run / 'examples.tfrecord'), '--output',
                                    str(tmp_path / 'out')])
  assert result.exit_code == 2, result.output
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and re.search(problem, errors[0]), result.stderr
  assert 'Traceback' not in result.output


_GROWTH_PROBE = '''
import json, os, sys
os.environ['TF_USE_LEGACY_KERAS'] = '1'
import tensorflow as tf
from components.vog.inputs import checkpoints
checkpoints.load_checkpoint_models(checkpoints.load_manifest(sys.argv[1]))
print(json.dumps({
    'variable': os.environ.get('TF_FORCE_GPU_ALLOW_GROWTH'),
    'growth': {g.name: tf.config.experimental.get_memory_growth(g)
               for g in tf.config.list_physical_devices('GPU')}}))
'''


@pytest.mark.parametrize('given, expected', [(None, 'true'), ('false', 'false')])
def test_loading_checkpoints_leaves_gpu_memory_to_grow(tmp_path, given, expected):
  # The launcher loads every checkpoint to plan; TensorFlow would take a GPU's memory
  # whole on its first op. Loading turns memory growth on for the process (for every
  # GPU it sees, and through TF_FORCE_GPU_ALLOW_GROWTH for any started later), unless
  # the user set that variable otherwise. Each GPU seen grows exactly when growth is
  # wanted (on a machine without a GPU, the variable alone says it).
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  _fit(str(tmp_path), epochs=2, max_checkpoints=2)
  env = {k: v for k, v in os.environ.items() if k != 'TF_FORCE_GPU_ALLOW_GROWTH'}
  if given is not None:
    env['TF_FORCE_GPU_ALLOW_GROWTH'] = given
  env['PYTHONPATH'] = repo_paths.REPO
  out = subprocess.run([sys.executable, '-c', _GROWTH_PROBE, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=120, check=True)
  probe = json.loads(out.stdout.strip().splitlines()[-1])
  assert probe['variable'] == expected
  assert all(grows == (expected == 'true') for grows in probe['growth'].values()), probe
