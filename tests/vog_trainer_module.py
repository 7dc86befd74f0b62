"""A Trainer module file for the component tests: a small digits CNN with VoG checkpoints."""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top

EPOCHS = 3


def _dataset(file_pattern, batch_size):
  files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else [
      f for p in file_pattern for f in tf.io.gfile.glob(p)]
  spec = {'image': tf.io.FixedLenFeature([64], tf.float32),
          'label': tf.io.FixedLenFeature([1], tf.int64)}

  def parse(record):
    parsed = tf.io.parse_single_example(record, spec)
    return {'image': tf.reshape(parsed['image'], (8, 8, 1))}, parsed['label']

  return (tf.data.TFRecordDataset(files, compression_type='GZIP')
          .map(parse).batch(batch_size))


def run_fn(fn_args):
  tf.keras.utils.set_random_seed(0)
  inp = tf.keras.Input((8, 8, 1), name='image')
  x = tf.keras.layers.Conv2D(8, 3, activation='relu')(inp)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(32, activation='relu')(x)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(10, activation='softmax')(x))
  model.compile(tf.keras.optimizers.Adam(0.01), 'sparse_categorical_crossentropy',
                metrics=['accuracy'])
  model.fit(_dataset(fn_args.train_files, 32), epochs=EPOCHS, verbose=0,
            validation_data=_dataset(fn_args.eval_files, 64),
            callbacks=[VogCheckpointCallback(fn_args.model_run_dir)])
  model.save(fn_args.serving_model_dir)
