"""What the generated reference data sets share: splits, seeded label flips, TFRecords.

`pipeline.reference.tabular_data` and `pipeline.reference.text_data` build their rows
and true labels, then hand them to `write_splits`, which splits them into `train` and
`eval`, flips an exact, seeded share of the labels in each split to another class
(recorded in `label_flipped`, which no model reads), and writes
`<output_dir>/<split>/<name>.tfrecord.gz` plus the summary file `demo_data.json`, laid
out as pipeline.reference.demo_data lays out the digits, so that ImportExampleGen reads
them with `demo_data.input_config()`.

A data set may plant a slice: half of each split's flips (PLANTED_SHARE) are drawn from
the rows of one value of one feature, so the audit's slice statistics have something to
find. The flip count stays exact and each flip still goes to another class drawn
uniformly.
"""

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from pipeline.reference import demo_data

SPLITS = demo_data.SPLITS
LABEL_KEY = demo_data.LABEL_KEY
FLIPPED_KEY = demo_data.FLIPPED_KEY
EXAMPLE_ID_KEY = demo_data.EXAMPLE_ID_KEY
SUMMARY_FILE = demo_data.SUMMARY_FILE
SplitSummary = demo_data.SplitSummary
# The share of each split's flips drawn from the planted slice's rows (as far as it has
# rows): the wrong labels gather there, as when one source or labeler is careless.
PLANTED_SHARE = 0.5

# A row's raw features: name -> a float, an int or text (one value each).
Row = Mapping[str, Any]


def check_sizes(num_examples: int, flip_fraction: float, eval_fraction: float,
                smallest: int = 20) -> None:
  """Refuses sizes and shares `write_splits` cannot honour, naming the setting.

  Raises:
    ValueError: fewer than `smallest` examples, a flip share outside [0, 1], or an eval
      share outside (0, 1).
  """
  if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) or (
      num_examples < smallest):
    raise ValueError(f'num_examples={num_examples!r}; give a whole number of at least '
                     f'{smallest}')
  if not 0.0 <= flip_fraction <= 1.0:
    raise ValueError(f'flip_fraction={flip_fraction!r} must be in [0, 1], e.g. 0.1')
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f'eval_fraction={eval_fraction!r} must be in (0, 1), e.g. 0.25; the '
                     'Evaluator needs an eval split and the Trainer a train split')


def feature(value: Any):
  """One tf.train.Feature holding `value`: float, int or text (str or bytes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if isinstance(value, (bool, np.bool_)):
    raise ValueError(f'feature value {value!r} is a bool; write it as 0 or 1')
  if isinstance(value, (int, np.integer)):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
  if isinstance(value, (float, np.floating)):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
  if isinstance(value, str):
    value = value.encode('utf-8')
  if isinstance(value, bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
  raise ValueError(f'feature value {value!r} is a {type(value).__name__}; write a float, '
                   'an int or text')


def write_generated(output_dir: str, name: str, generate_rows, num_classes: int,
                    class_names: Sequence[str], flip_fraction: float, seed: int,
                    num_examples: int, eval_fraction: float,
                    planted: Optional[Tuple[str, Callable[[Row], bool]]] = None,
                    planted_share: float = PLANTED_SHARE) -> Dict[str, SplitSummary]:
  """Checks the sizes, draws `generate_rows(num_examples, seed) -> (rows, labels)` and
  writes them with `write_splits`, recording the class names and size. `planted` is
  (its description, whether a row is in the planted slice): `planted_share` of each
  split's flips are drawn from its rows."""
  check_sizes(num_examples, flip_fraction, eval_fraction)
  if not 0.0 <= planted_share <= 1.0:
    raise ValueError(f'planted_share={planted_share!r} must be in [0, 1], e.g. '
                     f'{PLANTED_SHARE}; 0 spreads the flips evenly')
  rows, labels = generate_rows(num_examples, seed)
  extra = {'class_names': list(class_names), 'num_examples': num_examples}
  members = None
  if planted is not None and planted_share > 0:
    description, is_member = planted
    members = np.array([bool(is_member(row)) for row in rows], dtype=bool)
    extra.update(planted_slice=description, planted_share=planted_share)
  return write_splits(output_dir, name, rows, labels, num_classes, flip_fraction, seed,
                      eval_fraction, extra=extra, planted=members,
                      planted_share=planted_share)


