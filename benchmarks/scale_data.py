"""Many small synthetic examples, written fast as sharded gzip TFRecords.

Every record has the same layout (a 16x16x1 float image, an int64 label and a
fixed-width example_id), so the serialized tf.train.Example bytes are a constant
template with three slots. A chunk of records is filled in with NumPy in one go, and
only one chunk is in memory at a time; the first record of each file is checked
against one built with the tf.train.Example API.

`write_splits` lays the examples out as ExampleGen's Examples artifact does by default:
`Split-train/` with two thirds of them and `Split-eval/` with the last third, each a
set of gzip shards, example ids unique across both.
"""

import json
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

IMAGE_SHAPE = (16, 16, 1)
NUM_CLASSES = 10
ID_PREFIX = b'img-'
ID_DIGITS = 8  # example ids img-00000000 .. img-99999999
CHUNK = 8192
COMPLETE_FILE = '_COMPLETE'
FILE_PATTERN = 'data_tfrecord-*.gz'
SPLIT_DIR_PREFIX = 'Split-'

# A layout segment: constant bytes, or (slot name, width in bytes).
Segment = Union[bytes, Tuple[str, int]]


def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    byte = value & 0x7F
    value >>= 7
    if value:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _length(segments: Sequence[Segment]) -> int:
  return sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)


def _field(number: int, segments: Sequence[Segment]) -> List[Segment]:
  """A length-delimited protobuf field (wire type 2) holding `segments`."""
  return [_varint(number << 3 | 2) + _varint(_length(segments))] + list(segments)


def _map_entry(key: str, feature: List[Segment]) -> List[Segment]:
  # Features.feature (field 1) is a map<string, Feature>: entries of key=1, value=2.
  return _field(1, _field(1, [key.encode()]) + _field(2, feature))


class RecordLayout:
  """Byte offsets of the image, label and id slots in a serialized tf.train.Example."""

  def __init__(self):
    pixels = int(np.prod(IMAGE_SHAPE))
    id_width = len(ID_PREFIX) + ID_DIGITS
    # Feature: bytes_list=1, float_list=2, int64_list=3; each list's values are field 1
    # (floats and int64s packed; a label below 128 is one varint byte).
    features = (
        _map_entry('image', _field(2, _field(1, [('image', 4 * pixels)])))
        + _map_entry('label', _field(3, _field(1, [('label', 1)])))
        + _map_entry('example_id', _field(1, _field(1, [ID_PREFIX, ('id', ID_DIGITS)]))))
    segments = _field(1, features)  # Example.features
    self.size = _length(segments)
    self.template = np.zeros(self.size, np.uint8)
    self.slots = {}
    offset = 0
    for segment in segments:
      if isinstance(segment, bytes):
        self.template[offset:offset + len(segment)] = np.frombuffer(segment, np.uint8)
        offset += len(segment)
      else:
        self.slots[segment[0]] = (offset, offset + segment[1])
        offset += segment[1]
    assert self.slots['id'][1] - self.slots['id'][0] + len(ID_PREFIX) == id_width

  def encode(self, images: np.ndarray, labels: np.ndarray, first_id: int) -> np.ndarray:
    """(n, size) uint8: row i is the serialized example of images[i], id first_id + i."""
    n = len(labels)
    if labels.min() < 0 or labels.max() > 127:
      raise ValueError('labels must lie in [0, 127] to fit the one-byte label slot')
    rows = np.tile(self.template, (n, 1))
    start, end = self.slots['image']
    rows[:, start:end] = np.ascontiguousarray(
        images.reshape(n, -1), dtype='<f4').view(np.uint8)
    rows[:, self.slots['label'][0]] = labels.astype(np.uint8)
    ids = first_id + np.arange(n, dtype=np.int64)
    powers = 10 ** np.arange(ID_DIGITS - 1, -1, -1, dtype=np.int64)
    start, end = self.slots['id']
    rows[:, start:end] = (ids[:, None] // powers % 10 + ord('0')).astype(np.uint8)
    return rows


def example_id(index: int) -> str:
  return f'{ID_PREFIX.decode()}{index:0{ID_DIGITS}d}'


def reference_example(image: np.ndarray, label: int, index: int) -> tf.train.Example:
  """The same example through the tf.train.Example API, to check the layout."""
  return tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(image, np.float32).reshape(-1))),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[example_id(index).encode()])),
  }))


