"""One scored batch as columns, and the array math that places a whole file of them.

From the scorer to the writers a batch stays one `ScoredBatch`: NumPy columns of its
examples' positions, ids, classes, vog_raw and label-error signals, never one Python
object per example. Everything the writers derive from it (the ranked value, the
suspicions behind `agreeing`, the top gradient sources) is computed here on whole
columns. Pure NumPy: no Beam, no TensorFlow.

A batch crosses the shuffle once (to its input file's writer). `__reduce__` packs it
into a few byte strings: integers in the narrowest type that holds them, positions only
when the batch skips a record, the label only when it is not the target, ids as one
UTF-8 blob with their lengths: under 50 bytes per labelled example with a short id
(tests/vog/dataflow/test_score_batch.py checks it). For the bytes that cross each grouping, see the
README's "Speed and memory (`make bench`)".
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from components.vog import vocabulary as vocab
from components.vog.compute import signals as signals_lib

TOP_SIGMA = 5  # how many of an example's gradient sources its flagged row names


class ScoredBatch:
  """The scores of the examples of one batch, all from one input file of one split.

  Row i of every column belongs to the same example. `record_index` says where it
  was read (its position is its identity: copies of one record are different
  examples); `label` is -1 where there is none; `signals` is [n, S] float32, column j
  the j-th signal of signals.REGISTRY (`signal_columns` names them), [n, 0] in
  label_mode='predicted';
  `top_sigma` is None for a model with one gradient source, else (names, index [n, T]
  int8 into names, -1 for none, value [n, T] float32), largest first.
  """

  __slots__ = ('split', 'file_index', 'record_index', 'example_id', 'has_example_id',
               'label', 'target_class', 'predicted_class', 'vog_raw', 'signals',
               'top_sigma')

  def __init__(self, split: str, file_index: int, record_index, example_id,
               has_example_id, label, target_class, predicted_class, vog_raw, signals,
               top_sigma=None):
    self.split = split
    self.file_index = int(file_index)
    self.record_index = np.asarray(record_index, dtype=np.int64)
    self.example_id = list(example_id)
    self.has_example_id = np.asarray(has_example_id, dtype=bool)
    self.label = np.asarray(label, dtype=np.int64)
    self.target_class = np.asarray(target_class, dtype=np.int64)
    self.predicted_class = np.asarray(predicted_class, dtype=np.int64)
    self.vog_raw = np.asarray(vog_raw, dtype=np.float32)
    n = len(self.record_index)
    self.signals = np.asarray(signals, dtype=np.float32).reshape(n, -1)
    self.top_sigma = top_sigma
    for name in ('example_id', 'has_example_id', 'label', 'target_class',
                 'predicted_class', 'vog_raw'):
      if len(getattr(self, name)) != n:
        raise ValueError(f'ScoredBatch column {name} has {len(getattr(self, name))} rows; '
                         f'record_index has {n}')

  def __len__(self) -> int:
    return len(self.record_index)

  @property
  def has_signals(self) -> bool:
    return self.signals.shape[1] > 0

  def take(self, rows: np.ndarray) -> 'ScoredBatch':
    """The batch of the rows `rows` (indices or a mask), in that order."""
    rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
    top = None
    if self.top_sigma is not None:
      names, index, value = self.top_sigma
      top = (names, index[rows], value[rows])
    return ScoredBatch(self.split, self.file_index, self.record_index[rows],
                       [self.example_id[i] for i in rows], self.has_example_id[rows],
                       self.label[rows], self.target_class[rows],
                       self.predicted_class[rows], self.vog_raw[rows], self.signals[rows],
                       top)

  def __reduce__(self):
    ids = [i.encode('utf-8') for i in self.example_id]
    lengths = np.asarray([len(i) for i in ids], dtype=np.int64)
    base = int(self.record_index.min()) if len(self) else 0
    offsets = self.record_index - base
    # The usual batch: consecutive records (none quarantined), and in label mode the
    # target is the label; neither needs a column then.
    contiguous = bool(np.array_equal(offsets, np.arange(len(self))))
    label_is_target = bool(np.array_equal(self.label, self.target_class))
    classes = np.stack([self.target_class, self.predicted_class] +
                       ([] if label_is_target else [self.label]))
    packed = (self.split, self.file_index, base,
              b'' if contiguous else _narrow(offsets).tobytes(),
              b''.join(ids), _narrow(lengths).tobytes(),
              np.packbits(self.has_example_id).tobytes(),
              _narrow(classes).tobytes(), label_is_target,
              self.vog_raw.tobytes(), self.signals.shape[1], self.signals.tobytes(),
              self.top_sigma)
    return _unpack, packed
  def __eq__(self, other):
    if not isinstance(other, ScoredBatch):
      return NotImplemented
    return (self.split == other.split and self.file_index == other.file_index and
            self.example_id == other.example_id and
            all(np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                if getattr(self, k).dtype.kind == 'f' else
                np.array_equal(getattr(self, k), getattr(other, k))
                for k in ('record_index', 'has_example_id', 'label', 'target_class',
                          'predicted_class', 'vog_raw', 'signals')))

  def __repr__(self):
    return (f'ScoredBatch({self.split!r}, file {self.file_index}, {len(self)} examples, '
            f'records {self.record_index[:3].tolist()}...)')


def _narrow(values: np.ndarray) -> np.ndarray:
  """Integers in the narrowest of int8, int16, int32, int64 that holds them; the byte
  size tells _widen which it was."""
  for kind in (np.int8, np.int16, np.int32):
    info = np.iinfo(kind)
    if not values.size or (values.min() >= info.min and values.max() <= info.max):
      return values.astype(kind)
  return values.astype(np.int64)


def _widen(data: bytes, count: int) -> np.ndarray:
  """The int64 values _narrow packed, `count` of them."""
  if not count:
    return np.zeros(0, dtype=np.int64)
  kind = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[len(data) // count]
  return np.frombuffer(data, dtype=kind).astype(np.int64)


def _unpack(split, file_index, base, offsets, id_blob, id_lengths, has_id, classes,
            label_is_target, vog_raw, num_signals, signals, top_sigma) -> ScoredBatch:
  vog_raw = np.frombuffer(vog_raw, dtype=np.float32)
  n = len(vog_raw)
  record_index = (np.arange(n, dtype=np.int64) if not offsets else _widen(offsets, n)) + base
  lengths = _widen(id_lengths, n)
  ends = np.cumsum(lengths)
  ids = [id_blob[e - l:e].decode('utf-8') for e, l in zip(ends.tolist(), lengths.tolist())]
  has = np.unpackbits(np.frombuffer(has_id, dtype=np.uint8))[:n].astype(bool)
  rows = 2 if label_is_target else 3
  classes = _widen(classes, rows * n).reshape(rows, n)
  label = classes[0] if label_is_target else classes[2]
  return ScoredBatch(split, file_index, record_index, ids, has, label, classes[0],
                     classes[1], vog_raw,
                     np.frombuffer(signals, dtype=np.float32).reshape(n, num_signals),
                     top_sigma)


def concat(batches: Sequence[ScoredBatch]) -> ScoredBatch:
  """The batches of one input file as one, ordered by record index."""
  if not batches:
    raise ValueError('concat needs at least one ScoredBatch')
  first = batches[0]
  if any(b.split != first.split or b.file_index != first.file_index for b in batches):
    raise ValueError('concat takes the batches of one input file only')
  names = None
  if first.top_sigma is not None:
    names = first.top_sigma[0]
    if any(b.top_sigma is None or b.top_sigma[0] != names for b in batches):
      raise ValueError('the batches of one file disagree on their gradient sources')
  top = None if names is None else (
      names, np.concatenate([b.top_sigma[1] for b in batches]),
      np.concatenate([b.top_sigma[2] for b in batches]))
  joined = ScoredBatch(
      first.split, first.file_index, np.concatenate([b.record_index for b in batches]),
      [i for b in batches for i in b.example_id],
      np.concatenate([b.has_example_id for b in batches]),
      np.concatenate([b.label for b in batches]),
      np.concatenate([b.target_class for b in batches]),
      np.concatenate([b.predicted_class for b in batches]),
      np.concatenate([b.vog_raw for b in batches]),
      np.concatenate([b.signals for b in batches]), top)
  return joined.take(np.argsort(joined.record_index, kind='stable'))


def _registered_columns(batch: ScoredBatch
                        ) -> List[Tuple[signals_lib.Signal, np.ndarray]]:
  """(signal, float32 column) of each of the batch's signals: column j of `signals` is
  the j-th entry of signals.REGISTRY (`signal_matrix` puts it there). [] without
  signals."""
  if not batch.has_signals:
    return []
  registry = signals_lib.REGISTRY
  if batch.signals.shape[1] != len(registry):
    raise ValueError(f'the batch holds {batch.signals.shape[1]} signal columns; '
                     f'{len(registry)} signals are registered')
  return [(s, batch.signals[:, j]) for j, s in enumerate(registry)]


def signal_columns(batch: ScoredBatch) -> Dict[str, np.ndarray]:
  """{field name: column} of the batch's signals in registry order, counts as int64;
  {} without signals."""
  return {s.field: (column.astype(np.int64) if s.kind == signals_lib.COUNT
                    else np.ascontiguousarray(column))
          for s, column in _registered_columns(batch)}


def suspicions(batch: ScoredBatch) -> Dict[str, np.ndarray]:
  """{name: float64 [n]} for vocab.AGREEMENT_NAMES, higher = more likely mislabeled:
  each signal by its short name, oriented as the registry says, and VoG (vog_raw); {}
  without signals."""
  if not batch.has_signals:
    return {}
  out = {s.name: s.orientation * column.astype(np.float64)
         for s, column in _registered_columns(batch)}
  out[vocab.VOG] = batch.vog_raw.astype(np.float64)
  return out


def suspicion_matrix(batch: ScoredBatch) -> np.ndarray:
  """`suspicions` as one float64 [n, len(AGREEMENT_NAMES)] array, columns in
  AGREEMENT_NAMES order; [n, 0] without signals."""
  found = suspicions(batch)
  if not found:
    return np.zeros((len(batch), 0))
  return np.stack([found[name] for name in vocab.AGREEMENT_NAMES], axis=1)


def rank_values(batch: ScoredBatch, rank_by: str) -> np.ndarray:
  """The value `rank_by` ranks, float64 [n]: vog_raw, or a signal's suspicion."""
  if rank_by == vocab.VOG:
    return batch.vog_raw.astype(np.float64)
  if not batch.has_signals:
    raise ValueError(f'rank_by={rank_by!r} needs the label-error signals, which are left '
                     "out with label_mode='predicted'; use rank_by='vog'")
  for s, column in _registered_columns(batch):
    if s.name == rank_by:
      return s.orientation * column.astype(np.float64)
  raise ValueError(f'rank_by={rank_by!r} is not one of {vocab.AGREEMENT_NAMES}')


