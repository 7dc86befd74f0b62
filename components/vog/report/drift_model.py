"""The drift model: this audit against the audit of the last shipped model.

`Drift` is summary.json's `drift` (per split `DriftSplit`, per class `DriftClass`, and
the shift statistic SHIFT_STATISTIC); `parse_drift` reads it back checked and
`Drift.to_json` writes it. The review gate, the review page and the command line read
drift through these types; dataflow/drift.py computes it.
"""

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

from components.vog import vocabulary as vocab
from components.vog.report import json_checks as jc


class _ShareChanges:
  """Changes are now minus then, derived rather than stored, so a summary cannot carry a
  change its shares contradict."""
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float

  @property
  def flagged_share_change(self) -> float:
    return self.flagged_share_now - self.flagged_share_then

  @property
  def hard_share_change(self) -> float:
    return self.hard_share_now - self.hard_share_then


@dataclasses.dataclass(frozen=True)
class DriftSplit(_ShareChanges):
  """One split now against the baseline. Shares are fractions (0..1) of scored examples.

  The example counts come from matching example_ids with the baseline's history:
  `matched` are in both runs, `new_examples` only now (`gone_examples` were in the
  baseline's split only). Of the examples flagged now, `newly_flagged` were matched but
  not flagged then, `still_flagged` were flagged then too, and `flagged_new_data` are
  new; `no_longer_flagged` were flagged then and are matched but not flagged now.
  """
  split: str
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float
  matched: int
  new_examples: int
  gone_examples: int
  newly_flagged: int
  still_flagged: int
  no_longer_flagged: int
  flagged_new_data: int
  flagged_new_data_share: Optional[float]  # of the flagged set; None when none is flagged


@dataclasses.dataclass(frozen=True)
class DriftClass(_ShareChanges):
  """One class of one split now against the baseline; `psi` is SHIFT_STATISTIC."""
  split: str
  class_id: int
  count_now: int
  count_then: int
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float
  psi: float

  @property
  def hard_share_z(self) -> float:
    """The rise of the hard share against chance: a two-proportion z statistic,
    change / sqrt(p (1 - p) (1/n_now + 1/n_then)) with p the pooled share; 0 when a side
    is empty or the pooled share is 0 or 1. One example moves a class of a dozen by 8
    points, a z of about 0.7; a real rise in a class of hundreds scores far higher."""
    if not self.count_now or not self.count_then:
      return 0.0
    pooled = ((self.hard_share_now * self.count_now + self.hard_share_then * self.count_then)
              / (self.count_now + self.count_then))
    spread = pooled * (1.0 - pooled) * (1.0 / self.count_now + 1.0 / self.count_then)
    return self.hard_share_change / math.sqrt(spread) if spread > 0 else 0.0


# Per class: the population stability index of the vog_decile histogram (vog_percentile
# in ten bins) now against then, sum((p_now - p_then) * ln(p_now / p_then)), each bin's
# share smoothed as (count + 0.5) / (total + 5). Percentiles are ranks of class-normalised
# scores, comparable between models where raw VoG is not. Under 0.1 is read as stable,
# 0.1 to 0.25 as a moderate shift, above 0.25 as a large one.
SHIFT_STATISTIC = 'psi_vog_decile'


