"""Transform module file of the text reference pipeline: sentences to fixed-length token ids.

`preprocessing_fn` turns the raw `text` feature into `token_ids`, int64 of shape
(MAX_TOKENS,):
  * lower case, split on whitespace (`tf.strings.split`);
  * `tft.compute_and_apply_vocabulary` over the whole data set gives each word an id
    0..V-1 (most frequent first) and maps words it never saw to one out-of-vocabulary
    bucket, V;
  * every id is shifted up by one so that 0 is free for padding: words are 1..V, the
    unknown bucket V+1, padding 0 (PAD_ID);
  * sentences longer than MAX_TOKENS are cut after their first MAX_TOKENS words; shorter
    ones are padded with 0 at the end.
The model's Embedding takes `mask_zero=True`, so padding never counts, and the vocabulary
size it needs is `embedding_input_dim(tf_transform_output)`.

`label` passes through unchanged. `example_id` and `label_flipped` are not model inputs
and are dropped.
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top

TEXT_KEY = 'text'
LABEL_KEY = 'label'
TOKENS_KEY = 'token_ids'
VOCABULARY_NAME = 'text_tokens'
MAX_TOKENS = 32
PAD_ID = 0
NUM_OOV_BUCKETS = 1


def _dense_text(value) -> tf.Tensor:
  """The text of each example, shape (batch,), from a (batch, 1) or sparse feature."""
  if isinstance(value, tf.SparseTensor):
    value = tf.sparse.to_dense(value, default_value='')
  return tf.reshape(value, [-1])


def preprocessing_fn(inputs):
  """Raw features -> {'token_ids': int64 (batch, MAX_TOKENS), 'label': int64 (batch, 1)}."""
  tokens = tf.strings.split(tf.strings.lower(_dense_text(inputs[TEXT_KEY])))
  ids = tft.compute_and_apply_vocabulary(
      tokens, num_oov_buckets=NUM_OOV_BUCKETS, vocab_filename=VOCABULARY_NAME)
  token_ids = (ids + 1).to_tensor(default_value=PAD_ID, shape=[None, MAX_TOKENS])
  return {TOKENS_KEY: token_ids, LABEL_KEY: inputs[LABEL_KEY]}


def embedding_input_dim(tf_transform_output) -> int:
  """Ids an Embedding over `token_ids` must take: padding, the words, the unknown bucket."""
  return tf_transform_output.vocabulary_size_by_name(VOCABULARY_NAME) + NUM_OOV_BUCKETS + 1
