"""Transform module file of the tabular reference pipeline: z-scores and category ids.

`preprocessing_fn` turns the raw columns of pipeline.reference.tabular_data into model inputs:
  * `numeric` (float32, shape (6,)): each numeric column scaled to zero mean and unit
    variance over the whole data set (`tft.scale_to_z_score`), in NUMERIC_KEYS order;
  * `<column>_id` (int64, shape (1,)) for each categorical column: its vocabulary id from
    `tft.compute_and_apply_vocabulary`, 0..V-1 for values seen in the data, V for one
    bucket of values never seen. Every id is a real category (there is no padding), so
    the model's Embedding layers take `mask_zero=False`; `embedding_input_dim` gives
    their sizes.
`label` passes through unchanged. `example_id` and `label_flipped` are not model inputs
and are dropped.
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top

# The raw columns, as pipeline.reference.tabular_data writes them (kept here so the module file
# stands alone when TFX packages it).
NUMERIC_KEYS = ('age', 'income_k', 'monthly_spend', 'visits_per_month', 'tenure_years',
                'support_calls')
CATEGORICAL_KEYS = ('region', 'device', 'channel')
LABEL_KEY = 'label'
NUMERIC_FEATURE = 'numeric'
NUM_OOV_BUCKETS = 1


def id_feature(column: str) -> str:
  """The transformed feature holding `column`'s category ids."""
  return f'{column}_id'


def vocabulary_name(column: str) -> str:
  """The Transform vocabulary file of `column`."""
  return f'{column}_vocabulary'


def _dense(value, default):
  """A (batch, 1) dense tensor from a dense or sparse one-value-per-example feature."""
  if isinstance(value, tf.SparseTensor):
    value = tf.sparse.to_dense(value, default_value=default)
  return tf.reshape(value, [-1, 1])


def preprocessing_fn(inputs):
  """Raw columns -> {'numeric': (batch, 6) float32, '<column>_id': (batch, 1) int64,
  'label': (batch, 1) int64}."""
  numeric = [tft.scale_to_z_score(tf.cast(_dense(inputs[key], 0.0), tf.float32))
             for key in NUMERIC_KEYS]
  outputs = {NUMERIC_FEATURE: tf.concat(numeric, axis=1), LABEL_KEY: inputs[LABEL_KEY]}
  for column in CATEGORICAL_KEYS:
    outputs[id_feature(column)] = tft.compute_and_apply_vocabulary(
        _dense(inputs[column], ''), num_oov_buckets=NUM_OOV_BUCKETS,
        vocab_filename=vocabulary_name(column))
  return outputs


def embedding_input_dim(tf_transform_output, column: str) -> int:
  """Ids an Embedding over `<column>_id` must take: the values seen, the unknown bucket."""
  return tf_transform_output.vocabulary_size_by_name(vocabulary_name(column)) + NUM_OOV_BUCKETS
