"""The checkpoint contract between a Trainer module file and VarianceOfGradients.

The Trainer's `run_fn` adds `VogCheckpointCallback(fn_args.model_run_dir)` to `fit`. It
writes, under `<model_run_dir>/vog_checkpoints/`, one full Keras model file per saved
epoch and `manifest.json`:

    {"format_version": 1,
     "checkpoints": [{"path": "epoch-0003.keras", "epoch": 3, "step": 96,
                      "metrics": {"loss": 0.41, ...}}, ...]}

Paths are relative to `vog_checkpoints/`, so the artifact can move between file systems.
`load_manifest` reads and validates it; `load_checkpoint_models` loads the models.

What is data and what is code. The manifest and the checkpoint files are data, written by
whoever can write the Trainer's output, and are treated as untrusted:
  * the manifest is read only when it is a regular file of at most MANIFEST_MAX_BYTES
    whose JSON nests no deeper than MANIFEST_MAX_DEPTH;
  * a manifest path must name a file inside `vog_checkpoints/`: absolute paths and `..`
    are refused, and a local path must still lie inside the folder once symbolic links are
    resolved; it must be a regular file, and no file may be listed twice (the same model
    under several steps has no variance, so every score would be 0);
  * only zip `.keras` files (the Keras v3 format the callback writes) are loaded, told by
    their first bytes, not their name: HDF5 and SavedModel files can run code while
    loading, and Keras picks the format from the content;
  * a checkpoint whose config.json names a class or function from outside Keras (a Lambda
    layer's function included) is refused unless `custom_objects` supplies that name, so
    loading never imports a module named by the file;
  * Keras loads with `safe_mode=True`, which refuses Lambda layers stored as bytecode.
`module_file` and the `custom_objects` it defines are code, and trusted as such:
VarianceOfGradients imports the module file in the process that runs its executor and in
every Beam worker that parses or scores examples, and the custom objects run while the
checkpoints load and score. Use only module files you would run yourself.
"""

import json
import os
import re
import tempfile
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from components.vog.compute import devices
from components.vog.inputs import storage

CHECKPOINT_DIR = 'vog_checkpoints'
MANIFEST_FILE = 'manifest.json'
FORMAT_VERSION = 1
CHECKPOINT_SUFFIX = '.keras'
# A manifest lists one short entry per saved epoch, and nests 4 levels deep (its
# checkpoints, an entry, its metrics).
MANIFEST_MAX_BYTES = 16 << 20
MANIFEST_MAX_DEPTH = 8
# The first bytes of a zip file (a local file header), which every .keras file starts with.
ZIP_MAGIC = b'PK\x03\x04'
# Modules whose classes and functions Keras resolves from its own API.
_KERAS_MODULES = ('keras', 'tf_keras')
_KERAS_PREFIXES = tuple(m + '.' for m in _KERAS_MODULES)
# Keras's own built-in functions are serialized with module `builtins`, by name.
_KERAS_BUILTIN_FUNCTION_MODULES = ('activations', 'constraints', 'initializers', 'losses',
                                   'metrics', 'optimizers', 'regularizers')


class CheckpointError(ValueError):
  """A checkpoint manifest or checkpoint file that VoG cannot use."""


def epochs_to_save(epochs: int, max_checkpoints: int) -> List[int]:
  """The 1-based epochs to save: every epoch up to `max_checkpoints`, else spread evenly.

  The last epoch is always included.
  """
  if max_checkpoints < 2:
    raise ValueError(f'max_checkpoints={max_checkpoints}; VoG needs at least 2')
  if epochs <= max_checkpoints:
    return list(range(1, epochs + 1))
  marks = np.ceil(np.arange(1, max_checkpoints + 1) * epochs / max_checkpoints)
  return sorted(set(int(m) for m in marks))


def _write_json_atomically(path: str, payload: Mapping[str, Any]) -> None:
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    f.write(json.dumps(payload, indent=2, sort_keys=True))
  tf.io.gfile.rename(tmp, path, overwrite=True)


