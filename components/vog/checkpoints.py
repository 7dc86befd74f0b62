"""The checkpoint contract between a Trainer module file and VarianceOfGradients.

The Trainer's `run_fn` adds `VogCheckpointCallback(fn_args.model_run_dir)` to `fit`. It
writes, under `<model_run_dir>/vog_checkpoints/`, one full Keras model file per saved
epoch and `manifest.json`:

    {"format_version": 1,
     "checkpoints": [{"path": "epoch-0003.keras", "epoch": 3, "step": 96,
                      "metrics": {"loss": 0.41, ...}}, ...]}

Paths are relative to `vog_checkpoints/`, so the artifact can move between file systems.
`load_manifest` reads and validates it; `load_checkpoint_models` loads the models.
"""

import json
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

CHECKPOINT_DIR = 'vog_checkpoints'
MANIFEST_FILE = 'manifest.json'
FORMAT_VERSION = 1


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


def _is_local(path: str) -> bool:
  return '://' not in path


def _save_model(model: tf.keras.Model, path: str) -> None:
  if _is_local(path):
    model.save(path)
    return
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, os.path.basename(path))
    model.save(local)
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


def load_manifest(model_run_dir: str) -> List[CheckpointEntry]:
  """Reads and validates the manifest under `model_run_dir`; entries sorted by step.

  Raises CheckpointError naming the path and the fix when the manifest is missing,
  unreadable, of another format version, empty, lists fewer than 2 checkpoints, or
  names a file that is not there.
  """
  folder = checkpoint_dir_of(model_run_dir)
  path = os.path.join(folder, MANIFEST_FILE)
  fix = ('add VogCheckpointCallback(fn_args.model_run_dir) to the callbacks of fit in '
         'the Trainer module file')
  if not tf.io.gfile.exists(path):
    raise CheckpointError(f'no checkpoint manifest at {path} - {fix}')
  try:
    with tf.io.gfile.GFile(path) as f:
      manifest = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise CheckpointError(f'checkpoint manifest {path} is not valid JSON ({e}) - '
                          're-run the Trainer to rewrite it') from e
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
      entry = CheckpointEntry(os.path.join(folder, item['path']), int(item['epoch']),
                              int(item['step']), item.get('metrics') or {})
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f'checkpoint manifest {path}: entry {i} lacks a valid '
                            f'path, epoch or step ({e!r}) - re-run the Trainer') from e
    if not tf.io.gfile.exists(entry.path):
      raise CheckpointError(f'checkpoint manifest {path} names {entry.path}, which is '
                            'not there - copy the whole vog_checkpoints folder, or '
                            're-run the Trainer')
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


def _input_signature(model: tf.keras.Model) -> List[tuple]:
  return [(name, tuple(t.shape.as_list()[1:]), t.dtype.name)
          for name, t in zip(model.input_names, model.inputs)]


def load_checkpoint_models(entries: Sequence[CheckpointEntry],
                           custom_objects: Optional[Mapping[str, Any]] = None
                           ) -> List[tf.keras.Model]:
  """Loads each checkpoint's Keras model (without its optimizer) in the given order.

  Raises CheckpointError naming the file when one does not load, and when the
  checkpoints' input signatures differ.
  """
  models = []
  for entry in entries:
    try:
      if _is_local(entry.path):
        model = tf.keras.models.load_model(entry.path, custom_objects=custom_objects,
                                           compile=False)
      else:
        with tempfile.TemporaryDirectory() as tmp:
          local = os.path.join(tmp, os.path.basename(entry.path))
          tf.io.gfile.copy(entry.path, local)
          model = tf.keras.models.load_model(local, custom_objects=custom_objects,
                                             compile=False)
    except Exception as e:  # Keras raises many types for a bad file.
      raise CheckpointError(
          f'checkpoint {entry.path} does not load as a Keras model ({type(e).__name__}: '
          f'{e}) - if it uses custom layers, pass them as custom_objects through '
          'module_file; otherwise re-run the Trainer') from e
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

