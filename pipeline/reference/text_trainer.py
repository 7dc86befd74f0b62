"""Trainer module file of the text reference pipeline: token embeddings, averaged.

The model reads Transform's `token_ids` (pipeline.reference.text_transform): MAX_TOKENS word ids per
sentence, padded with 0. An Embedding (16 dimensions, `mask_zero=True`, so padding is
ignored) feeds a masked average over the words, a small dense layer and a softmax over
the four topics.

VarianceOfGradients takes gradients with respect to the Embedding's output, the
differentiable stand-in for the token ids; the mask keeps padded positions out. The
serving model takes raw tf.Examples with the `text` feature (see
pipeline.reference.transformed_training), so the Evaluator runs it on the raw scored examples.

`fn_args.custom_config` keys are those of pipeline.reference.trainer_module (`epochs`,
`batch_size`, `learning_rate`, `max_checkpoints`, `seed`).
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from pipeline.reference import text_transform  # pylint: disable=g-import-not-at-top
from pipeline.reference import transformed_training  # pylint: disable=g-import-not-at-top

NUM_CLASSES = 4
EMBEDDING_DIM = 16
# What the serving signature parses from a raw tf.Example.
RAW_FEATURES = (text_transform.TEXT_KEY,)


def build_model(tf_transform_output, learning_rate: float) -> tf.keras.Model:
  """The topic classifier over Transform's token ids, compiled."""
  token_ids = tf.keras.Input((text_transform.MAX_TOKENS,), name=text_transform.TOKENS_KEY,
                             dtype=tf.int64)
  x = tf.keras.layers.Embedding(text_transform.embedding_input_dim(tf_transform_output),
                                EMBEDDING_DIM, mask_zero=True,
                                name='token_embedding')(token_ids)
  x = tf.keras.layers.GlobalAveragePooling1D()(x)
  x = tf.keras.layers.Dense(16, activation='relu')(x)
  return transformed_training.compiled_classifier(token_ids, x, NUM_CLASSES, 'text_topics',
                                                 learning_rate)


def run_fn(fn_args) -> None:
  """TFX Trainer entry point; see pipeline.reference.transformed_training.train_and_save."""
  transformed_training.train_and_save(fn_args, build_model, RAW_FEATURES)
