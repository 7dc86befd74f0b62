"""What the flagged examples have in common: slice statistics in the audit's pipeline.

    ({'batches': (split, RecordBatch), 'pairs': GroupCounts})
        | FindWhatFlaggedExamplesShare -> the path of <work_dir>/slices.json

Per split, for every feature value (a categorical value, a range of a numeric feature,
a token of a text feature) and every pair given label -> predicted class, the share of
the flagged examples and of the `hard` bucket that hold it, against the split's share,
with its lift and a one-sided hypergeometric p-value adjusted by Benjamini-Hochberg over
every (value, group) for which counts were available (compute/slice_stats.py). A value
is tested in a group only when at least `min_support` of the group's examples hold it;
at most `max_rows` rows are kept per split, best first.

Where the counts come from:

* the writers of the copied splits (`copy_splits`) decode the records they read anyway
  into Arrow RecordBatches of at most CHUNK_ROWS rows (`record_batch`), leaving out the
  audit's own fields (vog_*, audit_*), the label and the example id, and add each
  example's bucket and flag; no input file is read a second time and no record
  crosses a shuffle.
* TFDV's GenerateStatistics, run on each copied split's batches and sliced by a slice
  function into the flagged and the hard examples (TFDV's default slice is the whole
  split), gives the categorical values (its rank histogram, from its Misra-Gries top-k
  sketch, TOP_VALUES values per slice) and the numeric ranges (its quantile histogram
  of QUANTILE_BUCKETS buckets: the split is cut at its deciles, and each group's count
  in a range is read off the group's own histogram by interpolation).
* TFDV counts no tokens, so `CountTokens` (a CombineFn) does: for every bytes feature
  the whitespace-separated tokens of each example, and for every integer feature the
  ids of each example, each counted once per example, in HeavyHitters sketches of
  `capacity` counters per feature and group. A bytes feature is text when at least
  half of its values hold several tokens or an example holds several values; an
  integer feature holds token ids when an example holds several values.
* `CountLabelPairs` (a CombineFn) adds, for every split, the (label, predicted class)
  counts each writer counted from its ScoredBatch columns (`unit_group_counts`), in
  HeavyHitters sketches too, with the split's sizes.

Memory is bounded whatever the number of distinct values: TFDV's top-k is a sketch, its
quantiles a sketch, and each accumulator here holds at most 3 x `capacity` counters per
feature and the label pairs' 3 x `capacity`. A count from a sketch is a bound (the
group's a lower bound, the split's an upper bound), a range count from a histogram an
estimate, and such rows say `approximate`; with fewer distinct values than the
capacity the token and label pair counts are exact.

One output element: the path written, once every part is counted (a later step waits on
it). Uses Beam, TFDV and tfx_bsl; the math is compute/slice_stats.py.
"""

import json
import os
from typing import (Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple)

from absl import logging
import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.vog import vocabulary as vocab
from components.vog.compute import slice_stats
from components.vog.inputs import record_files

SLICES_FILE = vocab.SLICES_FILE
FORMAT_VERSION = 1
CHUNK_ROWS = 1024  # rows per RecordBatch the writers yield
TOP_VALUES = 1000  # values per slice in TFDV's rank histogram
QUANTILE_BUCKETS = 100  # buckets of TFDV's quantile histograms
MAX_TOKEN_BYTES = 100  # a longer token or value is cut to this many bytes
AUDIT_PREFIXES = ('vog_', 'audit_')
LABEL_PAIR_FEATURE = 'label -> predicted'
# The two columns the writers add for the slice function (dropped from the input first).
BUCKET_COLUMN = vocab.VOG_BUCKET
FLAGGED_COLUMN = vocab.VOG_FLAGGED
HARD_INDEX = vocab.BUCKETS.index(vocab.HARD)
_TFDV_ALL = 'All Examples'  # TFDV's default slice: the whole split
COUNTER_NAMESPACE = 'vog_audit_slices'  # apart from the audit's own counters


