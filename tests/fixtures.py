"""Small real data and real checkpoints for the component tests."""

import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
from sklearn import datasets

from components.vog.report import score_table
from components.vog.inputs.checkpoints import VogCheckpointCallback


def digits(n: int, seed: int = 0, flip_rate: float = 0.0):
  """(images (n, 8, 8, 1) in [0, 1], labels, flipped mask) from sklearn's digits."""
  data = datasets.load_digits()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(data.target))[:n]
  images = (data.images[order] / 16.0).astype(np.float32)[..., None]
  labels = data.target[order].astype(np.int64)
  flipped = np.zeros(n, dtype=bool)
  flipped[rng.permutation(n)[:int(round(flip_rate * n))]] = True
  labels[flipped] = (labels[flipped] + rng.integers(1, 10, flipped.sum())) % 10
  return images, labels, flipped


def example(image: np.ndarray, label, example_id: str = None, **extra) -> tf.train.Example:
  feature = {'image': tf.train.Feature(float_list=tf.train.FloatList(
      value=np.asarray(image, np.float32).reshape(-1).tolist()))}
  if label is not None:
    feature['label'] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))
  if example_id is not None:
    feature['example_id'] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[example_id.encode()]))
  for key, value in extra.items():
    feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


def write_records(path: str, records: Sequence[bytes], gzip: bool = True) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  options = tf.io.TFRecordOptions(compression_type='GZIP' if gzip else '')
  with tf.io.TFRecordWriter(path, options) as writer:
    for record in records:
      writer.write(record)
  return path


def write_examples_artifact(uri: str, splits: Dict[str, List[bytes]]) -> Dict[str, str]:
  """Writes an Examples artifact layout (Split-<name>/data_tfrecord-...gz)."""
  patterns = {}
  for split, records in splits.items():
    write_records(os.path.join(uri, f'Split-{split}', 'data_tfrecord-00000-of-00001.gz'),
                  records)
    patterns[split] = os.path.join(uri, f'Split-{split}', '*')
  return patterns


def write_split(uri: str, split: str, shards: Sequence[Sequence[bytes]]) -> str:
  """Writes one split of an Examples artifact as gzip shards (data_tfrecord-k-of-n.gz),
  one per list of records; returns its file pattern."""
  for i, records in enumerate(shards):
    write_records(os.path.join(uri, f'Split-{split}',
                               f'data_tfrecord-{i:05d}-of-{len(shards):05d}.gz'), records)
  return os.path.join(uri, f'Split-{split}', '*')


def score_rows(report_dir: str) -> Dict[tuple, Dict[str, object]]:
  """{(split, example_id): its VoG fields} from a report's score table, the scores of
  every split whether its examples were copied or not. Copies of one id keep the last."""
  table = score_table.read_table(report_dir).to_pydict()
  rows = {}
  for i, (split, example_id) in enumerate(zip(table['split'], table['example_id'])):
    rows[(split, example_id)] = {
        'vog_raw': table['vog_raw'][i], 'vog_score': table['vog_score'][i],
        'vog_percentile': table['vog_percentile'][i], 'vog_bucket': table['vog_bucket'][i],
        'vog_flagged': table['vog_flagged'][i]}
  return rows


def small_cnn(seed: int = 0) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inp = tf.keras.Input((8, 8, 1), name='image')
  x = tf.keras.layers.Conv2D(8, 3, activation='relu')(inp)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(32, activation='relu')(x)
  out = tf.keras.layers.Dense(10, activation='softmax')(x)
  model = tf.keras.Model(inp, out)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                loss='sparse_categorical_crossentropy', metrics=['accuracy'])
  return model


def train_checkpoints(model_run_dir: str, images, labels, epochs: int = 4,
                      max_checkpoints: int = 10, seed: int = 0) -> tf.keras.Model:
  model = small_cnn(seed)
  model.fit(images, labels, epochs=epochs, batch_size=64, verbose=0,
            callbacks=[VogCheckpointCallback(model_run_dir, max_checkpoints)])
  return model
