"""What the flagged examples have in common: the math of slice statistics.

A slice is the examples of a split that hold one value of one feature (a categorical
value, a numeric range, a text token) or one pair given label -> predicted class. For
each slice and each group of interest (the flagged examples, the `hard` bucket) this
module says how much the slice over-indexes in the group and whether that could be
chance:

* share in the group k / n against share in the split K / N, and their ratio, the lift;
* the one-sided hypergeometric p-value P(X >= k): the chance that n examples drawn
  without replacement from the split's N, K of which are in the slice, hold k or more
  of them (`hypergeometric_sf`);
* the Benjamini-Hochberg adjustment over every (slice, group) for which counts were
  available, tested or not (`benjamini_hochberg`), so that many values tried do not
  make a lucky one look significant; a slice is tested in a group only when at least
  `min_support` of the group's examples are in it (MIN_SUPPORT);
* `rank_slices` keeps the slices whose adjusted p-value is at most `alpha`, each with
  the group where it over-indexes most surely, best first, at most MAX_ROWS.

Counts of values with no bound on how many there are come from a Misra-Gries
heavy-hitters sketch (`HeavyHitters`) with a fixed capacity: it never holds more than
`capacity` counters, whatever the number of distinct values, and the count it gives is
an underestimate by at most (total weight - sum of its counters) / (capacity + 1)
(`error_bound`; 0 while the distinct values fit). The statistics take a lower bound for
a group's count and an upper bound for the split's, so an approximate count can only
make a slice look less significant, never more. Numeric ranges are read off quantile
histograms (`numeric_ranges`, `count_in_range`).

Pure Python and NumPy, no other room: the Beam side (dataflow/slices.py) only applies it.
"""

import math
from typing import Dict, Hashable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

MIN_SUPPORT = 5  # a slice is tested in a group only with at least this many of its examples
MAX_ROWS = 20  # slices reported per split
ALPHA = 0.05  # the largest adjusted p-value reported
SKETCH_CAPACITY = 1000  # counters per heavy-hitters sketch
NUMERIC_RANGES = 10  # a numeric feature is cut at its split's deciles

FLAGGED = 'flagged'
HARD = 'hard'
GROUPS = (FLAGGED, HARD)

CATEGORICAL = 'categorical'
NUMERIC = 'numeric'
TOKEN = 'token'
LABEL_PAIR = 'label_pair'
KINDS = (CATEGORICAL, NUMERIC, TOKEN, LABEL_PAIR)


