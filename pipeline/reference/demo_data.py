"""Demo data: sklearn's digits as TFRecords, with a known, seeded share of labels flipped.

Each example holds
  * `example_id` (bytes): `digits-<index>`, the row in `sklearn.datasets.load_digits`;
  * `image` (64 floats in [0, 1]): the 8x8 image, pixel values 0..16 divided by 16;
  * `label` (int 0..9): the label the model trains on, flipped for some examples;
  * `label_flipped` (int 0/1): 1 where `label` was changed to another class. The model
    never reads it; the demo uses it to count how many flipped labels the audit found.

Splits go to `<output_dir>/<split>/digits.tfrecord.gz`, ready for ImportExampleGen with
`input_config()`. In every split exactly `round(flip_fraction * n_split)` labels are
flipped, chosen by `seed`, each to a different class drawn uniformly from the other nine.

`extra_flips_to_class` corrupts one class on top of that, as when one labeler mislabels
wholesale: a share of the examples left unflipped outside that class are relabeled as it.
The other examples, labels and flips are the same as without it, so two data sets written
with the same seed differ only in those extra flips.
"""

import dataclasses
import json
import os
from typing import Dict, Optional

import numpy as np

SPLITS = ('train', 'eval')
IMAGE_KEY = 'image'
LABEL_KEY = 'label'
FLIPPED_KEY = 'label_flipped'
EXAMPLE_ID_KEY = 'example_id'
IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10
SUMMARY_FILE = 'demo_data.json'


@dataclasses.dataclass(frozen=True)
class SplitSummary:
  """What was written for one split."""
  examples: int
  flipped: int  # every flipped label, the extra flips included
  path: str
  extra_flipped: int = 0  # labels flipped to `extra_flips_to_class`


def _check_fraction(name: str, value: float, upper_open: bool) -> None:
  if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
    bound = '[0, 1)' if upper_open else '[0, 1]'
    raise ValueError(f'{name}={value!r} must be in {bound}')


def _check_extra_flips(to_class: Optional[int], fraction: float) -> None:
  if to_class is None:
    if fraction:
      raise ValueError(f'extra_flip_fraction={fraction!r} needs extra_flips_to_class, the '
                       'class to flip labels into')
    return
  if isinstance(to_class, bool) or not isinstance(to_class, (int, np.integer)) or not (
      0 <= to_class < NUM_CLASSES):
    raise ValueError(f'extra_flips_to_class={to_class!r} must be a class 0..'
                     f'{NUM_CLASSES - 1}, or None for no extra flips')
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'extra_flip_fraction={fraction!r} must be in (0, 1] with '
                     f'extra_flips_to_class={to_class}')


