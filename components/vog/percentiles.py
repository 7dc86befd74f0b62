"""Where a score stands in its split: class mean and std, percentile, decile, bucket.

Pure functions on numbers, beside the VoG core; the Beam transforms only apply them.
"""

from typing import Iterable, Sequence, Tuple

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

  def result(self) -> Tuple[int, float, float]:
    """(count, mean, population std); std is 0 for an empty set."""
    std = float(np.sqrt(self.m2 / self.count)) if self.count else 0.0
    return self.count, float(self.mean), std

  def __reduce__(self):
    return MeanStd, (self.count, self.mean, self.m2)


def percentile_of(score: float, quantiles: Sequence[float]) -> float:
  """Share (0-100) of the split at or below `score`, read off its quantile boundaries."""
  position = np.searchsorted(np.asarray(quantiles), score, side='right') - 1
  return float(np.clip(100.0 * position / (len(quantiles) - 1), 0.0, 100.0))


def bucket_of(percentile: float, cuts: Sequence[float]) -> str:
  """`easy` up to the first cut, `medium` up to the second, `hard` above."""
  if percentile <= cuts[0]:
    return 'easy'
  return 'medium' if percentile <= cuts[1] else 'hard'


def decile_of(percentile: float) -> int:
  """1..10; a percentile of 0 falls in the first decile."""
  return int(np.clip(np.ceil(percentile / 10.0), 1, 10))
