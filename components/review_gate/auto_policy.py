"""The `auto` backend: a written policy on the report's numbers decides, and says which rule.

A policy is a dict of thresholds, e.g. `{"max_flagged_share": 0.15, "min_hard_accuracy": 0.6}`.
Rules are checked in the order of RULES; the first that fails rejects. A number the policy
needs but the inputs lack (no evaluation, nothing scored) rejects too: the gate fails closed.

Two rules compare the audit with the audit of the last model that shipped (the report's
drift), in fractions of scored examples, as now minus then:

  max_flagged_share_increase      the rise of the flagged share over all splits, e.g. 0.02
                                  (2 points) rejects 11.1% -> 13.5%
  max_class_hard_share_increase   the rise of the hard share of the class that rose most
                                  against chance (Drift.largest_hard_share_increase, as the
                                  headline names it); the reason names the class and split

Both pass, saying why in the decision's reason, when there is nothing to compare with: no
model has shipped yet (the first audits of a pipeline), or the last shipped model's report
could not be compared (drift `unavailable`: its folder is gone, unreadable, or from a
release before drift), or, for the class rule, when no split of this audit was in that one.
Passing is a choice: the baseline only moves when a model ships, so failing closed would
block every later model forever once a baseline is lost. The other rules still apply, and
the review page and messages state why drift is missing.
"""

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Tuple

from absl import logging

from components.review_gate import backend_api
from components.review_gate import decision as decision_lib
from components.review_gate import review_summary

BACKEND = 'auto'


def _share(part: int, whole: int) -> Optional[float]:
  return None if not whole else part / whole


def _flagged_share(s: review_summary.ReviewSummary):
  c = s.counts
  return _share(c['flagged'], c['scored']), f'{c["flagged"]}/{c["scored"]} flagged'


def _quarantined_share(s: review_summary.ReviewSummary):
  c = s.counts
  return _share(c['quarantined'], c['seen']), f'{c["quarantined"]}/{c["seen"]} quarantined'


def _quarantined(s: review_summary.ReviewSummary):
  return s.counts['quarantined'], 'quarantined examples'


def _class_flagged_share(s: review_summary.ReviewSummary):
  if not s.worst_classes:
    return None, 'no per-class statistics'
  worst = s.worst_classes[0]
  return (float(worst.get('flagged_share') or 0.0),
          f'worst class {worst.get("class")} in {worst.get("split")}')


# A rule's reading when there is no baseline to compare with: the rule passes, saying why.
NOT_COMPARED = object()


def _no_baseline(s: review_summary.ReviewSummary) -> Optional[str]:
  """Why the drift rules cannot compare, or None when they can."""
  if s.drift is None:
    return 'no shipped model to compare with'
  if s.drift.unavailable is not None:
    return ('drift against the last shipped model is unavailable ('
            + review_summary.one_line(s.drift.unavailable) + ')')
  return None


def _flagged_share_increase(s: review_summary.ReviewSummary):
  skip = _no_baseline(s)
  if skip is not None:
    return NOT_COMPARED, skip
  d = s.drift
  return d.flagged_share_change, (
      f'flagged share change since the last shipped model '
      f'({review_summary.format_share(d.flagged_share_then)} -> '
      f'{review_summary.format_share(d.flagged_share_now)})')


def _class_hard_share_increase(s: review_summary.ReviewSummary):
  skip = _no_baseline(s)
  if skip is not None:
    return NOT_COMPARED, skip
  if not s.drift.per_class:
    return NOT_COMPARED, ('no split of this audit was audited for the last shipped model, so '
                          'no class can be compared')
  # The class that rose most against chance (see report_format.Drift), as the headline
  # names it; when none rose, the smallest fall.
  top = s.drift.largest_hard_share_increase or max(
      s.drift.per_class, key=lambda c: (c.hard_share_change, -c.class_id))
  return top.hard_share_change, (
      f'hard share change of class {top.class_id} in {review_summary.one_line(top.split)} '
      f'since the last shipped model ({review_summary.format_share(top.hard_share_then)} -> '
      f'{review_summary.format_share(top.hard_share_now)})')