class VogCheckpointCallback(tf.keras.callbacks.Callback):
  """Saves full-model checkpoints and the manifest that VarianceOfGradients reads.

  Args:
    model_run_dir: the Trainer's `fn_args.model_run_dir`; files go to its
      `vog_checkpoints/` folder.
    max_checkpoints: how many epochs to save at most. With more epochs than that, the
      saved epochs are spread evenly over the epochs `fit` was asked for, last included.
  """

  def __init__(self, model_run_dir: str, max_checkpoints: int = 10):
    super().__init__()
    if max_checkpoints < 2:
      raise ValueError(f'max_checkpoints={max_checkpoints}; VoG needs at least 2')
    self.checkpoint_dir = os.path.join(model_run_dir, CHECKPOINT_DIR)
    self.max_checkpoints = max_checkpoints
    self._epochs_to_save: set = set()
    self._entries: List[Dict[str, Any]] = []

  def on_train_begin(self, logs=None):
    epochs = int(self.params.get('epochs') or 1)
    self._epochs_to_save = set(epochs_to_save(epochs, self.max_checkpoints))
    tf.io.gfile.makedirs(self.checkpoint_dir)
    self._entries = []

  def on_epoch_end(self, epoch, logs=None):
    number = epoch + 1
    if number not in self._epochs_to_save:
      return
    name = f'epoch-{number:04d}.keras'
    _save_model(self.model, os.path.join(self.checkpoint_dir, name))
    self._entries.append({
        'path': name,
        'epoch': number,
        'step': int(self.model.optimizer.iterations.numpy()),
        'metrics': {k: float(v) for k, v in (logs or {}).items()},
    })
    # Rewritten after every checkpoint so an interrupted run leaves a valid manifest.
    _write_json_atomically(
        os.path.join(self.checkpoint_dir, MANIFEST_FILE),
        {'format_version': FORMAT_VERSION, 'checkpoints': self._entries})


def _save_model(model: tf.keras.Model, path: str) -> None:
  # The zip .keras format by name: Keras picks it from a `.keras` path only in the
  # thread that imported it, and writes HDF5 under that name from any other thread
  # (a trainer run by a thread pool), which the audit then refuses to load.
  if storage.is_local(path):
    model.save(storage.local_path(path), save_format='keras_v3')
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, os.path.basename(path))
    model.save(local, save_format='keras_v3')
    tf.io.gfile.copy(local, path, overwrite=True)


class CheckpointEntry:
  """One saved checkpoint: absolute path, epoch, step and the epoch's metrics."""

  def __init__(self, path: str, epoch: int, step: int, metrics: Mapping[str, float]):
    self.path = path
    self.epoch = epoch
    self.step = step
    self.metrics = dict(metrics)


def checkpoint_dir_of(model_run_dir: str) -> str:
  """`<model_run_dir>/vog_checkpoints`, or the folder itself when given that."""
  if tf.io.gfile.exists(os.path.join(model_run_dir, MANIFEST_FILE)):
    return model_run_dir
  return os.path.join(model_run_dir, CHECKPOINT_DIR)


def _confined_path(folder: str, name: Any) -> str:
  """`folder/name`, where `name` comes from a manifest and must stay inside `folder`.

  Raises CheckpointError (a message to follow 'entry N') for a name that is not a
  non-empty relative path, climbs with `..`, or, for a local folder, resolves through a
  symbolic link to somewhere outside the folder.
  """
  fix = (f'a manifest may only name files inside {folder}; re-run the Trainer with '
         'VogCheckpointCallback, which writes plain file names, or copy the checkpoints '
         'into that folder and list them by name')
  if not isinstance(name, str):
    raise TypeError(f'path {name!r} is not a string')
  if not name.strip():
    raise CheckpointError(f'has an empty path - {fix}')
  if (os.path.isabs(name) or name.startswith(('/', '\\')) or '://' in name
      or re.match(r'[A-Za-z]:', name)):
    raise CheckpointError(f'path {name!r} is absolute - {fix}')
  if '..' in re.split(r'[\\/]', name):
    raise CheckpointError(f'path {name!r} climbs out of the folder with .. - {fix}')
  joined = os.path.join(folder, name)
  if storage.is_local(folder):
    # file:// too: a link inside a file:// folder leads out of it as well.
    real_folder = os.path.realpath(storage.local_path(folder))
    real = os.path.realpath(storage.local_path(joined))
    if not real.startswith(real_folder.rstrip(os.sep) + os.sep):
      raise CheckpointError(f'path {name!r} resolves to {real}, outside {real_folder} '
                            f'(through a symbolic link) - {fix}')
  return joined