class ImageMaker:
  """Class-dependent blobs plus noise, 8-bit pixels as floats in [0, 1].

  Chunk `start` is the same however the examples are sharded.
  """

  def __init__(self, seed: int):
    self.seed = seed
    rng = np.random.default_rng(seed)
    self.centres = rng.uniform(0.2, 0.8, size=(NUM_CLASSES, 2))
    self.brightness = rng.uniform(0.5, 1.0, size=NUM_CLASSES)
    height, width = IMAGE_SHAPE[:2]
    self.yy, self.xx = np.mgrid[0:height, 0:width] / float(height - 1)

  def chunk(self, start: int, n: int) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([self.seed, start])
    labels = rng.integers(0, NUM_CLASSES, n)
    d2 = ((self.yy[None] - self.centres[labels, 0, None, None]) ** 2
          + (self.xx[None] - self.centres[labels, 1, None, None]) ** 2)
    blob = (np.exp(-d2 / 0.03) * self.brightness[labels, None, None]).astype(np.float32)
    images = blob + np.float32(0.3) * rng.standard_normal(blob.shape, dtype=np.float32)
    images = np.round(np.clip(images, 0.0, 1.0) * 255.0) / np.float32(255.0)
    return images.astype(np.float32)[..., None], labels


def shard_path(folder: str, shard: int, shards: int) -> str:
  return os.path.join(folder, f'data_tfrecord-{shard:05d}-of-{shards:05d}.gz')


def write_examples(folder: str, n: int, shards: int, seed: int = 0,
                   first_id: int = 0) -> str:
  """Writes n examples as `shards` gzip TFRecord files; returns their glob pattern.

  The examples are those numbered first_id .. first_id + n - 1 (their ids and their
  images). Reuses a folder that a finished earlier call wrote with the same n, shards,
  seed and first_id.
  """
  pattern = os.path.join(folder, FILE_PATTERN)
  marker = os.path.join(folder, COMPLETE_FILE)
  wanted = {'examples': n, 'shards': shards, 'seed': seed, 'first_id': first_id,
            'image_shape': list(IMAGE_SHAPE)}
  if os.path.exists(marker):
    with open(marker) as f:
      if json.load(f) == wanted:
        return pattern
  if shards < 1 or n < shards:
    raise ValueError(f'cannot write {n} examples as {shards} shards; '
                     'give at least one example per shard')
  if first_id < 0 or first_id + n > 10 ** ID_DIGITS:
    raise ValueError(f'example ids {first_id}..{first_id + n - 1} do not fit '
                     f'{ID_DIGITS} digits')
  os.makedirs(folder, exist_ok=True)
  for stale in tf.io.gfile.glob(pattern) + [marker]:
    if os.path.exists(stale):
      os.remove(stale)
  layout, maker = RecordLayout(), ImageMaker(seed)
  options = tf.io.TFRecordOptions(compression_type='GZIP', compression_level=1)
  bounds = first_id + np.linspace(0, n, shards + 1).astype(np.int64)
  for shard in range(shards):
    with tf.io.TFRecordWriter(shard_path(folder, shard, shards), options) as writer:
      checked = False
      for start in range(int(bounds[shard]), int(bounds[shard + 1]), CHUNK):
        count = min(CHUNK, int(bounds[shard + 1]) - start)
        images, labels = maker.chunk(start, count)
        rows = layout.encode(images, labels, start)
        if not checked:
          built = tf.train.Example.FromString(rows[0].tobytes())
          if built != reference_example(images[0], labels[0], start):
            raise AssertionError('the bulk-built example differs from tf.train.Example')
          checked = True
        for row in rows:
          writer.write(row.tobytes())
  with open(marker, 'w') as f:
    json.dump(wanted, f)
  return pattern


def split_sizes(n: int, shards: int) -> Dict[str, Tuple[int, int]]:
  """{split: (examples, shards)}: train the first n - n // 3 examples, eval the last
  n // 3; the shards shared in the same proportion, at least one each."""
  eval_n = n // 3
  train_shards = max(1, min(shards - 1, round(shards * 2 / 3))) if shards > 1 else 1
  eval_shards = max(1, shards - train_shards)
  return {'train': (n - eval_n, min(train_shards, n - eval_n)),
          'eval': (eval_n, min(eval_shards, eval_n))}


def write_splits(folder: str, n: int, shards: int, seed: int = 0) -> Dict[str, str]:
  """Writes n examples as an Examples artifact's splits; returns {split: glob pattern}.

  `Split-train/` and `Split-eval/` under `folder`, sized by `split_sizes`; the eval
  examples are numbered after the train ones, so every id is unique.
  """
  patterns, first = {}, 0
  for split, (count, split_shards) in split_sizes(n, shards).items():
    if count < 1:
      raise ValueError(f'{n} examples leave split {split!r} empty; give at least 3')
    patterns[split] = write_examples(os.path.join(folder, SPLIT_DIR_PREFIX + split), count,
                                     split_shards, seed, first)
    first += count
  return patterns


def training_set(n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """n examples drawn like the written ones (same classes and blobs), to train on."""
  return ImageMaker(seed).chunk(0, n)