@dataclasses.dataclass(frozen=True)
class Drift:
  """summary.json's `drift`: this audit against the audit of the last shipped model.

  `unavailable` says why nothing could be compared (the baseline's report is missing,
  unreadable or from a release before format_version 3); the other fields are then empty.
  `streaks` counts the examples flagged now by how many audits in a row (>= 2) they have
  been flagged.
  """
  baseline_uri: str
  baseline_created_at: Optional[str]
  unavailable: Optional[str]
  flagged_share_now: Optional[float]
  flagged_share_then: Optional[float]
  splits: Tuple[DriftSplit, ...]
  per_class: Tuple[DriftClass, ...]
  streaks: Dict[int, int]

  @property
  def flagged_share_change(self) -> Optional[float]:
    if self.flagged_share_now is None or self.flagged_share_then is None:
      return None
    return self.flagged_share_now - self.flagged_share_then

  @property
  def largest_hard_share_increase(self) -> Optional[DriftClass]:
    """The class (of any split) whose hard share rose most against chance, by
    DriftClass.hard_share_z, so that one example more in a small class does not outrank a
    real rise in a large one; None when none rose."""
    rising = [c for c in self.per_class if c.hard_share_change > 0 and c.hard_share_z > 0]
    return max(rising, key=lambda c: (c.hard_share_z, c.hard_share_change, -c.class_id)
               ) if rising else None

  @property
  def newly_flagged(self) -> int:
    return sum(s.newly_flagged for s in self.splits)

  @property
  def still_flagged(self) -> int:
    return sum(s.still_flagged for s in self.splits)

  @property
  def longest_streak(self) -> int:
    return max(self.streaks, default=0)

  def properties(self) -> Dict[str, Any]:
    """The vocab.DRIFT_PROPERTIES values; only the baseline and why when it could not be
    compared."""
    if self.unavailable is not None:
      return {vocab.DRIFT_UNAVAILABLE: self.unavailable[:1000],
              vocab.DRIFT_BASELINE_URI: self.baseline_uri}
    top = self.largest_hard_share_increase
    return {vocab.FLAGGED_SHARE_CHANGE: float(self.flagged_share_change or 0.0),
            vocab.NEWLY_FLAGGED: self.newly_flagged, vocab.STILL_FLAGGED_COUNT: self.still_flagged,
            vocab.MAX_CLASS_HARD_SHARE_INCREASE: float(top.hard_share_change) if top else 0.0,
            vocab.MAX_HARD_SHARE_CLASS: f'{top.split}/{top.class_id}' if top else '',
            vocab.DRIFT_BASELINE_URI: self.baseline_uri}

  def to_json(self) -> Dict[str, Any]:
    return {
        'baseline': {'uri': self.baseline_uri, 'created_at': self.baseline_created_at},
        'unavailable': self.unavailable,
        'shift_statistic': SHIFT_STATISTIC,
        'flagged_share_now': self.flagged_share_now,
        'flagged_share_then': self.flagged_share_then,
        'flagged_share_change': self.flagged_share_change,
        'splits': [_with_changes(r) for r in self.splits],
        'per_class': [_with_changes(r) for r in self.per_class],
        'streaks': {str(k): int(v) for k, v in sorted(self.streaks.items())},
    }


def _with_changes(row) -> Dict[str, Any]:
  """A drift row's JSON with its derived changes, for readers of summary.json."""
  return dict(jc.to_json(row), flagged_share_change=row.flagged_share_change,
              hard_share_change=row.hard_share_change)


def parse_drift(raw: Any, where: str) -> Drift:
  """The Drift of summary.json's `drift` object; ReportFormatError for a bad one."""
  where = f'{where}, drift'
  jc.check(raw, jc.OBJ, where, 'drift')
  baseline = jc.field(raw, 'baseline', jc.OBJ, where)
  streaks = {}
  for k, v in jc.check(raw.get('streaks') or {}, jc.OBJ, where, "'streaks'").items():
    if not k.isdigit() or int(k) < 2:
      jc.fail(where, f'has a streak length {k!r}; expected a whole number >= 2')
    streaks[int(k)] = jc.check(v, jc.INT, where, f'streaks[{k!r}]')
  return Drift(
      baseline_uri=jc.field(baseline, 'uri', jc.STR, f'{where}, baseline'),
      baseline_created_at=jc.field(baseline, 'created_at', jc.STR, f'{where}, baseline',
                                   optional=True),
      unavailable=jc.field(raw, 'unavailable', jc.STR, where, optional=True),
      flagged_share_now=jc.field(raw, 'flagged_share_now', jc.NUM, where, optional=True),
      flagged_share_then=jc.field(raw, 'flagged_share_then', jc.NUM, where, optional=True),
      splits=jc.rows(raw.get('splits') or [], 'splits', DriftSplit, where),
      per_class=jc.rows(raw.get('per_class') or [], 'per_class', DriftClass, where),
      streaks=streaks)