def load_manifest(model_run_dir: str) -> List[CheckpointEntry]:
  """Reads and validates the manifest under `model_run_dir`; entries sorted by step.

  Raises CheckpointError naming the path and the fix when the manifest is missing,
  unreadable (a folder, a FIFO, above MANIFEST_MAX_BYTES or nested deeper than
  MANIFEST_MAX_DEPTH included), of another format version, empty, lists fewer than 2
  checkpoints, names a file that is not there or that is not a regular file, names one
  file more than once, or names a path outside `vog_checkpoints/` (absolute, with `..`,
  or through a symbolic link that leads out).
  """
  from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
  folder = checkpoint_dir_of(model_run_dir)
  path = os.path.join(folder, MANIFEST_FILE)
  fix = ('add VogCheckpointCallback(fn_args.model_run_dir) to the callbacks of fit in '
         'the Trainer module file')
  if not tf.io.gfile.exists(path):
    raise CheckpointError(f'no checkpoint manifest at {path} - {fix}')
  try:
    manifest = record_files.read_json_file(path, MANIFEST_MAX_BYTES, MANIFEST_MAX_DEPTH)
  except record_files.UnreadableFile as e:
    raise CheckpointError(f'checkpoint manifest {e} - re-run the Trainer to rewrite '
                          'it') from None
  if not isinstance(manifest, dict) or manifest.get('format_version') != FORMAT_VERSION:
    raise CheckpointError(
        f'checkpoint manifest {path} has format_version '
        f'{manifest.get("format_version") if isinstance(manifest, dict) else None!r}; '
        f'this version reads {FORMAT_VERSION} - re-run the Trainer with this release')
  raw = manifest.get('checkpoints')
  if not isinstance(raw, list) or not raw:
    raise CheckpointError(f'checkpoint manifest {path} lists no checkpoints - {fix}')
  entries = []
  for i, item in enumerate(raw):
    try:
      entry = CheckpointEntry(_confined_path(folder, item['path']), int(item['epoch']),
                              int(item['step']), item.get('metrics') or {})
    except (KeyError, TypeError, ValueError) as e:
      if isinstance(e, CheckpointError):
        raise CheckpointError(f'checkpoint manifest {path}: entry {i} {e}') from None
      raise CheckpointError(f'checkpoint manifest {path}: entry {i} lacks a valid '
                            f'path, epoch or step ({e!r}) - re-run the Trainer') from e
    if not tf.io.gfile.exists(entry.path):
      raise CheckpointError(f'checkpoint manifest {path} names {entry.path}, which is '
                            'not there - copy the whole vog_checkpoints folder, or '
                            're-run the Trainer')
    problem = record_files.file_problem(entry.path)
    if problem is not None:
      raise CheckpointError(f'checkpoint manifest {path}: entry {i} names a checkpoint '
                            f'that cannot be loaded: {problem} - list the .keras files '
                            'VogCheckpointCallback saved, or re-run the Trainer')
    same = [j for j, e in enumerate(entries) if _same_file(e.path, entry.path)]
    if same:
      raise CheckpointError(
          f'checkpoint manifest {path} lists {entry.path} more than once (entries '
          f'{same[0]} and {i}); one model listed under several steps has no variance '
          'across them, so every score would be 0 - list each saved checkpoint once, or '
          're-run the Trainer into a fresh model_run_dir')
    entries.append(entry)
  if len(entries) < 2:
    raise CheckpointError(
        f'checkpoint manifest lists {len(entries)} usable checkpoint at {path}; VoG '
        'needs at least 2 - save more epochs with VogCheckpointCallback')
  steps = [e.step for e in entries]
  if len(set(steps)) != len(steps):
    raise CheckpointError(f'checkpoint manifest {path} lists step(s) more than once '
                          f'({steps}) - re-run the Trainer into a fresh model_run_dir')
  return sorted(entries, key=lambda e: e.step)


def _same_file(a: str, b: str) -> bool:
  """Whether two checkpoint paths name one file: the same path once normalised, or
  for local files the same file once links are followed."""
  if os.path.normpath(a) == os.path.normpath(b):
    return True
  if storage.is_local(a) and storage.is_local(b):
    try:
      return os.path.samefile(storage.local_path(a), storage.local_path(b))
    except OSError:
      return False
  return False


def _input_signature(model: tf.keras.Model) -> List[tuple]:
  return [(name, tuple(t.shape.as_list()[1:]), t.dtype.name)
          for name, t in zip(model.input_names, model.inputs)]


def _object_name(node: Mapping[str, Any]) -> str:
  """The class or function name of one serialized object in a .keras config."""
  if node.get('function_type') == 'lambda':
    return '<lambda>'
  for key in ('class_name', 'function', 'config'):
    value = node.get(key)
    if isinstance(value, str) and value != 'function':
      return value
  return '?'