def sliceable(name: str, leave_out: Sequence[str]) -> bool:
  """Whether a feature is sliced: not one the audit adds, nor one left out."""
  return not name.startswith(AUDIT_PREFIXES) and name not in leave_out


_DECODER = None


def _decoder():
  global _DECODER
  if _DECODER is None:
    from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
    _DECODER = example_coder.ExamplesToRecordBatchDecoder()
  return _DECODER


def record_batch(records: Sequence[bytes], bucket: np.ndarray, flagged: np.ndarray,
                 leave_out: Sequence[str]) -> pa.RecordBatch:
  """The serialized tf.Examples `records` as one RecordBatch of their sliceable
  features, plus BUCKET_COLUMN (index into vocabulary.BUCKETS) and FLAGGED_COLUMN (0/1)
  as one-value lists. A record that is no tf.Example counts as one without features."""
  try:
    decoded = _decoder().DecodeBatch(list(records))
  except Exception:  # pylint: disable=broad-except
    decoded = _decode_one_by_one(records)
  names = [n for n in decoded.schema.names if sliceable(n, leave_out)]
  columns = [decoded.column(decoded.schema.get_field_index(n)) for n in names]
  offsets = pa.array(np.arange(len(records) + 1, dtype=np.int64))
  for values in (bucket, flagged):
    columns.append(pa.LargeListArray.from_arrays(
        offsets, pa.array(np.asarray(values, dtype=np.int64))))
  return pa.RecordBatch.from_arrays(columns, names + [BUCKET_COLUMN, FLAGGED_COLUMN])


def _decode_one_by_one(records: Sequence[bytes]) -> pa.RecordBatch:
  """Decodes what decodes on its own; records that do not count as empty Examples, and
  a chunk whose records disagree on a feature's type as Examples without features."""
  good = []
  for record in records:
    try:
      _decoder().DecodeBatch([record])
      good.append(record)
    except Exception:  # pylint: disable=broad-except
      _not_decoded(1)
      good.append(b'')  # an Example without features
  try:
    return _decoder().DecodeBatch(good)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('slice statistics leave out the features of %d records: %s',
                    len(good), e)
    _not_decoded(len(good))
    return _decoder().DecodeBatch([b''] * len(good))


def _not_decoded(count: int) -> None:
  beam.metrics.Metrics.counter(COUNTER_NAMESPACE, 'records_not_decoded').inc(count)


def record_batches(records: Iterable[Tuple[bytes, int, int]], leave_out: Sequence[str],
                   rows: int = CHUNK_ROWS) -> Iterable[pa.RecordBatch]:
  """(serialized, bucket index, flagged) of examples -> RecordBatches of at most `rows`."""
  items = list(records)
  for start in range(0, len(items), rows):
    serialized, bucket, flagged = zip(*items[start:start + rows])
    yield record_batch(serialized, np.array(bucket), np.array(flagged), leave_out)


class GroupCounts(NamedTuple):
  """One writer's counts for a split: its scored examples, flagged and hard, and per
  pair (label, predicted class), label != predicted, the same three counts."""
  split: str
  examples: int
  flagged: int
  hard: int
  pairs: Dict[Tuple[int, int], Tuple[int, int, int]]


