"""VogCheckpointCallback, the manifest loader and stage selection."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components import VogCheckpointCallback
from components.vog import checkpoints
from components.vog.stages import checkpoints_for_stage


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
