"""The Trainer module file through TFX's run_fn contract: checkpoints, manifest, serving model."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from components.vog.inputs.checkpoints import load_checkpoint_models, load_manifest
from pipeline.reference import demo_data, trainer_module


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('trainer')
  data = demo_data.write_demo_data(str(root / 'data'), num_examples=400, seed=3)
  fn_args = tfx.components.FnArgs(
      train_files=[os.path.join(str(root / 'data'), 'train', '*')],
      eval_files=[os.path.join(str(root / 'data'), 'eval', '*')],
      serving_model_dir=str(root / 'serving'),
      model_run_dir=str(root / 'model_run'),
      custom_config={'epochs': 3, 'batch_size': 32})
  trainer_module.run_fn(fn_args)
  return fn_args, data


def test_every_epoch_checkpointed_with_a_manifest_vog_can_load(trained):
  fn_args, _ = trained
  entries = load_manifest(fn_args.model_run_dir)
  assert [e.epoch for e in entries] == [1, 2, 3]
  assert entries[0].step < entries[1].step < entries[2].step
  models = load_checkpoint_models(entries)
  assert models[0].input_names == ['image']
  assert tuple(models[0].inputs[0].shape[1:]) == (8, 8, 1)
  assert models[0].outputs[0].shape[-1] == 10


def _serialized(path, extra=None):
  records = []
  for record in tf.data.TFRecordDataset([path], compression_type='GZIP'):
    example = tf.train.Example.FromString(record.numpy())
    for key, value in (extra or {}).items():
      example.features.feature[key].bytes_list.value.append(value)
    records.append(example.SerializeToString())
  return records


def test_serving_model_scores_serialized_examples_and_ignores_vog_features(trained):
  fn_args, data = trained
  serve = tf.saved_model.load(fn_args.serving_model_dir).signatures['serving_default']
  plain = _serialized(data['eval'].path)
  scored = _serialized(data['eval'].path, {'vog_bucket': b'hard'})
  probs = serve(examples=tf.constant(plain))['probabilities'].numpy()
  probs_scored = serve(examples=tf.constant(scored))['probabilities'].numpy()
  np.testing.assert_allclose(probs, probs_scored)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  labels = np.array([tf.train.Example.FromString(r).features.feature['label']
                     .int64_list.value[0] for r in plain])
  # Three epochs on 300 digits, 10% flipped, is far above chance (0.1).
  assert (probs.argmax(axis=1) == labels).mean() > 0.6


@pytest.mark.parametrize('config, message', [
    ({'epoch': 3}, r"unknown key\(s\) \['epoch'\]"),
    ({'epochs': 1}, 'epochs=1; VarianceOfGradients needs at least 2'),
    ({'batch_size': 0}, 'batch_size=0 must be a positive integer'),
    ({'learning_rate': -1.0}, 'learning_rate=-1.0 must be positive'),
])
def test_bad_custom_config_refused_by_name(config, message):
  with pytest.raises(ValueError, match=message):
    trainer_module.training_settings(config)


def test_missing_training_files_named(tmp_path):
  fn_args = tfx.components.FnArgs(
      train_files=[str(tmp_path / 'nothing' / '*')], eval_files=[str(tmp_path / '*')],
      serving_model_dir=str(tmp_path / 's'), model_run_dir=str(tmp_path / 'r'),
      custom_config={'epochs': 2})
  with pytest.raises(ValueError, match='no example files match'):
    trainer_module.run_fn(fn_args)
