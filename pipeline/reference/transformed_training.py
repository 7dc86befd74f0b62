"""What the Trainer module files behind Transform share: reading, training, serving.

A Trainer module file of a pipeline with Transform (pipeline.reference.tabular_trainer,
pipeline.reference.text_trainer) builds a Keras model whose inputs are named after Transform's
outputs, and calls `train_and_save`, which
  * trains it on Transform's `transformed_examples` (`fn_args.train_files`,
    `fn_args.eval_files`), the label read from the transformed `label`;
  * saves the checkpoints VarianceOfGradients scores with (`VogCheckpointCallback`):
    full Keras models over the transformed inputs, so the audit applies the same
    transform graph to the raw examples before it takes gradients;
  * saves the serving model, whose `serving_default` signature takes serialized RAW
    tf.Examples (input `examples`), parses the raw features the transform reads, applies
    `tf_transform_output.transform_features_layer()` and returns `probabilities`. The
    stock Evaluator therefore runs it on VarianceOfGradients' `scored_examples` (raw
    features plus vog_* fields) unchanged, and a serving client sends what ExampleGen
    reads.
"""

import os

# TFX 1.16 expects Keras 2 (tf-keras); this must precede the TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

from typing import Any, Callable, Dict, Sequence  # pylint: disable=g-import-not-at-top

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top

from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top
from pipeline.reference.trainer_module import example_files, training_settings  # pylint: disable=g-import-not-at-top

LABEL_KEY = 'label'
OUTPUT_KEY = 'probabilities'


def compiled_classifier(inputs, features: tf.Tensor, num_classes: int, name: str,
                        learning_rate: float) -> tf.keras.Model:
  """A softmax head (output OUTPUT_KEY) on `features`, compiled with Adam at
  `learning_rate` and sparse cross-entropy, reporting SparseCategoricalAccuracy."""
  output = tf.keras.layers.Dense(num_classes, activation='softmax', name=OUTPUT_KEY)(features)
  model = tf.keras.Model(inputs, output, name=name)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                loss='sparse_categorical_crossentropy',
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model


def transformed_dataset(patterns, tf_transform_output, input_names: Sequence[str],
                        batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
  """Batches of ({input: tensor}, label (b, 1)) from Transform's gzipped outputs.

  Raises:
    ValueError: no file matches, or an input the transformed data does not hold.
  """
  spec = tf_transform_output.transformed_feature_spec()
  missing = sorted(set(input_names) - set(spec))
  if missing or LABEL_KEY not in spec:
    raise ValueError(f'Transform output lacks {missing or [LABEL_KEY]}; the model reads '
                     f'{sorted(input_names)} and {LABEL_KEY!r}, Transform writes '
                     f'{sorted(spec)} - keep preprocessing_fn and the model in step')
  wanted = {k: spec[k] for k in list(input_names) + [LABEL_KEY]}

  def parse(records):
    parsed = tf.io.parse_example(records, wanted)
    label = parsed.pop(LABEL_KEY)
    return parsed, label

  dataset = tf.data.TFRecordDataset(example_files(patterns, 'Transform'), compression_type='GZIP')
  if shuffle_seed is not None:
    dataset = dataset.shuffle(4096, seed=shuffle_seed, reshuffle_each_iteration=True)
  return dataset.batch(batch_size).map(parse).prefetch(tf.data.AUTOTUNE)


def serving_signature(model: tf.keras.Model, tf_transform_output,
                      raw_features: Sequence[str]):
  """serving_default: serialized raw tf.Examples in, class probabilities out.

  Only `raw_features` are parsed: the label, `example_id`, `label_flipped` and the
  vog_* fields may be present or not.
  """
  raw_spec = tf_transform_output.raw_feature_spec()
  missing = sorted(set(raw_features) - set(raw_spec))
  if missing:
    raise ValueError(f'raw features {missing} are not in the schema Transform read '
                     f'({sorted(raw_spec)})')
  spec = {k: raw_spec[k] for k in raw_features}
  # Tracked by the model, so the transform graph and its vocabularies are saved with it.
  model.tft_layer = tf_transform_output.transform_features_layer()
  names = list(model.input_names)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_tf_examples(examples):
    transformed = model.tft_layer(tf.io.parse_example(examples, spec))
    return {OUTPUT_KEY: model({k: transformed[k] for k in names}, training=False)}

  return serve_tf_examples


def train_and_save(fn_args, build_model: Callable[[Any, float], tf.keras.Model],
                   raw_features: Sequence[str]) -> Dict[str, Any]:
  """Trains `build_model(tf_transform_output, learning_rate)` and saves everything.

  Reads `fn_args.custom_config` (see pipeline.reference.trainer_module.training_settings),
  `fn_args.transform_output`, `fn_args.train_files` / `eval_files` (transformed
  examples); writes checkpoints and their manifest under
  `fn_args.model_run_dir/vog_checkpoints/` and the serving SavedModel to
  `fn_args.serving_model_dir`. Returns the settings it trained with.

  Raises:
    ValueError: a bad custom_config value, or the Trainer not wired to Transform
      (no transform graph).
  """
  settings = training_settings(fn_args.custom_config)
  if not getattr(fn_args, 'transform_output', None):
    raise ValueError('the Trainer has no transform graph; give it '
                     "transform_graph=transform.outputs['transform_graph'] and "
                     "examples=transform.outputs['transformed_examples']")
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  tf.keras.utils.set_random_seed(settings['seed'])
  model = build_model(tf_transform_output, settings['learning_rate'])
  names = list(model.input_names)
  model.fit(
      transformed_dataset(fn_args.train_files, tf_transform_output, names,
                          settings['batch_size'], settings['seed']),
      validation_data=transformed_dataset(fn_args.eval_files, tf_transform_output, names,
                                          256),
      epochs=settings['epochs'],
      verbose=2,
      callbacks=[VogCheckpointCallback(fn_args.model_run_dir,
                                       max_checkpoints=settings['max_checkpoints'])])
  # The transform layer joins the model only now: the checkpoints stay plain Keras files.
  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures={'serving_default': serving_signature(
                 model, tf_transform_output, raw_features)})
  return settings