def write_demo_data(output_dir: str,
                    flip_fraction: float = 0.1,
                    seed: int = 0,
                    eval_fraction: float = 0.25,
                    num_examples: Optional[int] = None,
                    extra_flips_to_class: Optional[int] = None,
                    extra_flip_fraction: float = 0.0) -> Dict[str, SplitSummary]:
  """Writes the digits demo data set; returns a summary per split.

  Args:
    output_dir: folder to write `<split>/digits.tfrecord.gz` and `demo_data.json` into.
    flip_fraction: share of labels flipped to another class in each split, in [0, 1].
    seed: seeds the example order, the split, which labels flip and to what.
    eval_fraction: share of the examples that go to the `eval` split, in (0, 1).
    num_examples: use only this many examples (a seeded sample) to keep tests fast;
      all 1797 when None.
    extra_flips_to_class: a class 0..9 to corrupt: in each split,
      `round(extra_flip_fraction * m)` of the `m` examples whose label was neither flipped
      nor already this class are relabeled as it (chosen by `seed`, `label_flipped` 1).
      None (the default) adds no extra flips.
    extra_flip_fraction: that share, in (0, 1]; only with `extra_flips_to_class`.

  Raises:
    ValueError: a fraction out of range, too few examples for two non-empty splits, an
      extra class that is not 0..9, or an extra flip share without a class.
  """
  # Imported here so that reading this module's constants needs no TensorFlow.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  _check_fraction('flip_fraction', flip_fraction, upper_open=False)
  _check_fraction('eval_fraction', eval_fraction, upper_open=True)
  if eval_fraction == 0.0:
    raise ValueError('eval_fraction=0 leaves the eval split empty; the Evaluator '
                     'needs it - use a value such as 0.25')
  _check_extra_flips(extra_flips_to_class, extra_flip_fraction)
  digits = datasets.load_digits()
  total = len(digits.target)
  n = total if num_examples is None else int(num_examples)
  if not 4 <= n <= total:
    raise ValueError(f'num_examples={num_examples!r}; choose between 4 and {total} '
                     '(the size of sklearn digits), or None for all')
  n_eval = int(round(eval_fraction * n))
  if not 1 <= n_eval < n:
    raise ValueError(f'eval_fraction={eval_fraction} of {n} examples gives an eval '
                     f'split of {n_eval}; both splits need at least one example')

  rng = np.random.default_rng(seed)
  # A generator of its own, so the extra flips leave every other draw as it was.
  extra_rng = np.random.default_rng((seed, 1))
  order = rng.permutation(total)[:n]
  members = {'eval': np.sort(order[:n_eval]), 'train': np.sort(order[n_eval:])}
  summary = {}
  for split in SPLITS:
    rows = members[split]
    labels = digits.target[rows].astype(np.int64)
    flipped = np.zeros(len(rows), dtype=np.int64)
    flipped[rng.permutation(len(rows))[:int(round(flip_fraction * len(rows)))]] = 1
    # An offset of 1..9 modulo 10 always lands on another class, uniformly.
    offsets = rng.integers(1, NUM_CLASSES, size=len(rows))
    labels = np.where(flipped == 1, (labels + offsets) % NUM_CLASSES, labels)
    extra = 0
    if extra_flips_to_class is not None:
      eligible = np.flatnonzero((flipped == 0) & (labels != extra_flips_to_class))
      extra = int(round(extra_flip_fraction * len(eligible)))
      chosen = eligible[extra_rng.permutation(len(eligible))[:extra]]
      labels[chosen] = extra_flips_to_class
      flipped[chosen] = 1
    path = os.path.join(output_dir, split, 'digits.tfrecord.gz')
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as w:
      for row, label, flip in zip(rows, labels, flipped):
        w.write(_example(f'digits-{row:04d}', digits.data[row] / 16.0, label, flip)
                .SerializeToString(deterministic=True))
    summary[split] = SplitSummary(len(rows), int(flipped.sum()), path, extra)
  splits = {k: dataclasses.asdict(v) for k, v in summary.items()}
  recorded = {'seed': seed, 'flip_fraction': flip_fraction, 'splits': splits}
  if extra_flips_to_class is None:  # the file reads as it did before extra flips existed
    for split_summary in splits.values():
      del split_summary['extra_flipped']
  else:
    recorded.update(extra_flips_to_class=extra_flips_to_class,
                    extra_flip_fraction=extra_flip_fraction)
  with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE), 'w') as f:
    json.dump(recorded, f, indent=2, sort_keys=True)
  return summary


def _example(example_id: str, image: np.ndarray, label: int, flipped: int):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  feature = tf.train.Feature
  return tf.train.Example(features=tf.train.Features(feature={
      EXAMPLE_ID_KEY: feature(bytes_list=tf.train.BytesList(value=[example_id.encode()])),
      IMAGE_KEY: feature(float_list=tf.train.FloatList(
          value=np.asarray(image, np.float32).tolist())),
      LABEL_KEY: feature(int64_list=tf.train.Int64List(value=[int(label)])),
      FLIPPED_KEY: feature(int64_list=tf.train.Int64List(value=[int(flipped)])),
  }))


def input_config():
  """ImportExampleGen's `input_config` for the folder `write_demo_data` wrote."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  return tfx.proto.Input(splits=[
      tfx.proto.Input.Split(name=split, pattern=f'{split}/*') for split in SPLITS])