class HeavyHitters:
  """A Misra-Gries sketch of weighted counts, mergeable, of at most `capacity` counters.

  `add(counts)` folds in exact counts (a dict); `merge` joins two sketches (Agarwal et
  al., "Mergeable summaries", 2012): the counters are added and, when more than
  `capacity` remain, the (capacity + 1)-th largest count is subtracted from every
  counter and those left at zero or below are dropped. For every key,
  estimate(key) <= true count <= estimate(key) + error_bound(); keys whose true count is
  above total / (capacity + 1) are always held.
  """

  __slots__ = ('capacity', 'counts', 'total')

  def __init__(self, capacity: int = SKETCH_CAPACITY):
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or (
        capacity < 1):
      raise ValueError(f'sketch capacity={capacity!r}; give a whole number of at least 1')
    self.capacity = int(capacity)
    self.counts: Dict[Hashable, int] = {}
    self.total = 0

  def add(self, counts: Dict[Hashable, int]) -> 'HeavyHitters':
    """Folds in exact counts {key: count >= 0}; returns self."""
    for key, count in counts.items():
      if count < 0:
        raise ValueError(f'count {count} of {key!r} is negative')
      if count:
        self.counts[key] = self.counts.get(key, 0) + int(count)
        self.total += int(count)
    self._prune()
    return self

  def merge(self, other: 'HeavyHitters') -> 'HeavyHitters':
    """Folds `other` into self (the capacities must agree); returns self."""
    if other.capacity != self.capacity:
      raise ValueError(f'sketches of capacity {self.capacity} and {other.capacity} '
                       'cannot be merged')
    for key, count in other.counts.items():
      self.counts[key] = self.counts.get(key, 0) + count
    self.total += other.total
    self._prune()
    return self

  def _prune(self) -> None:
    if len(self.counts) <= self.capacity:
      return
    values = np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts))
    # The (capacity + 1)-th largest count.
    cut = int(np.partition(values, len(values) - self.capacity - 1)[
        len(values) - self.capacity - 1])
    self.counts = {k: c - cut for k, c in self.counts.items() if c > cut}

  def estimate(self, key: Hashable) -> int:
    """A lower bound of the key's count (exact while the distinct keys fit)."""
    return self.counts.get(key, 0)

  def error_bound(self) -> int:
    """How much any estimate may be below the true count (0: every count is exact)."""
    return -(-(self.total - sum(self.counts.values())) // (self.capacity + 1))

  def upper(self, key: Hashable) -> int:
    """An upper bound of the key's count."""
    return self.estimate(key) + self.error_bound()

  def __len__(self) -> int:
    return len(self.counts)

  def __reduce__(self):
    return _heavy_hitters, (self.capacity, self.counts, self.total)

  def __eq__(self, other):
    return (isinstance(other, HeavyHitters) and self.capacity == other.capacity and
            self.counts == other.counts and self.total == other.total)


def _heavy_hitters(capacity, counts, total) -> HeavyHitters:
  sketch = HeavyHitters(capacity)
  sketch.counts, sketch.total = dict(counts), total
  return sketch


def hypergeometric_sf(k: int, population: int, successes: int, draws: int) -> float:
  """P(X >= k) for X ~ Hypergeometric: `draws` taken without replacement from
  `population` of which `successes` are marked. Exact up to float rounding: the first
  term from log-gamma, the rest by the ratio of consecutive terms, summed until they
  no longer change the sum.
  """
  for name, value in (('k', k), ('population', population), ('successes', successes),
                      ('draws', draws)):
    if value < 0:
      raise ValueError(f'{name}={value} is negative')
  if successes > population or draws > population:
    raise ValueError(f'successes={successes} and draws={draws} must be at most '
                     f'population={population}')
  low = max(0, draws + successes - population)
  high = min(successes, draws)
  if k <= low:
    return 1.0
  if k > high:
    return 0.0

  def log_choose(a, b):
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

  term = math.exp(log_choose(successes, k) + log_choose(population - successes, draws - k)
                  - log_choose(population, draws))
  total, x = term, k
  while x < high and term > 0.0:
    term *= ((successes - x) * (draws - x)) / ((x + 1) * (population - successes - draws
                                                          + x + 1))
    x += 1
    total += term
    if term < total * 1e-17:
      break
  return min(1.0, total)


def benjamini_hochberg(p_values: Sequence[float], num_tests: Optional[int] = None
                       ) -> np.ndarray:
  """Benjamini-Hochberg adjusted p-values of `p_values`, in their order, as if
  `num_tests` (>= len(p_values); None: len) hypotheses were tested, the others with
  p-value 1: q_(i) = min over j >= i of num_tests * p_(j) / j, at most 1."""
  p = np.asarray(p_values, dtype=np.float64)
  m = len(p) if num_tests is None else int(num_tests)
  if m < len(p):
    raise ValueError(f'num_tests={m} is below the {len(p)} p-values given')
  if not len(p):
    return p
  if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
    raise ValueError('p-values must be in [0, 1]')
  order = np.argsort(p, kind='stable')
  scaled = p[order] * m / np.arange(1, len(p) + 1)
  adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
  out = np.empty_like(p)
  out[order] = np.minimum(adjusted, 1.0)
  return out


class SliceCounts(NamedTuple):
  """How many examples of a split, and of each group, hold one value of one feature.

  `value` is the display text; `low`/`high` the numeric range [low, high) (None:
  unbounded) and `classes` (label, predicted) of a label pair. Counts are the bounds
  the statistics use: `count` an upper bound, `flagged` and `hard` lower bounds, and
  `approximate` says whether any came from a sketch or a histogram rather than a
  count.
  """
  feature: str
  kind: str
  value: str
  count: int
  flagged: int
  hard: int
  approximate: bool = False
  low: Optional[float] = None
  high: Optional[float] = None
  classes: Optional[Tuple[int, int]] = None


class GroupSizes(NamedTuple):
  """The number of examples of a split, and of each group, the counts are out of."""
  examples: int
  flagged: int
  hard: int


def slice_rows(candidates: Iterable[SliceCounts], sizes: GroupSizes,
               min_support: int = MIN_SUPPORT, alpha: float = ALPHA,
               max_rows: int = MAX_ROWS) -> Tuple[List[Dict], int]:
  """The slices of a split that over-index in a group, best first; (rows, tests).

  Every candidate counts as one hypothesis per group in the correction (`tests`), tested
  or not. A candidate is tested in a group when at least `min_support` of the group's
  examples hold it and its share there is above its share of the split. Each row
  names the group where its adjusted p-value is smallest (flagged first on a tie) and
  is kept when that is at most `alpha`; rows are ordered by p-value, then lift, then
  the group's count, then feature and value, and at most `max_rows` are returned.
  """
  _check_settings(min_support, alpha, max_rows)
  candidates = list(candidates)
  for c in candidates:
    if c.kind not in KINDS:
      raise ValueError(f'slice of {c.feature!r} has kind {c.kind!r}; expected one of {KINDS}')
  num_tests = len(GROUPS) * len(candidates)
  tested: List[Tuple[int, str, float, float]] = []  # (candidate, group, p, lift)
  for i, c in enumerate(candidates):
    # A count can never be below what a group holds of it (bounds may cross).
    count = min(max(c.count, c.flagged, c.hard), sizes.examples)
    for group, k, n in ((FLAGGED, c.flagged, sizes.flagged), (HARD, c.hard, sizes.hard)):
      if n <= 0 or k < min_support or count <= 0:
        continue
      share_group, share_split = k / n, count / sizes.examples
      if share_group <= share_split:
        continue
      tested.append((i, group, hypergeometric_sf(min(k, n), sizes.examples, count, n),
                     share_group / share_split))
  adjusted = benjamini_hochberg([t[2] for t in tested], num_tests)
  best: Dict[int, Tuple[float, float, str, float]] = {}
  for (i, group, p, lift), q in zip(tested, adjusted.tolist()):
    if q <= alpha and (i not in best or (q, p) < best[i][:2]):
      best[i] = (q, p, group, lift)
  rows = []
  for i, (q, p, group, lift) in best.items():
    c = candidates[i]
    count = min(max(c.count, c.flagged, c.hard), sizes.examples)
    rows.append({
        'feature': c.feature, 'kind': c.kind, 'value': c.value,
        'range': None if c.kind != NUMERIC else [c.low, c.high],
        'classes': None if c.classes is None else list(c.classes),
        'count': count, 'flagged': c.flagged, 'hard': c.hard,
        'share_in_split': count / sizes.examples,
        'share_flagged': c.flagged / sizes.flagged if sizes.flagged else 0.0,
        'share_hard': c.hard / sizes.hard if sizes.hard else 0.0,
        'group': group, 'lift': lift, 'p_value': p, 'p_adjusted': q,
        'approximate': c.approximate})
  rows.sort(key=lambda r: (r['p_value'], -r['lift'], -r[r['group']], r['feature'],
                           r['value']))
  rows = rows[:max_rows]
  for rank, row in enumerate(rows, 1):
    row['rank'] = rank
  return rows, num_tests


def _check_settings(min_support, alpha, max_rows) -> None:
  if isinstance(min_support, bool) or not isinstance(min_support, (int, np.integer)) or (
      min_support < 1):
    raise ValueError(f'min_support={min_support!r}; give a whole number of at least 1')
  if not 0.0 < alpha <= 1.0:
    raise ValueError(f'alpha={alpha!r} must be in (0, 1], e.g. {ALPHA}')
  if isinstance(max_rows, bool) or not isinstance(max_rows, (int, np.integer)) or (
      max_rows < 1):
    raise ValueError(f'max_rows={max_rows!r}; give a whole number of at least 1')


def sketch_candidates(feature: str, kind: str, split: HeavyHitters, flagged: HeavyHitters,
                      hard: HeavyHitters, name=str) -> List[SliceCounts]:
  """SliceCounts of every key any of the three sketches holds: the split's count an
  upper bound, the groups' lower bounds; `name(key)` is the value's display text."""
  keys = set(split.counts) | set(flagged.counts) | set(hard.counts)
  approximate = bool(split.error_bound() or flagged.error_bound() or hard.error_bound())
  out = []
  for key in sorted(keys, key=repr):
    out.append(SliceCounts(feature, kind, name(key), split.upper(key),
                           flagged.estimate(key), hard.estimate(key), approximate,
                           classes=key if kind == LABEL_PAIR else None))
  return out


# A quantile histogram: (low, high, count) per bucket, in order.
Histogram = Sequence[Tuple[float, float, float]]


def count_below(histogram: Histogram, x: float) -> float:
  """How many values of a quantile histogram are below `x`, by linear interpolation
  inside a bucket (a bucket of one value is wholly below x or not)."""
  total = 0.0
  for low, high, count in histogram:
    if high < x:
      total += count
    elif low < x:
      total += count * (x - low) / (high - low) if high > low else count
  return total


def numeric_ranges(histogram: Histogram, num_ranges: int = NUMERIC_RANGES
                   ) -> List[Tuple[Optional[float], Optional[float]]]:
  """[low, high) ranges (None: unbounded) cutting a split's values at its quantiles:
  about `num_ranges` of them, fewer where the values repeat."""
  if not histogram:
    return []
  total = sum(c for _, _, c in histogram)
  if total <= 0:
    return []
  cuts: List[float] = []
  edges = np.cumsum([c for _, _, c in histogram])
  for j in range(1, num_ranges):
    at = int(np.searchsorted(edges, total * j / num_ranges - 1e-9 * total))
    if at + 1 < len(histogram):
      cuts.append(float(histogram[at + 1][0]))
  lowest = float(histogram[0][0])
  cuts = sorted({c for c in cuts if c > lowest and math.isfinite(c)})
  bounds: List[Optional[float]] = [None] + cuts + [None]
  return list(zip(bounds[:-1], bounds[1:]))


def count_in_range(histogram: Histogram, low: Optional[float], high: Optional[float]
                   ) -> float:
  """How many values of a quantile histogram are in [low, high) (None: unbounded)."""
  total = sum(c for _, _, c in histogram)
  upper = total if high is None else count_below(histogram, high)
  lower = 0.0 if low is None else count_below(histogram, low)
  return max(0.0, upper - lower)


def range_text(low: Optional[float], high: Optional[float]) -> str:
  """A numeric range as text: '< 3', '[3, 7.5)', '>= 7.5'."""
  if low is None and high is None:
    return 'any'
  if low is None:
    return f'< {high:.6g}'
  if high is None:
    return f'>= {low:.6g}'
  return f'[{low:.6g}, {high:.6g})'