def _overall_accuracy(s: review_summary.ReviewSummary):
  return s.overall_accuracy, 'overall accuracy'


def _hard_accuracy(s: review_summary.ReviewSummary):
  return s.hard_accuracy, 'accuracy on the vog_bucket=hard slice'


# name -> (reads the number, True when the threshold is a maximum)
RULES: Dict[str, Tuple[Callable, bool]] = {
    'max_flagged_share': (_flagged_share, True),
    'max_quarantined_share': (_quarantined_share, True),
    'max_quarantined': (_quarantined, True),
    'max_class_flagged_share': (_class_flagged_share, True),
    'max_flagged_share_increase': (_flagged_share_increase, True),
    'max_class_hard_share_increase': (_class_hard_share_increase, True),
    'min_overall_accuracy': (_overall_accuracy, False),
    'min_hard_accuracy': (_hard_accuracy, False),
}


def check_policy(policy: Optional[Mapping]) -> Dict[str, float]:
  """Returns the policy with float thresholds.

  Refuses: no rules at all (that would approve everything), an unknown rule, a threshold
  that is not a number.
  """
  if not policy:
    raise ValueError('auto_policy needs at least one rule for backend="auto"; known rules: '
                     + ', '.join(RULES))
  checked = {}
  for name, value in policy.items():
    if name not in RULES:
      raise ValueError(f'auto_policy rule {name!r} is unknown; known rules: ' + ', '.join(RULES))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f'auto_policy rule {name!r} needs a number, got {value!r}')
    checked[name] = float(value)
  return checked


def decide(policy: Mapping, summary: review_summary.ReviewSummary) -> decision_lib.Decision:
  """Applies `policy` to `summary`: approved when every rule passes, else the first failure."""
  policy = check_policy(policy)
  passed = []
  for name, (read, is_max) in RULES.items():
    if name not in policy:
      continue
    threshold = policy[name]
    value, what = read(summary)
    if value is NOT_COMPARED:
      passed.append(f'{name}: passes, {what}')
      continue
    if value is None:
      return _verdict(decision_lib.REJECTED, f'rule {name} cannot be checked: {what} is not '
                      'available, so the policy rejects')
    ok = value <= threshold if is_max else value >= threshold
    line = f'{name}: {what} = {value:.4g} {"<=" if is_max else ">="} {threshold:.4g}'
    if not ok:
      sign = '>' if is_max else '<'
      return _verdict(decision_lib.REJECTED,
                      f'rule {name} failed: {what} = {value:.4g} {sign} {threshold:.4g}')
    passed.append(line)
  return _verdict(decision_lib.APPROVED,
                  f'all {len(passed)} rules passed (' + '; '.join(passed) + ')')


def _verdict(verdict: str, why: str) -> decision_lib.Decision:
  return decision_lib.Decision(decision=verdict, backend=BACKEND, reviewer='auto_policy',
                               reason=f'{verdict} by auto policy: {why}', comment=why)


class AutoBackend(backend_api.ReviewBackend):
  """The `auto` backend: `decide` applies the gate's `auto_policy`; nobody is asked, nothing is
  written to the reviews folder."""

  NAME = BACKEND
  DECIDES = ('a written policy decides: thresholds on the audit\'s and the Evaluator\'s numbers '
             '(RULES), checked in order; the first rule that fails rejects')
  NEEDS_APPROVERS = False
  RECORDS = False

  @classmethod
  def check_settings(cls, settings: backend_api.GateSettings) -> backend_api.GateSettings:
    """Refuses a gate without a policy, an unknown rule, a threshold that is not a number."""
    settings = super().check_settings(settings)
    return dataclasses.replace(settings, auto_policy=check_policy(settings.auto_policy))

  def review(self, request: backend_api.ReviewRequest) -> backend_api.ReviewResult:
    outcome = decide(self.settings.auto_policy, request.summary)
    logging.info('Auto policy: %s', outcome.reason)
    return backend_api.ReviewResult(outcome)