def write_splits(output_dir: str, name: str, rows: Sequence[Row], labels: np.ndarray,
                 num_classes: int, flip_fraction: float, seed: int,
                 eval_fraction: float = 0.25,
                 extra: Optional[Mapping[str, Any]] = None,
                 planted: Optional[np.ndarray] = None,
                 planted_share: float = PLANTED_SHARE) -> Dict[str, SplitSummary]:
  """Splits, flips and writes `rows`; returns what was written per split.

  Args:
    output_dir: gets `<split>/<name>.tfrecord.gz` and `demo_data.json`.
    name: the data set's name: example ids are `<name>-<row index>`.
    rows: the raw features of each example (without id, label or flip).
    labels: the true class 0..num_classes-1 of each row.
    num_classes: how many classes there are (a flipped label is another of them).
    flip_fraction: share of labels flipped in each split: exactly
      `round(flip_fraction * n_split)`, each to another class drawn uniformly.
    seed: seeds the split, which labels flip and to what.
    eval_fraction: share of rows in `eval`.
    extra: more entries for `demo_data.json` (the generator's settings).
    planted: which rows are in the planted slice (booleans, one per row), or None:
      then `round(planted_share * flips)` of each split's flips are drawn from the
      slice's rows of that split (all of them where it has fewer), the rest from the
      other rows; None draws every flip from the whole split.
    planted_share: that share, in [0, 1].

  Raises:
    ValueError: sizes that leave a split empty, or labels outside the classes.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels, dtype=np.int64)
  if len(labels) != len(rows):
    raise ValueError(f'{len(rows)} rows but {len(labels)} labels; give one label per row')
  if len(labels) and not (labels.min() >= 0 and labels.max() < num_classes):
    raise ValueError(f'labels must be classes 0..{num_classes - 1}; got '
                     f'{labels.min()}..{labels.max()}')
  n = len(rows)
  if planted is not None:
    planted = np.asarray(planted, dtype=bool)
    if planted.shape != (n,):
      raise ValueError(f'planted has {planted.size} entries for {n} rows; give one per row')
  n_eval = int(round(eval_fraction * n))
  if not 1 <= n_eval < n:
    raise ValueError(f'eval_fraction={eval_fraction} of {n} examples gives an eval split '
                     f'of {n_eval}; both splits need at least one example')
  rng = np.random.default_rng((seed, 2))
  order = rng.permutation(n)
  members = {'eval': np.sort(order[:n_eval]), 'train': np.sort(order[n_eval:])}
  summary = {}
  for split in SPLITS:
    index = members[split]
    given = labels[index].copy()
    flipped = np.zeros(len(index), dtype=np.int64)
    count = int(round(flip_fraction * len(index)))
    if planted is None:
      flipped[rng.permutation(len(index))[:count]] = 1
    else:
      inside = np.flatnonzero(planted[index])
      outside = np.flatnonzero(~planted[index])
      there = min(len(inside), int(round(planted_share * count)))
      there = max(there, count - len(outside))  # the slice takes what the rest cannot
      flipped[inside[rng.permutation(len(inside))[:there]]] = 1
      flipped[outside[rng.permutation(len(outside))[:count - there]]] = 1
    # An offset of 1..num_classes-1 always lands on another class, uniformly.
    offsets = rng.integers(1, num_classes, size=len(index))
    given = np.where(flipped == 1, (given + offsets) % num_classes, given)
    path = os.path.join(output_dir, split, f'{name}.tfrecord.gz')
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as w:
      for row, label, flip in zip(index, given, flipped):
        features = {key: feature(value) for key, value in rows[row].items()}
        features[EXAMPLE_ID_KEY] = feature(f'{name}-{row:05d}')
        features[LABEL_KEY] = feature(int(label))
        features[FLIPPED_KEY] = feature(int(flip))
        example = tf.train.Example(features=tf.train.Features(feature=features))
        w.write(example.SerializeToString(deterministic=True))
    summary[split] = SplitSummary(len(index), int(flipped.sum()), path)
  recorded = {'dataset': name, 'seed': seed, 'flip_fraction': flip_fraction,
              'splits': {k: {'examples': v.examples, 'flipped': v.flipped, 'path': v.path}
                         for k, v in summary.items()}}
  recorded.update(extra or {})
  with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE), 'w') as f:
    json.dump(recorded, f, indent=2, sort_keys=True)
  return summary