def unit_group_counts(split: str, label: np.ndarray, predicted: np.ndarray,
                      flagged: np.ndarray, hard: np.ndarray) -> GroupCounts:
  """GroupCounts of a writer's examples from their columns (label -1: none)."""
  label, predicted = np.asarray(label, np.int64), np.asarray(predicted, np.int64)
  flagged, hard = np.asarray(flagged).astype(bool), np.asarray(hard).astype(bool)
  pairs: Dict[Tuple[int, int], Tuple[int, int, int]] = {}
  off = (label >= 0) & (label != predicted)
  if off.any():
    keys, inverse = np.unique(np.stack([label[off], predicted[off]], axis=1), axis=0,
                              return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.stack([np.bincount(inverse, minlength=len(keys)),
                       np.bincount(inverse, weights=flagged[off], minlength=len(keys)),
                       np.bincount(inverse, weights=hard[off], minlength=len(keys))], 1)
    for (a, b), row in zip(keys.tolist(), counts.astype(np.int64).tolist()):
      pairs[(a, b)] = tuple(row)
  return GroupCounts(split, len(label), int(flagged.sum()), int(hard.sum()), pairs)


class Sketches(NamedTuple):
  """Three HeavyHitters sketches of one feature (or of the label pairs): the split's,
  the flagged examples' and the hard examples'."""
  split: slice_stats.HeavyHitters
  flagged: slice_stats.HeavyHitters
  hard: slice_stats.HeavyHitters

  @staticmethod
  def empty(capacity: int) -> 'Sketches':
    return Sketches(*(slice_stats.HeavyHitters(capacity) for _ in range(3)))

  def merge(self, other: 'Sketches') -> 'Sketches':
    for mine, theirs in zip(self, other):
      mine.merge(theirs)
    return self

  def size(self) -> int:
    return sum(len(s) for s in self)


class LabelPairs:
  """CountLabelPairs' accumulator: a split's sizes and its label pairs' Sketches."""

  def __init__(self, capacity: int):
    self.examples = self.flagged = self.hard = 0
    self.sketches = Sketches.empty(capacity)


class CountLabelPairs(beam.CombineFn):
  """GroupCounts of a split's writers -> LabelPairs (bounded by 3 x capacity)."""

  def __init__(self, capacity: int = slice_stats.SKETCH_CAPACITY):
    self._capacity = capacity

  def create_accumulator(self):
    return LabelPairs(self._capacity)

  def add_input(self, acc, counts: GroupCounts):
    acc.examples += counts.examples
    acc.flagged += counts.flagged
    acc.hard += counts.hard
    for j, sketch in enumerate(acc.sketches):
      sketch.add({pair: c[j] for pair, c in counts.pairs.items()})
    return acc

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    out = next(accumulators)
    for acc in accumulators:
      out.examples += acc.examples
      out.flagged += acc.flagged
      out.hard += acc.hard
      out.sketches.merge(acc.sketches)
    return out

  def extract_output(self, acc):
    return acc


class FeatureTokens:
  """A feature's token Sketches and what says whether it is text: how many values,
  how many of them of several tokens, how many examples of several values."""

  def __init__(self, capacity: int, is_bytes: bool):
    self.is_bytes = is_bytes
    self.sketches = Sketches.empty(capacity)
    self.values = self.multi_token_values = self.multi_valued_rows = 0

  def merge(self, other: 'FeatureTokens') -> 'FeatureTokens':
    self.sketches.merge(other.sketches)
    self.values += other.values
    self.multi_token_values += other.multi_token_values
    self.multi_valued_rows += other.multi_valued_rows
    return self

  @property
  def is_tokens(self) -> bool:
    if self.multi_valued_rows:
      return True
    return self.is_bytes and self.values > 0 and 2 * self.multi_token_values >= self.values


def _tokens_of(value: bytes) -> List[bytes]:
  return [t[:MAX_TOKEN_BYTES] for t in value.split()]


def _token_counts(column: pa.Array, feature: FeatureTokens, flagged: np.ndarray,
                  hard: np.ndarray) -> List[Dict[Any, int]]:
  """Each example's distinct whitespace tokens of a bytes feature, counted in the split,
  the flagged and the hard examples; `feature`'s text evidence updated on the way."""
  counts: List[Dict[Any, int]] = [{}, {}, {}]
  for row, values in enumerate(column.to_pylist()):
    if not values:
      continue
    if len(values) > 1:
      feature.multi_valued_rows += 1
    tokens = set()
    for value in values:
      if value is None:
        continue
      if isinstance(value, str):
        value = value.encode('utf-8')
      found = _tokens_of(value)
      feature.values += 1
      feature.multi_token_values += len(found) > 1
      tokens.update(found)
    for token in tokens:
      counts[0][token] = counts[0].get(token, 0) + 1
      if flagged[row]:
        counts[1][token] = counts[1].get(token, 0) + 1
      if hard[row]:
        counts[2][token] = counts[2].get(token, 0) + 1
  return counts


def _id_counts(column: pa.Array, feature: FeatureTokens, flagged: np.ndarray,
               hard: np.ndarray) -> List[Dict[Any, int]]:
  """Each example's distinct ids of an integer feature, counted in the split, the flagged
  and the hard examples, on the column's arrays; `feature`'s evidence updated."""
  lengths = np.asarray(pc.list_value_length(column).fill_null(0), dtype=np.int64)
  items = column.flatten()
  rows = np.repeat(np.arange(len(column), dtype=np.int64), lengths)
  present = items.is_valid().to_numpy(zero_copy_only=False)
  ids = np.asarray(items.drop_null().to_numpy(zero_copy_only=False))
  rows = rows[present]
  feature.multi_valued_rows += int((lengths > 1).sum())
  feature.values += len(ids)
  order = np.lexsort((ids, rows))
  rows, ids = rows[order], ids[order]
  first = np.ones(len(rows), dtype=bool)  # an id counts once per example
  first[1:] = (rows[1:] != rows[:-1]) | (ids[1:] != ids[:-1])
  rows, ids = rows[first], ids[first]
  counts = []
  for chosen in (np.ones(len(rows), dtype=bool), flagged[rows], hard[rows]):
    keys, found = np.unique(ids[chosen], return_counts=True)
    counts.append(dict(zip(keys.tolist(), found.tolist())))
  return counts


class CountTokens(beam.CombineFn):
  """RecordBatches of a split -> {feature: FeatureTokens}: each example's distinct
  tokens of every bytes feature and ids of every integer feature, counted for the
  split, the flagged and the hard examples (at most 3 x capacity counters a feature)."""

  def __init__(self, capacity: int = slice_stats.SKETCH_CAPACITY):
    self._capacity = capacity

  def create_accumulator(self) -> Dict[str, FeatureTokens]:
    return {}

  def add_input(self, acc, batch: pa.RecordBatch):
    names = batch.schema.names
    flagged = _int_column(batch, FLAGGED_COLUMN).astype(bool)
    hard = _int_column(batch, BUCKET_COLUMN) == HARD_INDEX
    for name, column in zip(names, batch.columns):
      if name in (BUCKET_COLUMN, FLAGGED_COLUMN):
        continue
      value_type = column.type.value_type if hasattr(column.type, 'value_type') else None
      if value_type is None:
        continue
      is_bytes = pa.types.is_binary(value_type) or pa.types.is_large_binary(
          value_type) or pa.types.is_string(value_type) or pa.types.is_large_string(
              value_type)
      if not is_bytes and not pa.types.is_integer(value_type):
        continue
      feature = acc.get(name)
      if feature is None:
        feature = acc[name] = FeatureTokens(self._capacity, is_bytes)
      counts = (_token_counts(column, feature, flagged, hard) if is_bytes
                else _id_counts(column, feature, flagged, hard))
      for sketch, found in zip(feature.sketches, counts):
        sketch.add(found)
    return acc

  def merge_accumulators(self, accumulators):
    accumulators = iter(accumulators)
    out: Dict[str, FeatureTokens] = next(accumulators)  # the first one may be changed
    for acc in accumulators:
      for name, feature in acc.items():
        if name in out:
          out[name].merge(feature)
        else:
          out[name] = feature
    return out

  def extract_output(self, acc):
    return acc


def _int_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
  return np.asarray(batch.column(batch.schema.get_field_index(name)).flatten()
                    .to_numpy(zero_copy_only=False), dtype=np.int64)


def slice_by_group(batch: pa.RecordBatch) -> Iterable[Tuple[str, pa.RecordBatch]]:
  """TFDV slice function: the flagged and the hard examples of a batch."""
  flagged = _int_column(batch, FLAGGED_COLUMN).astype(bool)
  hard = _int_column(batch, BUCKET_COLUMN) == HARD_INDEX
  for name, mask in ((slice_stats.FLAGGED, flagged), (slice_stats.HARD, hard)):
    if mask.any():
      yield name, batch.filter(pa.array(mask))


def stats_options():
  """TFDV's options: sketch-based top-k, QUANTILE_BUCKETS quantiles, the two groups."""
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.StatsOptions(
      experimental_slice_functions=[slice_by_group], use_sketch_based_topk_uniques=True,
      num_top_values=20, num_rank_histogram_buckets=TOP_VALUES,
      num_quantiles_histogram_buckets=QUANTILE_BUCKETS)


def _display(value) -> str:
  if isinstance(value, bytes):
    return value[:MAX_TOKEN_BYTES].decode('utf-8', errors='backslashreplace')
  return str(value)


def _path_name(feature) -> str:
  return '.'.join(feature.path.step) if feature.HasField('path') else feature.name


def _tfdv_candidates(datasets: Dict[str, Any], tokens: Dict[str, FeatureTokens],
                     leave_out: Sequence[str]) -> List[slice_stats.SliceCounts]:
  """Categorical values and numeric ranges from TFDV's statistics of a split's slices
  (datasets by slice name)."""
  whole = datasets.get(_TFDV_ALL)
  if whole is None:
    return []
  by_slice = {name: {_path_name(f): f for f in d.features} for name, d in datasets.items()}
  out: List[slice_stats.SliceCounts] = []
  for feature in whole.features:
    name = _path_name(feature)
    if not sliceable(name, leave_out) or name in (BUCKET_COLUMN, FLAGGED_COLUMN):
      continue
    groups = [by_slice.get(g, {}).get(name) for g in slice_stats.GROUPS]
    kind = feature.WhichOneof('stats')
    if kind == 'string_stats':
      if feature.string_stats.common_stats.max_num_values > 1 or (
          name in tokens and tokens[name].is_tokens):
        continue
      out.extend(_categorical(name, feature, groups))
    elif kind == 'num_stats':
      if feature.num_stats.common_stats.max_num_values > 1:
        continue
      out.extend(_numeric(name, feature, groups))
  return out


def _rank_counts(feature) -> Dict[str, float]:
  if feature is None:
    return {}
  return {b.label: b.sample_count for b in feature.string_stats.rank_histogram.buckets}


def _categorical(name, feature, groups) -> List[slice_stats.SliceCounts]:
  split = _rank_counts(feature)
  flagged, hard = (_rank_counts(g) for g in groups)
  full = len(split) >= TOP_VALUES
  floor = min(split.values()) if split else 0.0
  approximate = full or feature.string_stats.unique > len(split)
  out = []
  for value in sorted(set(split) | set(flagged) | set(hard)):
    k_f, k_h = int(flagged.get(value, 0)), int(hard.get(value, 0))
    # A value beyond the split's histogram is at most as frequent as its last value.
    count = int(round(split.get(value, floor if full else 0)))
    out.append(slice_stats.SliceCounts(name, slice_stats.CATEGORICAL,
                                       value[:MAX_TOKEN_BYTES], max(count, k_f, k_h),
                                       k_f, k_h, approximate))
  return out


def _quantiles(feature) -> List[Tuple[float, float, float]]:
  if feature is None:
    return []
  for histogram in feature.num_stats.histograms:
    if histogram.type == histogram.QUANTILES:
      return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
  return []


def _numeric(name, feature, groups) -> List[slice_stats.SliceCounts]:
  split = _quantiles(feature)
  flagged, hard = (_quantiles(g) for g in groups)
  out = []
  for low, high in slice_stats.numeric_ranges(split):
    count = int(round(slice_stats.count_in_range(split, low, high)))
    k_f = int(round(slice_stats.count_in_range(flagged, low, high)))
    k_h = int(round(slice_stats.count_in_range(hard, low, high)))
    out.append(slice_stats.SliceCounts(
        name, slice_stats.NUMERIC, slice_stats.range_text(low, high),
        max(count, k_f, k_h), k_f, k_h, True, low, high))
  return out


def _token_candidates(tokens: Dict[str, FeatureTokens], leave_out: Sequence[str]
                      ) -> List[slice_stats.SliceCounts]:
  out = []
  for name in sorted(tokens):
    feature = tokens[name]
    if not sliceable(name, leave_out) or not feature.is_tokens:
      continue
    out.extend(slice_stats.sketch_candidates(name, slice_stats.TOKEN, *feature.sketches,
                                             name=_display))
  return out


class SliceSettings(NamedTuple):
  """What FindWhatFlaggedExamplesShare tests and reports (see compute/slice_stats.py)."""
  min_support: int = slice_stats.MIN_SUPPORT
  alpha: float = slice_stats.ALPHA
  max_rows: int = slice_stats.MAX_ROWS
  capacity: int = slice_stats.SKETCH_CAPACITY


def split_slices(split: str, pairs: Optional[LabelPairs], datasets: Optional[Dict[str, Any]],
                 tokens: Optional[Dict[str, FeatureTokens]], leave_out: Sequence[str],
                 settings: SliceSettings, not_examined: Optional[str] = None
                 ) -> Dict[str, Any]:
  """slices.json's entry of one split, from its parts (None: not computed);
  `not_examined` says why no split's features were examined, when none was."""
  if pairs is None:
    pairs = LabelPairs(settings.capacity)
  sizes = slice_stats.GroupSizes(pairs.examples, pairs.flagged, pairs.hard)
  candidates = slice_stats.sketch_candidates(
      LABEL_PAIR_FEATURE, slice_stats.LABEL_PAIR, *pairs.sketches,
      name=lambda pair: f'{pair[0]} -> {pair[1]}')
  features = f'not examined: {not_examined or "the split is not copied"}'
  if not_examined is None and (datasets is not None or tokens is not None):
    datasets, tokens = datasets or {}, tokens or {}
    whole = datasets.get(_TFDV_ALL)
    decoded = 0 if whole is None else whole.num_examples
    if decoded != sizes.examples:
      features = (f'not examined: {decoded} examples decoded of {sizes.examples} scored')
      logging.warning('slice statistics of split %r: %s', split, features)
    else:
      features = 'examined'
      candidates += _tfdv_candidates(datasets, tokens, leave_out)
      candidates += _token_candidates(tokens, leave_out)
  rows, tests = ([], 0) if sizes.examples == 0 else slice_stats.slice_rows(
      candidates, sizes, settings.min_support, settings.alpha, settings.max_rows)
  return {'examples': sizes.examples, 'flagged': sizes.flagged, 'hard': sizes.hard,
          'features': features, 'tests': tests, 'rows': rows}


def slices_json(parts: Iterable[Tuple[str, Optional[str], Any]], splits: Sequence[str],
                leave_out: Sequence[str], settings: SliceSettings,
                not_examined: Optional[str] = None) -> Dict[str, Any]:
  """slices.json's content from the pipeline's parts: ('pairs', split, LabelPairs),
  ('stats', split, DatasetFeatureStatisticsList), ('tokens', split, {feature:
  FeatureTokens}) and the ('seed', None, None) that makes sure there is one;
  `not_examined`: why no split's features were examined (None: they were, in the
  splits that have their parts)."""
  found: Dict[str, Dict[str, Any]] = {s: {} for s in splits}
  for kind, split, value in parts:
    if kind == 'seed':
      continue
    if split not in found:
      raise ValueError(f'slice statistics of split {split!r}, which the audit does not '
                       f'have ({sorted(found)})')
    if kind in found[split]:
      raise ValueError(f'two {kind} parts of split {split!r} reached the slice writer')
    found[split][kind] = value
  out = {}
  for split in splits:
    part = found[split]
    datasets = None
    if 'stats' in part:
      datasets = {d.name: d for d in part['stats'].datasets}
    out[split] = split_slices(split, part.get('pairs'), datasets, part.get('tokens'),
                              leave_out, settings, not_examined)
  return {'format_version': FORMAT_VERSION,
          'settings': {'min_support': settings.min_support, 'alpha': settings.alpha,
                       'max_rows': settings.max_rows,
                       'sketch_capacity': settings.capacity,
                       'numeric_ranges': slice_stats.NUMERIC_RANGES,
                       'test': 'one-sided hypergeometric',
                       'correction': 'benjamini-hochberg',
                       'left_out': sorted(leave_out)},
          'splits': out}


def _write(parts, path: str, splits, leave_out, settings, not_examined=None) -> str:
  content = slices_json(parts, splits, leave_out, settings, not_examined)
  record_files.write_lines(path, [json.dumps(content, indent=1, sort_keys=True)])
  return path


class FindWhatFlaggedExamplesShare(beam.PTransform):
  """Writes <work_dir>/slices.json (see the module docstring); returns its path, one
  element, once every part is counted.

  Takes {'batches': (split, RecordBatch) of the copied splits' examples (`record_batch`),
  'pairs': GroupCounts of every writer}. `splits` are every split of the audit,
  `feature_splits` those whose examples come as batches; `leave_out` names the
  features never sliced besides the audit's own (the label, the example id).
  `features_not_examined`, when given, says why no feature is examined (a runner that
  cannot run TFDV's statistics: `features_not_examined(runner)`): the batches are then
  not read, and only the label pairs are sliced.
  """

  def __init__(self, work_dir: str, splits: Sequence[str], feature_splits: Sequence[str],
               leave_out: Sequence[str] = (), settings: Optional[SliceSettings] = None,
               features_not_examined: Optional[str] = None):
    super().__init__()
    self._settings = settings or SliceSettings()
    s = self._settings
    slice_stats.slice_rows([], slice_stats.GroupSizes(1, 1, 1), s.min_support, s.alpha,
                           s.max_rows)  # checks the settings before Beam starts
    slice_stats.HeavyHitters(s.capacity)
    unknown = sorted(set(feature_splits) - set(splits))
    if unknown:
      raise ValueError(f'feature_splits {unknown} are not among the splits {list(splits)}')
    self._path = os.path.join(work_dir, SLICES_FILE)
    self._splits = list(splits)
    self._not_examined = features_not_examined
    self._feature_splits = [] if features_not_examined else list(feature_splits)
    self._leave_out = tuple(sorted(set(leave_out)))

  def expand(self, inputs):
    import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
    batches, pairs = inputs['batches'], inputs['pairs']
    pipeline = pairs.pipeline
    parts = [pipeline | 'Seed' >> beam.Create([('seed', None, None)])]
    for split in self._feature_splits:
      parts.append(
          batches
          | f'KeepSplit[{split}]' >> beam.Filter(lambda kv, s=split: kv[0] == s)
          | f'RecordBatches[{split}]' >> beam.Map(lambda kv: kv[1]
                                                 ).with_output_types(pa.RecordBatch)
          | f'TFDVStatistics[{split}]' >> tfdv.GenerateStatistics(stats_options())
          | f'TagStats[{split}]' >> beam.Map(lambda stats, s=split: ('stats', s, stats)))
    capacity = self._settings.capacity
    if self._not_examined is None:
      parts.append(batches
                   | 'CountTokens' >> beam.CombinePerKey(CountTokens(capacity))
                   | 'TagTokens' >> beam.Map(lambda kv: ('tokens', kv[0], kv[1])))
    parts.append(pairs
                 | 'KeyPairsBySplit' >> beam.Map(lambda g: (g.split, g))
                 | 'CountLabelPairs' >> beam.CombinePerKey(CountLabelPairs(capacity))
                 | 'TagPairs' >> beam.Map(lambda kv: ('pairs', kv[0], kv[1])))
    return (parts
            | 'AllSliceParts' >> beam.Flatten()
            | 'GatherSliceParts' >> beam.CombineGlobally(
                beam.combiners.ToListCombineFn()).without_defaults()
            | 'WriteSlices' >> beam.Map(_write, self._path, self._splits, self._leave_out,
                                        self._settings, self._not_examined))


# Runners (by class name) that cannot run TFDV's statistics: Beam's DaskRunner
# (2.74) breaks the combiners with hot-key fan-out that GenerateStatistics applies. On
# them the slices hold the label -> predicted pairs alone.
RUNNERS_WITHOUT_TFDV = ('DaskRunner',)


def features_not_examined(runner: Any) -> Optional[str]:
  """Why feature values cannot be sliced on `runner` (a Beam runner), or None."""
  name = type(runner).__name__
  if name in RUNNERS_WITHOUT_TFDV:
    return (f"Beam's {name} cannot run TFDV's statistics, so only the label -> predicted "
            'pairs are sliced')
  return None


def read_slices(path: str) -> Dict[str, Any]:
  """slices.json's content as this transform wrote it, checked for its shape only
  (ValueError naming the problem): for reading back a run of the transform alone. A
  report's slices.json is read by report/report_format.read_slices, which checks every
  row."""
  try:
    content = json.loads(record_files.read_bounded(path, 64 << 20))
  except (record_files.UnreadableFile, ValueError) as e:
    raise ValueError(f'{path}: {e}') from None
  if not isinstance(content, dict) or content.get('format_version') != FORMAT_VERSION or (
      not isinstance(content.get('splits'), dict)):
    raise ValueError(f'{path} is not a slices file of format {FORMAT_VERSION}')
  for split, entry in content['splits'].items():
    if not isinstance(entry, dict) or not isinstance(entry.get('rows'), list):
      raise ValueError(f'{path}: split {split!r} has no list of rows')
  return content


def describe_row(row: Dict[str, Any]) -> str:
  """One slice row as text: `color=violet (12 flagged, 40% vs 5% of the split, lift
  8.0)`."""
  what = (f'label {row["value"]}' if row['kind'] == slice_stats.LABEL_PAIR
          else f'{row["feature"]}={row["value"]}' if row['kind'] != slice_stats.NUMERIC
          else f'{row["feature"]} {row["value"]}')
  group = row['group']
  return (f'{what} ({row[group]} {group}, {100 * row["share_" + group]:.0f}% vs '
          f'{100 * row["share_in_split"]:.0f}% of the split, lift {row["lift"]:.1f})')


def describe(content: Dict[str, Any], top: int = 3) -> List[str]:
  """One line per split: the `top` slices where the flagged or hard examples gather."""
  lines = []
  for split, entry in sorted(content['splits'].items()):
    rows = entry['rows'][:top]
    if not rows:
      lines.append(f'{split}: no slice over-indexes among the flagged or hard examples')
      continue
    lines.append(f'{split}: ' + '; '.join(describe_row(row) for row in rows))
  return lines


def best_line(rows_by_split: Mapping[str, Sequence[Dict[str, Any]]]) -> str:
  """The slice row that stands out most across splits (the smallest p-value, then the
  largest lift, then the split's name) as `<split>: ` + describe_row; '' without one."""
  best = min(((row['p_value'], -row['lift'], split, i)
              for split, rows in rows_by_split.items() for i, row in enumerate(rows)),
             default=None)
  if best is None:
    return ''
  split, i = best[2], best[3]
  return f'{split}: {describe_row(rows_by_split[split][i])}'


def most_confused_pairs(content: Dict[str, Any], split: str, top: int = 3
                        ) -> List[Tuple[int, int, int]]:
  """(label, predicted, flagged count) of a split's label pair slices, best first."""
  rows = content['splits'].get(split, {}).get('rows', [])
  return [(r['classes'][0], r['classes'][1], r['flagged']) for r in rows
          if r['kind'] == slice_stats.LABEL_PAIR][:top]
