"""The rule every review backend decides by, and it does not depend on the order of answers.

    The model ships only when at least `quorum` of the gate's approvers approved and no approver
    rejected before the decision. Any approver's rejection, at any time before the decision,
    stops it.

So the outcome is a function of two sets - who approved, who rejected - and not of which
answer came first: an answer that Slack dates earlier (an edited message keeps its first `ts`),
a reaction whose time nobody knows, or a clock moved on disk cannot reorder anything. Times are
kept only to say in the record when the review was decided.

What counts as an answer is each backend's business (a thread reply or reaction in Slack, a
`vog-audit review` answer on disk); `tally` only applies the rule to the answers a backend
collected.
"""

import dataclasses
from typing import Iterable, Optional, Sequence, Tuple

from components.review_gate import decision as decision_lib

VERDICTS = (decision_lib.APPROVED, decision_lib.REJECTED)


@dataclasses.dataclass(frozen=True)
class Answer:
  """One approver's approval or rejection, as a backend read it."""
  user: str
  verdict: str  # decision.APPROVED or decision.REJECTED
  at: float  # epoch seconds: when it was given (Slack `ts`) or first seen; only reported
  how: str  # 'thread reply', 'reaction :x:', 'vog-audit review'
  comment: str = ''
  key: str = ''  # what identifies it within the review (a message ts, 'reaction/user')

  def __post_init__(self):
    if self.verdict not in VERDICTS:
      raise ValueError(f'an answer is {" or ".join(VERDICTS)}, not {self.verdict!r}')


@dataclasses.dataclass(frozen=True)
class Tally:
  """What the rule makes of a set of answers.

  `verdict` is APPROVED, REJECTED or None (not decided yet). `deciding` holds the answers the
  verdict rests on: every counted rejection, earliest first, or each approver's first approval,
  earliest first. `approvers_approved` counts distinct approvers who approved.
  """
  verdict: Optional[str]
  deciding: Tuple[Answer, ...]
  approvers_approved: int
  quorum: int

  @property
  def reviewers(self) -> str:
    """The deciding approvers, comma-separated, in the order they answered."""
    return ','.join(dict.fromkeys(answer.user for answer in self.deciding))

  @property
  def decided_at(self) -> Optional[float]:
    """When the verdict became true: the first rejection, or the approval that met the quorum."""
    if not self.deciding:
      return None
    if self.verdict == decision_lib.REJECTED:
      return self.deciding[0].at
    return self.deciding[min(self.quorum, len(self.deciding)) - 1].at

  @property
  def how(self) -> str:
    """How the deciding answers were given, e.g. 'thread reply' or 'reaction :x:, thread reply'."""
    return ', '.join(dict.fromkeys(answer.how for answer in self.deciding))

  @property
  def comment(self) -> str:
    """The deciding answers' comments (a rejection's reason), joined."""
    return '; '.join(a.comment for a in self.deciding if a.comment)


def check_quorum(quorum, approvers: Sequence[str]) -> int:
  """Returns `quorum` when it is a whole number from 1 to the number of distinct approvers.

  Raises ValueError naming the value and the range: a quorum no set of approvers can meet
  would block every model, and 0 would ship one nobody approved.
  """
  distinct = len(set(approvers))
  if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= max(
      distinct, 1):
    raise ValueError(
        f'quorum must be a whole number from 1 to the number of distinct approvers ({distinct}),'
        f' got {quorum!r}')
  return quorum


def tally(answers: Iterable[Answer], approvers: Sequence[str], quorum: int = 1) -> Tally:
  """Applies the rule to `answers`; answers by anyone outside `approvers` are left out.

  Any rejection by an approver gives REJECTED; otherwise `quorum` distinct approvers who
  approved give APPROVED; otherwise nothing is decided yet. The result is the same for any
  order of `answers`.
  """
  allowed = set(approvers)
  counted = sorted((a for a in answers if a.user in allowed),
                   key=lambda a: (a.at, a.user, a.key, a.verdict))
  rejections = tuple(a for a in counted if a.verdict == decision_lib.REJECTED)
  first_approval = {}
  for answer in counted:
    if answer.verdict == decision_lib.APPROVED:
      first_approval.setdefault(answer.user, answer)
  approvals = tuple(first_approval.values())
  if rejections:
    return Tally(decision_lib.REJECTED, rejections, len(approvals), quorum)
  if len(approvals) >= quorum:
    return Tally(decision_lib.APPROVED, approvals, len(approvals), quorum)
  return Tally(None, (), len(approvals), quorum)


def describe(result: Tally) -> str:
  """One line for logs and reasons, e.g. 'approved by U1,U2 (2 approvals, 2 needed)'."""
  if result.verdict == decision_lib.REJECTED:
    return f'rejected by {result.reviewers}'
  if result.verdict == decision_lib.APPROVED:
    return f'approved by {result.reviewers}' + (
        f' ({result.approvers_approved} approvals, {result.quorum} needed)'
        if result.quorum > 1 else '')
  return (f'{result.approvers_approved} of the {result.quorum} approval(s) needed so far, '
          'no rejection')
