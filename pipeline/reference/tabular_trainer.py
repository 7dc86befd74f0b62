"""Trainer module file of the tabular reference pipeline: numbers and category embeddings.

The model reads Transform's outputs (pipeline.reference.tabular_transform): `numeric`, the six
z-scored columns as one float vector, and `region_id`, `device_id`, `channel_id`, one
category id each. Every id goes through its own Embedding (4 dimensions, no mask: every
id is a category), the embeddings and the numbers are joined and a small dense network
ends in a softmax over the three segments.

VarianceOfGradients takes gradients with respect to `numeric` and to the outputs of the
Embedding layers, the differentiable stand-ins for the ids. The serving model takes raw
tf.Examples (see pipeline.reference.transformed_training), so the Evaluator runs it on the raw
scored examples.

`fn_args.custom_config` keys are those of pipeline.reference.trainer_module (`epochs`,
`batch_size`, `learning_rate`, `max_checkpoints`, `seed`).
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from pipeline.reference import tabular_transform  # pylint: disable=g-import-not-at-top
from pipeline.reference import transformed_training  # pylint: disable=g-import-not-at-top

NUM_CLASSES = 3
EMBEDDING_DIM = 4
# What the serving signature parses from a raw tf.Example.
RAW_FEATURES = tabular_transform.NUMERIC_KEYS + tabular_transform.CATEGORICAL_KEYS


def build_model(tf_transform_output, learning_rate: float) -> tf.keras.Model:
  """The segment classifier over Transform's outputs, compiled."""
  numeric = tf.keras.Input((len(tabular_transform.NUMERIC_KEYS),),
                           name=tabular_transform.NUMERIC_FEATURE, dtype=tf.float32)
  inputs, parts = [numeric], [numeric]
  for column in tabular_transform.CATEGORICAL_KEYS:
    ids = tf.keras.Input((1,), name=tabular_transform.id_feature(column), dtype=tf.int64)
    size = tabular_transform.embedding_input_dim(tf_transform_output, column)
    embedded = tf.keras.layers.Embedding(size, EMBEDDING_DIM,
                                         name=f'{column}_embedding')(ids)
    inputs.append(ids)
    parts.append(tf.keras.layers.Flatten(name=f'{column}_flat')(embedded))
  x = tf.keras.layers.Concatenate()(parts)
  x = tf.keras.layers.Dense(32, activation='relu')(x)
  x = tf.keras.layers.Dense(16, activation='relu')(x)
  return transformed_training.compiled_classifier(inputs, x, NUM_CLASSES, 'tabular_segments',
                                                 learning_rate)


def run_fn(fn_args) -> None:
  """TFX Trainer entry point; see pipeline.reference.transformed_training.train_and_save."""
  transformed_training.train_and_save(fn_args, build_model, RAW_FEATURES)
