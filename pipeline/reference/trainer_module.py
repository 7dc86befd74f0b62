"""Trainer module file of the reference pipeline: a small CNN on 8x8 digit images.

The model's input is named `image` with shape (8, 8, 1), so VarianceOfGradients feeds it
the `image` feature with its default reshape and averages gradients over the channel
axis. `VogCheckpointCallback` saves the checkpoints that VarianceOfGradients scores with.

The serving model takes serialized tf.Examples (signature `serving_default`, input
`examples`) and parses only `image`, so the Evaluator can run it on `scored_examples`,
whose extra `vog_*` features it ignores. `label_flipped` is never read.

`fn_args.custom_config` keys (all optional): `epochs` (default 12), `batch_size` (32),
`learning_rate` (0.003), `max_checkpoints` (10), `seed` (0).
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

from typing import Any, Dict, List, Union  # pylint: disable=g-import-not-at-top

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top

IMAGE_KEY = 'image'
LABEL_KEY = 'label'
IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10
OUTPUT_KEY = 'probabilities'
DEFAULTS = {'epochs': 12, 'batch_size': 32, 'learning_rate': 0.003,
            'max_checkpoints': 10, 'seed': 0}

_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
_IMAGE_SPEC = {IMAGE_KEY: tf.io.FixedLenFeature([_PIXELS], tf.float32)}
_TRAIN_SPEC = dict(_IMAGE_SPEC, **{LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)})


def training_settings(custom_config: Union[Dict[str, Any], None]) -> Dict[str, Any]:
  """DEFAULTS updated with `custom_config`; refuses unknown keys and bad values."""
  config = dict(custom_config or {})
  unknown = sorted(set(config) - set(DEFAULTS))
  if unknown:
    raise ValueError(f'Trainer custom_config has unknown key(s) {unknown}; known keys '
                     f'are {sorted(DEFAULTS)}')
  settings = dict(DEFAULTS, **config)
  for key in ('epochs', 'batch_size', 'max_checkpoints'):
    if not isinstance(settings[key], int) or settings[key] < 1:
      raise ValueError(f'Trainer custom_config {key}={settings[key]!r} must be a '
                       'positive integer')
  if settings['epochs'] < 2:
    raise ValueError(f'Trainer custom_config epochs={settings["epochs"]}; '
                     'VarianceOfGradients needs at least 2 saved epochs')
  if not settings['learning_rate'] > 0:
    raise ValueError(f'Trainer custom_config learning_rate='
                     f'{settings["learning_rate"]!r} must be positive')
  return settings


def example_files(patterns: Union[str, List[str]], writer: str = 'ExampleGen') -> List[str]:
  """The files matching `patterns`, sorted; ValueError naming them (and `writer`, the
  component that should have written them) when none match."""
  patterns = [patterns] if isinstance(patterns, str) else list(patterns)
  files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise ValueError(f'no example files match {patterns}; check that {writer} wrote '
                     'the split the Trainer was told to read')
  return files


def _dataset(patterns, batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
  """Batches of ({'image': (b, 8, 8, 1)}, label (b, 1)) from gzipped tf.Examples."""

  def parse(records):
    parsed = tf.io.parse_example(records, _TRAIN_SPEC)
    return ({IMAGE_KEY: tf.reshape(parsed[IMAGE_KEY], (-1,) + IMAGE_SHAPE)},
            parsed[LABEL_KEY])

  dataset = tf.data.TFRecordDataset(example_files(patterns), compression_type='GZIP')
  if shuffle_seed is not None:
    dataset = dataset.shuffle(4096, seed=shuffle_seed, reshuffle_each_iteration=True)
  return dataset.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)


def build_model(learning_rate: float) -> tf.keras.Model:
  """A two-convolution CNN with a softmax head over the 10 digit classes."""
  image = tf.keras.Input(IMAGE_SHAPE, name=IMAGE_KEY)
  x = tf.keras.layers.Conv2D(16, 3, padding='same', activation='relu')(image)
  x = tf.keras.layers.Conv2D(32, 3, activation='relu')(x)
  x = tf.keras.layers.MaxPooling2D()(x)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(64, activation='relu')(x)
  output = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax', name=OUTPUT_KEY)(x)
  model = tf.keras.Model(image, output, name='digits_cnn')
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                loss='sparse_categorical_crossentropy',
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model


def _serving_signature(model: tf.keras.Model):
  """serving_default: serialized tf.Examples in, class probabilities out."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_tf_examples(examples):
    parsed = tf.io.parse_example(examples, _IMAGE_SPEC)
    image = tf.reshape(parsed[IMAGE_KEY], (-1,) + IMAGE_SHAPE)
    return {OUTPUT_KEY: model({IMAGE_KEY: image}, training=False)}

  return serve_tf_examples


def run_fn(fn_args) -> None:
  """TFX Trainer entry point: trains, saves VoG checkpoints and the serving model.

  Reads `fn_args.train_files` / `eval_files` (gzipped tf.Examples with `image` and
  `label`), writes checkpoints and their manifest under
  `fn_args.model_run_dir/vog_checkpoints/` and the serving SavedModel to
  `fn_args.serving_model_dir`.
  """
  settings = training_settings(fn_args.custom_config)
  tf.keras.utils.set_random_seed(settings['seed'])
  model = build_model(settings['learning_rate'])
  model.fit(
      _dataset(fn_args.train_files, settings['batch_size'], settings['seed']),
      validation_data=_dataset(fn_args.eval_files, 256),
      epochs=settings['epochs'],
      verbose=2,
      callbacks=[VogCheckpointCallback(fn_args.model_run_dir,
                                       max_checkpoints=settings['max_checkpoints'])])
  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures={'serving_default': _serving_signature(model)})