def _foreign_objects(config: Any, custom_objects: Mapping[str, Any]) -> List[str]:
  """'module.name' of every object in a .keras config that Keras would import from
  outside Keras, and that `custom_objects` does not supply. The compile config is
  skipped: checkpoints load without compiling."""
  found: List[str] = []

  def supplied(node: Mapping[str, Any]) -> bool:
    # The one name Keras looks up in custom_objects before it imports `module`: a
    # function's `config`, a class's `registered_name` (its `class_name` when absent).
    if node.get('class_name') == 'function':
      name = node.get('config')
    else:
      name = node.get('registered_name', node.get('class_name'))
    return isinstance(name, str) and name in custom_objects

  def keras_builtin(node: Mapping[str, Any]) -> bool:
    name = node.get('config') if node.get('class_name') == 'function' else None
    return isinstance(name, str) and not name.startswith('_') and any(
        getattr(getattr(tf.keras, m), name, None) is not None
        for m in _KERAS_BUILTIN_FUNCTION_MODULES)

  def walk(node: Any) -> None:
    if isinstance(node, dict):
      module = node.get('module')
      if isinstance(module, str) and not (
          module in _KERAS_MODULES or module.startswith(_KERAS_PREFIXES)
          or (module == 'builtins' and keras_builtin(node)) or supplied(node)):
        found.append(f'{module}.{_object_name(node)}')
      for key, value in node.items():
        if key != 'compile_config':
          walk(value)
    elif isinstance(node, list):
      for value in node:
        walk(value)

  walk(config)
  return sorted(set(found))


def _load_keras_zip(path: str, shown: str,
                    custom_objects: Mapping[str, Any]) -> tf.keras.Model:
  """Loads the local zip .keras file `path` (named `shown` in errors), checked first."""
  fix = ('re-run the Trainer with VogCheckpointCallback, which writes zip .keras files, '
         'or re-save the model with model.save("<name>.keras")')
  with open(path, 'rb') as f:
    head = f.read(len(ZIP_MAGIC))
  if not path.endswith(CHECKPOINT_SUFFIX) or head != ZIP_MAGIC:
    raise CheckpointError(
        f'checkpoint {shown} does not load as a Keras model: it is not a zip '
        f'{CHECKPOINT_SUFFIX} file (it starts with {head!r}); only that format is loaded, '
        f'because HDF5 and SavedModel files can run code while loading - {fix}')
  try:
    with zipfile.ZipFile(path) as archive:
      config = json.loads(archive.read('config.json'))
  except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as e:
    raise CheckpointError(f'checkpoint {shown} does not load as a Keras model: it is not '
                          f'a complete {CHECKPOINT_SUFFIX} file ({e}) - {fix}') from e
  foreign = _foreign_objects(config, custom_objects)
  if foreign:
    raise CheckpointError(
        f'checkpoint {shown} does not load as a Keras model without importing '
        f'{", ".join(foreign)} from outside Keras, which a checkpoint may not ask for - '
        'if you trust that code, return it from custom_objects in the module_file; '
        'otherwise re-run the Trainer without it')
  try:
    return tf.keras.models.load_model(path, custom_objects=dict(custom_objects),
                                      compile=False, safe_mode=True)
  except Exception as e:  # Keras raises many types for a bad file.
    raise CheckpointError(
        f'checkpoint {shown} does not load as a Keras model ({type(e).__name__}: '
        f'{e}) - if it uses custom layers, pass them as custom_objects through '
        'module_file; otherwise re-run the Trainer') from e


def load_checkpoint_models(entries: Sequence[CheckpointEntry],
                           custom_objects: Optional[Mapping[str, Any]] = None
                           ) -> List[tf.keras.Model]:
  """Loads each checkpoint's Keras model (without its optimizer) in the given order.

  Only zip .keras files are loaded, in Keras safe mode, and only when every class and
  function their config names is Keras's own or in `custom_objects` (see the module
  docstring). Remote files are copied to a local temporary folder first.

  Raises CheckpointError naming the file when one is not a zip .keras file, names code
  from outside Keras, or does not load, and when the checkpoints' input signatures differ.

  Memory growth is turned on for the process's GPUs first (devices.py): the launcher
  loads the checkpoints to plan and must not hold a GPU for it, and the workers that
  score share theirs.
  """
  devices.grow_gpu_memory()
  custom_objects = dict(custom_objects or {})
  models = []
  for entry in entries:
    if storage.is_local(entry.path):
      model = _load_keras_zip(storage.local_path(entry.path), entry.path, custom_objects)
    else:
      with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, os.path.basename(entry.path))
        tf.io.gfile.copy(entry.path, local)
        model = _load_keras_zip(local, entry.path, custom_objects)
    models.append(model)
  first = _input_signature(models[0])
  for entry, model in zip(entries[1:], models[1:]):
    signature = _input_signature(model)
    if signature != first:
      raise CheckpointError(
          f'checkpoint {entry.path} has input signature {signature}, but '
          f'{entries[0].path} has {first}; all checkpoints of one run must share inputs '
          '- re-run the Trainer into a fresh model_run_dir')
  return models

