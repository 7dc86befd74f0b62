"""Scores the benchmarks compute beside the audit's own, at once over a whole split.

* `normalize_scores`: VoG normalised within each class, as the audit's `normalize` does
  example by example (percentiles.normalize_score) once it knows every class's mean and
  std;
* `percentile_ranks` and `combined_suspicion`: the mean percentile rank of several
  signals' suspicions, the `combined` row of benchmarks/quality.py. The audit ranks by one
  signal (`rank_by`); this is the combination it was compared with.

Not part of the product: nothing under components/ imports this module.
"""

from typing import Mapping, Optional, Sequence

import numpy as np

from components.vog.compute import scoring
from components.vog.compute import signals
from components.vog.compute.percentiles import normalize_score

# The `combined` row of benchmarks/quality.py, and the signals it averages by default:
# confidence alone, since no combination tried beat it in `make quality` (the README's
# "Which signal finds wrong labels" gives the figures).
COMBINED = 'combined'
COMBINED_SIGNALS = (signals.CONFIDENCE,)


def normalize_scores(vog_raw: np.ndarray, classes: np.ndarray,
                     normalize: str) -> np.ndarray:
  """Normalises the scores of one split (arrays of equal length) per target class."""
  scoring.check_choice('normalize', normalize, scoring.NORMALIZATIONS)
  vog_raw = np.asarray(vog_raw, dtype=np.float64)
  classes = np.asarray(classes)
  out = np.empty_like(vog_raw)
  for c in np.unique(classes):
    members = classes == c
    values = vog_raw[members]
    mean, std = values.mean(), values.std()
    out[members] = [normalize_score(v, mean, std, values.size, normalize) for v in values]
  return out


def percentile_ranks(values: np.ndarray, classes: Optional[np.ndarray] = None
                     ) -> np.ndarray:
  """Each value's percentile (0-100): the share of values at or below it.

  Without `classes` the share is taken over all values (the split); with `classes`,
  within each value's class. Either is what an audit reads off per-class quantiles:
  the split-wide share is the count-weighted mean of every class's share at or below
  the value (percentiles.Ranking.percentiles), so a score built from these needs no more
  than per-class quantiles of each signal.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1:
    raise ValueError(f'values must be 1-D; got shape {values.shape}')
  if classes is None:
    classes = np.zeros(len(values), np.int64)
  classes = np.asarray(classes)
  if classes.shape != values.shape:
    raise ValueError(f'values and classes must be of one length; got shapes '
                     f'{values.shape} and {classes.shape}')
  out = np.empty(len(values))
  for c in np.unique(classes):
    members = classes == c
    ordered = np.sort(values[members])
    out[members] = 100.0 * np.searchsorted(ordered, values[members], side='right') / len(
        ordered)
  return out


def combined_suspicion(values: Mapping[str, np.ndarray],
                       names: Sequence[str] = COMBINED_SIGNALS,
                       classes: Optional[np.ndarray] = None) -> np.ndarray:
  """The mean over `names` (signal fields) of each suspicion's percentile rank (0-100).

  `values` maps signal fields to arrays as signals.compute_signals returns them. Ranks
  are split-wide unless `classes` is given (then within class). Higher = more likely
  mislabeled. Ranks within class give every class the same share of the top, which
  costs most where wrong labels crowd into a few classes; split-wide ranks are the
  count-weighted mean of per-class shares, so they too need no more than per-class
  quantiles.
  """
  missing = [n for n in names if n not in values]
  if missing or not names:
    raise ValueError(f'combined needs the signals {list(names)}; missing {missing}')
  return np.mean([percentile_ranks(signals.suspicion(n, values[n]), classes)
                  for n in names], axis=0)
