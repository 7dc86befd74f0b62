"""Where a score stands in its split: class statistics, normalised score, percentile,
decile, bucket and review rank.

Pure functions on numbers, beside the VoG core; the Beam transforms only apply them.

The ranked value is VoG (vog_raw) or, by `rank_by`, a label-error signal's suspicion.
Every global number of an audit is kept per (split, target class) of the ranked values:
the count, mean and std, approximate quantiles, and the top-K candidates for review. That
is enough for everything the ranking needs, so the values cross no more than one shuffle:

* vog_score is the class-normalised vog_raw (normalize_score); the count, mean and std of
  vog_raw are kept apart when the ranked value is a signal;
* the percentile of a score within its split is the count-weighted share of each class's
  examples whose score is at or below it, read off that class's raw quantiles (the
  normalisation is monotone within a class, or two-sided for `abs-class`);
* the `inspection_budget` highest scores of a split are among the highest raw scores of
  their class (and, for `abs-class`, the lowest): the union of each class's top K holds the
  global top K.
"""

from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

NUM_QUANTILES = 1001  # percentiles resolved to 0.1


class MeanStd:
  """A running (count, mean, sum of squared deviations) in float64.

  Values are folded in with Welford's update and partial results merged with Chan's
  parallel formula, so the order in which workers meet does not change the result
  beyond float64 rounding.
  """

  __slots__ = ('count', 'mean', 'm2')

  def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0):
    self.count, self.mean, self.m2 = count, mean, m2

  def add(self, value: float) -> 'MeanStd':
    self.count += 1
    delta = value - self.mean
    self.mean += delta / self.count
    self.m2 += delta * (value - self.mean)
    return self

  @staticmethod
  def merge(parts: Iterable['MeanStd']) -> 'MeanStd':
    out = MeanStd()
    for part in parts:
      if part.count == 0:
        continue
      total = out.count + part.count
      delta = part.mean - out.mean
      out.mean += delta * part.count / total
      out.m2 += part.m2 + delta * delta * out.count * part.count / total
      out.count = total
    return out

  @staticmethod
  def of(values: np.ndarray) -> 'MeanStd':
    """The running state of a whole array at once (a batch's partial), in float64."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
      return MeanStd()
    mean = float(values.mean())
    return MeanStd(len(values), mean, float(((values - mean) ** 2).sum()))

  def result(self) -> Tuple[int, float, float]:
    """(count, mean, population std); std is 0 for an empty set."""
    std = float(np.sqrt(self.m2 / self.count)) if self.count else 0.0
    return self.count, float(self.mean), std

  def __reduce__(self):
    return MeanStd, (self.count, self.mean, self.m2)


def normalize_score(vog_raw: float, class_mean: float, class_std: float,
                    class_count: int, normalize: str) -> float:
  """One example's normalised score given its class's population mean and std.

  A class with one example, or with no spread, gives 0 (never NaN). A spread below
  float64 rounding noise of the mean counts as none.
  """
  if normalize == 'raw':
    return float(vog_raw)
  if _no_spread(class_count, class_mean, class_std):
    return 0.0
  z = (vog_raw - class_mean) / class_std
  return float(abs(z) if normalize == 'abs-class' else z)


def _no_spread(count: int, mean: float, std: float) -> bool:
  return count < 2 or not std > 1e-12 * abs(mean)


def percentile_of(score: float, quantiles: Sequence[float]) -> float:
  """Share (0-100) of a set at or below `score`, read off its quantile boundaries."""
  return 100.0 * _share_at_or_below(np.asarray(quantiles), score)


def _share_at_or_below(quantiles: np.ndarray, x: float) -> float:
  if len(quantiles) < 2:
    return 1.0 if len(quantiles) and x >= quantiles[0] else 0.0
  position = np.searchsorted(quantiles, x, side='right') - 1
  return float(np.clip(position / (len(quantiles) - 1), 0.0, 1.0))


def _share_below(quantiles: np.ndarray, x: float) -> float:
  if len(quantiles) < 2:
    return 1.0 if len(quantiles) and x > quantiles[0] else 0.0
  position = np.searchsorted(quantiles, x, side='left') - 1
  return float(np.clip(position / (len(quantiles) - 1), 0.0, 1.0))


def _shares_at_or_below(quantiles: np.ndarray, x: np.ndarray) -> np.ndarray:
  if len(quantiles) < 2:
    return (x >= quantiles[0]).astype(float) if len(quantiles) else np.zeros(len(x))
  position = np.searchsorted(quantiles, x, side='right') - 1
  return np.clip(position / (len(quantiles) - 1), 0.0, 1.0)


def _shares_below(quantiles: np.ndarray, x: np.ndarray) -> np.ndarray:
  if len(quantiles) < 2:
    return (x > quantiles[0]).astype(float) if len(quantiles) else np.zeros(len(x))
  position = np.searchsorted(quantiles, x, side='left') - 1
  return np.clip(position / (len(quantiles) - 1), 0.0, 1.0)


class ClassScores(NamedTuple):
  """What an audit keeps of one (split, class): count, mean, std and quantiles of the
  ranked value (vog_raw, or a signal's suspicion)."""
  count: int
  mean: float
  std: float
  quantiles: Tuple[float, ...]

  def score(self, vog_raw: float, normalize: str) -> float:
    return normalize_score(vog_raw, self.mean, self.std, self.count, normalize)

  def share_at_or_below(self, score: float, normalize: str) -> float:
    """The share (0-1) of this class's examples whose normalised score is <= `score`."""
    q = np.asarray(self.quantiles)
    if normalize == 'raw':
      return _share_at_or_below(q, score)
    if _no_spread(self.count, self.mean, self.std):
      return 1.0 if score >= 0 else 0.0  # every score of the class is 0
    if normalize == 'class':
      return _share_at_or_below(q, self.mean + score * self.std)
    if score < 0:  # abs-class: |z| <= score
      return 0.0
    return max(0.0, _share_at_or_below(q, self.mean + score * self.std) -
               _share_below(q, self.mean - score * self.std))

  def scores(self, vog_raw: np.ndarray, normalize: str) -> np.ndarray:
    """`score` of each of `vog_raw`, as arrays (the same arithmetic, element by element)."""
    if normalize == 'raw':
      return vog_raw.astype(np.float64)
    if _no_spread(self.count, self.mean, self.std):
      return np.zeros(len(vog_raw))
    z = (vog_raw - self.mean) / self.std
    return np.abs(z) if normalize == 'abs-class' else z

  def shares_at_or_below(self, scores: np.ndarray, q: np.ndarray,
                         normalize: str) -> np.ndarray:
    """`share_at_or_below` of each of `scores`; `q` is this class's quantiles as an array."""
    if normalize == 'raw':
      return _shares_at_or_below(q, scores)
    if _no_spread(self.count, self.mean, self.std):
      return (scores >= 0).astype(float)
    if normalize == 'class':
      return _shares_at_or_below(q, self.mean + scores * self.std)
    both = (_shares_at_or_below(q, self.mean + scores * self.std) -
            _shares_below(q, self.mean - scores * self.std))
    return np.where(scores < 0, 0.0, np.maximum(both, 0.0))


Position = Tuple[str, int, int]  # (split, file index, record index)
# (ranked value, position, the example's suspicions in AGREEMENT_NAMES order, or ())
Candidate = Tuple[float, Position, Tuple[float, ...]]


def review_key(score: float, position: Position) -> Tuple[float, str, int, int]:
  """Highest score first; ties go to the earlier position, the same on every runner."""
  split, file_index, record_index = position
  return score, split, -file_index, -record_index


VogStats = Tuple[int, float, float]  # count, mean, population std of vog_raw


class Ranking:
  """Everything that places a scored example in its split, and its review rank.

  The ranked value is VoG (vog_raw) or a label-error signal's suspicion (signals.py,
  higher = more likely mislabeled), as `rank_by` says. `classes` maps (split, class) to
  the ClassScores of the ranked value; `ranks` maps the position of each of the
  `inspection_budget` flagged examples to its rank (1 = highest score). When the
  ranked value is not VoG, `vog_stats` ((split, class) -> (count, mean, std) of
  vog_raw) and `vog_normalize` give vog_score. `flagged_suspicions` maps each flagged
  position to its suspicions (AGREEMENT_NAMES order; () without signals), which the
  writers count their examples below (`agreement_counts`) to say which signals agree;
  they are kept per split as columns (`agreement`: split -> (ranks, [F, names])).

  A writer of one input file needs only `for_file`: its split's classes, its own
  file's ranks and its split's flagged suspicions. So what reaches each writer is
  bounded by its split's classes x 1,001 quantiles plus F x names suspicions, and the
  ranks of all F flagged examples cross the shuffle once in total, not once per file.
  """

  def __init__(self, normalize: str, cuts: Sequence[float],
               classes: Dict[Tuple[str, int], ClassScores], ranks: Dict[Position, int],
               vog_stats: Optional[Dict[Tuple[str, int], VogStats]] = None,
               vog_normalize: Optional[str] = None,
               flagged_suspicions: Optional[Dict[Position, Tuple[float, ...]]] = None,
               agreement: Optional[Dict[str, Tuple[Tuple[int, ...], np.ndarray]]] = None):
    self.normalize = normalize
    self.cuts = tuple(cuts)
    self.classes = dict(classes)
    self.ranks = {tuple(k): int(v) for k, v in ranks.items()}
    self.vog_stats = None if vog_stats is None else dict(vog_stats)
    self.vog_normalize = vog_normalize or normalize
    if agreement is None:
      agreement = _agreement_columns(self.ranks, flagged_suspicions or {})
    self.agreement = {split: (tuple(int(r) for r in ranks_of), _narrow(values))
                      for split, (ranks_of, values) in agreement.items()}
    self._file_ranks = None
    self._by_split: Dict[str, List[Tuple[ClassScores, np.ndarray]]] = {}
    for (split, _), stats in sorted(self.classes.items()):
      self._by_split.setdefault(split, []).append(
          (stats, np.asarray(stats.quantiles, dtype=np.float64)))

  def __reduce__(self):
    agreement = {split: (np.asarray(ranks_of, dtype=np.int32), values)
                 for split, (ranks_of, values) in self.agreement.items()}
    return Ranking, (self.normalize, self.cuts, self.classes, self.ranks, self.vog_stats,
                     self.vog_normalize, None, agreement)

  def for_file(self, split: str, file_index: int) -> 'Ranking':
    """What the writer of one input file needs: the split's classes (and vog_raw
    stats), the ranks of the file's own flagged examples and the split's flagged
    suspicions. It places the file's examples exactly as the whole Ranking does."""
    mine = self._ranks_by_file().get((split, int(file_index)))
    ranks = ({} if mine is None else
             {(split, int(file_index), r): k for r, k in zip(mine[0].tolist(),
                                                             mine[1].tolist())})
    of_split = lambda table: {key: value for key, value in table.items()
                              if key[0] == split}
    return Ranking(self.normalize, self.cuts, of_split(self.classes), ranks,
                   None if self.vog_stats is None else of_split(self.vog_stats),
                   self.vog_normalize, None,
                   {k: v for k, v in self.agreement.items() if k == split})

  def percentiles(self, split: str, scores: np.ndarray) -> np.ndarray:
    """The share (0-100) of the split's scored examples at or below each of `scores`."""
    members = self._by_split[split]
    share = sum(v.count * v.shares_at_or_below(scores, q, self.normalize)
                for v, q in members)
    return np.clip(100.0 * share / sum(v.count for v, _ in members), 0.0, 100.0)

  def raw_percentiles(self, split: str, values: np.ndarray) -> np.ndarray:
    """The share (0-100) of the split's examples whose ranked value (not normalised) is
    <= each of `values`, whatever the normalisation: the class quantiles are of it."""
    members = self._by_split[split]
    share = sum(v.count * _shares_at_or_below(q, values) for v, q in members)
    return np.clip(100.0 * share / sum(v.count for v, _ in members), 0.0, 100.0)

  def percentile(self, split: str, score: float) -> float:
    """The share (0-100) of the split's scored examples whose score is <= `score`."""
    return float(self.percentiles(split, np.asarray([score], dtype=np.float64))[0])

  def vog_scores(self, split: str, target_classes: np.ndarray,
                 vog_raw: np.ndarray) -> np.ndarray:
    """vog_score of each example: vog_raw normalised by `vog_normalize` in its class."""
    out = np.empty(len(vog_raw))
    for c in np.unique(target_classes):
      members = target_classes == c
      if self.vog_stats is None:
        out[members] = self.classes[(split, int(c))].scores(vog_raw[members],
                                                            self.normalize)
      else:
        count, mean, std = self.vog_stats[(split, int(c))]
        out[members] = ClassScores(count, mean, std, ()).scores(vog_raw[members],
                                                                self.vog_normalize)
    return out

  def _scores_and_percentiles(self, split: str, target_classes: Sequence[int],
                              values: Sequence[float],
                              vog_raw: Optional[Sequence[float]]
                              ) -> Tuple[np.ndarray, np.ndarray]:
    """(vog_score, percentile in the split) of each example, as arrays."""
    classes = np.asarray(target_classes, dtype=np.int64)
    ranked = np.asarray(values, dtype=np.float64)
    scores = np.empty(len(ranked))
    for c in np.unique(classes):
      members = classes == c
      scores[members] = self.classes[(split, int(c))].scores(ranked[members],
                                                             self.normalize)
    placed = self.percentiles(split, scores) if len(ranked) else np.empty(0)
    if self.vog_stats is None:
      vog = scores
    else:
      if vog_raw is None:
        raise ValueError('the ranked value is not VoG; give vog_raw for vog_score')
      vog = self.vog_scores(split, classes, np.asarray(vog_raw, dtype=np.float64))
    return vog, placed

  def place_all(self, split: str, target_classes: Sequence[int], values: Sequence[float],
                positions: Sequence[Position], vog_raw: Optional[Sequence[float]] = None
                ) -> List[Tuple[float, float, int, str, int]]:
    """(vog_score, vog_percentile, vog_decile, vog_bucket, review rank or 0) of each
    example of one split, computed as arrays. `values` are the ranked values; `vog_raw`
    is needed only when they are not VoG."""
    vog, placed = self._scores_and_percentiles(split, target_classes, values, vog_raw)
    return [(float(z), float(p), decile_of(p), bucket_of(p, self.cuts),
             self.ranks.get(tuple(position), 0))
            for z, p, position in zip(vog, placed, positions)]

  def place_file(self, split: str, file_index: int, target_classes: np.ndarray,
                 values: np.ndarray, record_index: np.ndarray,
                 vog_raw: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """`place_all` of the examples of one input file, as columns: vog_score,
    vog_percentile, vog_decile, bucket (index into BUCKETS), review_rank (0 when not
    flagged) and raw_hard (1 when the ranked value, not normalised, is above the second
    cut among the split's). Review ranks are looked up among the file's flagged
    positions only."""
    ranked = np.asarray(values, dtype=np.float64)
    vog, placed = self._scores_and_percentiles(split, target_classes, ranked, vog_raw)
    ranks = np.zeros(len(ranked), dtype=np.int64)
    mine = self._ranks_by_file().get((split, int(file_index)))
    if mine is not None and len(ranked):
      where = np.searchsorted(mine[0], record_index)
      where = np.minimum(where, len(mine[0]) - 1)
      hit = mine[0][where] == record_index
      ranks[hit] = mine[1][where[hit]]
    raw_hard = (self.raw_percentiles(split, ranked) > self.cuts[1] if len(ranked)
                else np.zeros(0, bool))
    return {'vog_score': vog, 'vog_percentile': placed, 'vog_decile': deciles_of(placed),
            'bucket': bucket_codes(placed, self.cuts), 'review_rank': ranks,
            'raw_hard': raw_hard.astype(np.int64)}

  def _ranks_by_file(self) -> Dict[Tuple[str, int], Tuple[np.ndarray, np.ndarray]]:
    """(split, file index) -> (sorted record indices, their review ranks), built once."""
    if self._file_ranks is None:
      grouped: Dict[Tuple[str, int], List[Tuple[int, int]]] = {}
      for (split, file_index, record_index), rank in self.ranks.items():
        grouped.setdefault((split, file_index), []).append((record_index, rank))
      self._file_ranks = {}
      for key, pairs in grouped.items():
        pairs.sort()
        self._file_ranks[key] = (np.asarray([p[0] for p in pairs], dtype=np.int64),
                                 np.asarray([p[1] for p in pairs], dtype=np.int64))
    return self._file_ranks

  def place(self, split: str, target_class: int, value: float, position: Position,
            vog_raw: Optional[float] = None) -> Tuple[float, float, int, str, int]:
    """(vog_score, vog_percentile, vog_decile, vog_bucket, review rank or 0)."""
    return self.place_all(split, [target_class], [value], [position],
                          None if vog_raw is None else [vog_raw])[0]

  def flagged_of_split(self, split: str) -> Tuple[List[int], np.ndarray]:
    """(review ranks, suspicions [F, names]) of the split's flagged examples that have
    suspicions, in rank order."""
    ranks, values = self.agreement.get(split, ((), np.zeros((0, 0))))
    return list(ranks), values.astype(np.float64)


def _narrow(values) -> np.ndarray:
  """`values` as float32 when that keeps every one exactly (suspicions are float32
  signals and vog_raw with a sign), else as float64: half the bytes in each copy."""
  wide = np.asarray(values, dtype=np.float64)
  narrow = wide.astype(np.float32)
  return narrow if np.array_equal(narrow.astype(np.float64), wide, equal_nan=True) else wide


def _agreement_columns(ranks: Dict[Position, int],
                       flagged_suspicions: Dict[Position, Tuple[float, ...]]
                       ) -> Dict[str, Tuple[Tuple[int, ...], np.ndarray]]:
  """split -> (ranks, suspicions [F, names]) of its flagged examples that have
  suspicions, in rank order."""
  rows: Dict[str, List[Tuple[int, Tuple[float, ...]]]] = {}
  for position, rank in ranks.items():
    values = tuple(flagged_suspicions.get(tuple(position), ()))
    if values:
      rows.setdefault(position[0], []).append((rank, values))
  out = {}
  for split, pairs in rows.items():
    pairs.sort()
    out[split] = (tuple(r for r, _ in pairs),
                  np.asarray([v for _, v in pairs], dtype=np.float64))
  return out


def agreement_counts(flagged: np.ndarray, suspicions: np.ndarray) -> np.ndarray:
  """[F, names]: for each flagged example (a row of `flagged`) and each name, how many
  rows of `suspicions` ([n, names], one input file's examples) are strictly below its
  value. Summed over a split's files, this is the exact count `agreeing` needs."""
  out = np.zeros(flagged.shape, dtype=np.int64)
  for j in range(flagged.shape[1]):
    column = np.sort(suspicions[:, j])
    out[:, j] = np.searchsorted(column, flagged[:, j], side='left')
  return out


def agreeing(names: Sequence[str], below: np.ndarray, count: int, cut: float
             ) -> Tuple[str, ...]:
  """The names whose suspicion puts an example in its split's hard bucket: more suspect
  than the `cut` percent of the split's `count` examples (`below` of them are strictly
  below it, per name). Strictly more: with a count such as forgetting, where most of a
  split has 0, an example with 0 is above nobody and does not agree."""
  if not count:
    return ()
  return tuple(name for name, n in zip(names, np.asarray(below).tolist())
               if 100.0 * n / count > cut)


def rank_for_review(classes: Dict[Tuple[str, int], ClassScores],
                    candidates: Dict[Tuple[str, int], Iterable[Candidate]], normalize: str,
                    budget: int) -> Dict[Position, int]:
  """The positions of the `budget` highest normalised scores across splits, ranked from 1.

  `candidates` holds, per (split, class), at least the examples that could be among the
  class's `budget` highest scores (its highest raw scores; for `abs-class` its lowest too;
  and its first positions, which rank first among equal scores).
  """
  best: Dict[Position, Tuple[float, str, int, int]] = {}
  for key, rows in candidates.items():
    stats = classes[key]
    for candidate in rows:
      raw, position = candidate[0], tuple(candidate[1])
      best[position] = review_key(stats.score(raw, normalize), position)
  ordered = sorted(best.items(), key=lambda item: item[1], reverse=True)[:budget]
  return {position: rank for rank, (position, _) in enumerate(ordered, start=1)}


class Candidates(NamedTuple):
  """Candidates for review of one (split, class), as columns: the ranked value, the
  position (file index, record index) and, in label mode, the suspicions
  ([m, AGREEMENT_NAMES], [m, 0] without)."""
  split: str
  values: np.ndarray  # float64
  file_index: np.ndarray  # int64
  record_index: np.ndarray  # int64
  suspicions: np.ndarray  # float64

  def take(self, rows: np.ndarray) -> 'Candidates':
    return Candidates(self.split, self.values[rows], self.file_index[rows],
                      self.record_index[rows], self.suspicions[rows])

  def rows(self) -> List[Candidate]:
    """Each candidate as (value, position, suspicions)."""
    return [(v, (self.split, f, r), tuple(s)) for v, f, r, s in zip(
        self.values.tolist(), self.file_index.tolist(), self.record_index.tolist(),
        self.suspicions.tolist())]


def _chosen(c: Candidates, k: int, two_sided: bool) -> np.ndarray:
  """The rows of `c` among its `k` highest values, `k` earliest positions and
  (`two_sided`) `k` lowest values; ties by the earlier position (review_key)."""
  if len(c.values) <= k:
    return np.arange(len(c.values))
  # lexsort sorts by its last key first.
  by_value = np.lexsort((-c.record_index, -c.file_index, c.values))  # highest last
  parts = [by_value[-k:], np.lexsort((c.record_index, c.file_index))[:k]]
  if two_sided:
    parts.append(np.lexsort((c.record_index, c.file_index, c.values))[:k])
  return np.unique(np.concatenate(parts))


def batch_candidates(values: np.ndarray, split: str, file_index: int,
                     record_index: np.ndarray, k: int, two_sided: bool,
                     suspicions: Optional[np.ndarray] = None) -> Candidates:
  """The candidates for review among one batch's examples of one class: its `k`
  highest values, with `two_sided` (abs-class) its `k` lowest too, and its `k` earliest
  positions (which rank first among equal scores); each once, with its row of
  `suspicions` ([n, names]; none without)."""
  n = len(values)
  found = Candidates(split, np.asarray(values, dtype=np.float64),
                     np.full(n, file_index, dtype=np.int64),
                     np.asarray(record_index, dtype=np.int64),
                     np.zeros((n, 0)) if suspicions is None
                     else np.asarray(suspicions, dtype=np.float64).reshape(n, -1))
  return found.take(_chosen(found, k, two_sided))


def select_candidates(candidates: Iterable[Candidates], k: int, two_sided: bool
                      ) -> Candidates:
  """What `batch_candidates` keeps, of the candidates of one (split, class) gathered
  from several batches (disjoint sets of examples): the union of the `k` highest, the
  `k` earliest and (`two_sided`) the `k` lowest."""
  parts = [c for c in candidates if c is not None]
  if not parts:
    raise ValueError('select_candidates needs at least one set of candidates')
  width = max(p.suspicions.shape[1] for p in parts)
  joined = Candidates(parts[0].split, np.concatenate([p.values for p in parts]),
                      np.concatenate([p.file_index for p in parts]),
                      np.concatenate([p.record_index for p in parts]),
                      np.concatenate([p.suspicions.reshape(len(p.values), width)
                                      for p in parts]))
  return joined.take(_chosen(joined, k, two_sided))


def deciles_of(percentiles: np.ndarray) -> np.ndarray:
  """`decile_of` of each percentile, as int64."""
  return np.clip(np.ceil(np.asarray(percentiles) / 10.0), 1, 10).astype(np.int64)


def bucket_codes(percentiles: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
  """`bucket_of` of each percentile as its index into vocabulary.BUCKETS."""
  p = np.asarray(percentiles)
  return np.where(p <= cuts[0], 0, np.where(p <= cuts[1], 1, 2)).astype(np.int64)


def bucket_of(percentile: float, cuts: Sequence[float]) -> str:
  """`easy` up to the first cut, `medium` up to the second, `hard` above."""
  if percentile <= cuts[0]:
    return 'easy'
  return 'medium' if percentile <= cuts[1] else 'hard'


def decile_of(percentile: float) -> int:
  """1..10; a percentile of 0 falls in the first decile."""
  return int(np.clip(np.ceil(percentile / 10.0), 1, 10))