def signal_matrix(logits: np.ndarray, target_class: np.ndarray) -> np.ndarray:
  """[N, S] float32 signals of a batch from every checkpoint's logits ([K, N, C]),
  column j the j-th signal of signals.REGISTRY; a row of NaN where an example's logits
  are not finite, so that it is quarantined rather than the batch failing."""
  registry = signals_lib.REGISTRY
  n = logits.shape[1]
  out = np.full((n, len(registry)), np.nan, dtype=np.float32)
  finite = np.isfinite(logits).all(axis=(0, 2))
  if finite.any():
    found = signals_lib.compute_signals(logits[:, finite], target_class[finite])
    for j, s in enumerate(registry):
      out[finite, j] = found[s.field]
  return out


def top_sigma(input_sigma: Dict[str, np.ndarray], n: int
              ) -> Optional[Tuple[Tuple[str, ...], np.ndarray, np.ndarray]]:
  """Per example, its TOP_SIGMA gradient sources with the largest mean sigma, largest
  first (ties by name), as (names, index [n, T] int8, value [n, T] float32; index -1
  where fewer are finite); None when the model has one source. A vector input counts
  by its elements (`name[j]`), not as a whole, when it has them."""
  names = sorted(input_sigma)
  elements = {name.split('[', 1)[0] for name in names if name.endswith(']')}
  names = [name for name in names if name not in elements]
  if len(names) < 2:
    return None
  if len(names) > 127:
    raise ValueError(f'{len(names)} gradient sources; top_sigma indexes at most 127')
  table = np.stack([np.asarray(input_sigma[k], dtype=np.float64) for k in names], axis=1)
  finite = np.isfinite(table)
  # Sorted by name already, so a stable sort on -value keeps ties in name order.
  order = np.argsort(np.where(finite, -table, np.inf), axis=1, kind='stable')[:, :TOP_SIGMA]
  values = np.take_along_axis(table, order, axis=1).astype(np.float32)
  keep = np.take_along_axis(finite, order, axis=1)
  index = np.where(keep, order, -1).astype(np.int8)
  return tuple(names), index, np.where(keep, values, np.float32(0))


def top_sigma_rows(top: Optional[Tuple[Tuple[str, ...], np.ndarray, np.ndarray]],
                   rows: Sequence[int]) -> List[Tuple[Tuple[str, float], ...]]:
  """((name, mean sigma), ...) of each of `rows`, as a flagged row shows them."""
  if top is None:
    return [() for _ in rows]
  names, index, value = top
  return [tuple((names[j], float(v)) for j, v in zip(index[r].tolist(), value[r].tolist())
                if j >= 0) for r in rows]
