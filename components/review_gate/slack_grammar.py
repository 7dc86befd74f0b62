"""What a Slack answer says: the reply grammar and the reaction lists of the review gate.

The grammar has two rules, applied to the reply's text after Unicode NFKC normalisation (so
full-width letters and compatibility forms read as the plain letters they look like):

- an approval is a reply that is exactly `approve`: any case, one optional final full stop,
  nothing else (no comment, no mention, no formatting);
- a rejection is a reply whose first word is one of REJECT_WORDS, after any @mentions, emoji
  codes and formatting marks; whatever follows is its reason:

      approve        Approve.        reject: class 3 labels are swapped        _no_ - wait

Anything else that mentions approving or rejecting (`approve - ok?`, `LGTM`, `approve: once
labels are fixed`) is not an answer; the gate tells the approver so in the thread and logs it.
Everything else is discussion. Approval is narrow and rejection broad on purpose: a reply
that might mean either never approves, and one that starts like a refusal always refuses.

A reaction counts when its name (skin tone aside) is in APPROVE_REACTIONS or REJECT_REACTIONS.
"""

import dataclasses
import re
import unicodedata
from typing import Optional, Tuple

from components.review_gate import decision as decision_lib

APPROVAL = 'approve'
# First words that make a reply a rejection (apostrophes dropped: "don't" reads "dont").
REJECT_WORDS = ('reject', 'rejected', 'decline', 'declined', 'veto', 'vetoed', 'block',
                'blocked', 'stop', 'no', 'nope', 'nah', 'not', 'never', 'dont')
APPROVE_REACTIONS = frozenset({'white_check_mark', 'heavy_check_mark', '+1', 'thumbsup'})
REJECT_REACTIONS = frozenset({'x', 'no_entry', 'no_entry_sign', '-1', 'thumbsdown'})
GRAMMAR = ('to approve, reply with exactly "approve"; to reject, start a reply with "reject" '
           '(or no, not, stop, veto, block, decline) and give the reason')

_APOSTROPHES = re.compile('[\u2018\u2019\u02bc\u02bb\u02b9\u00b4\u2032]')
# Slack's mention and link syntax (<@U123>, <!here>, <http://...|x>) and emoji codes (:x:).
_MARKUP = re.compile(r'<[^>]*>|:[a-z0-9_+\-]+(?:::[a-z0-9_\-]+)?:')
_FIRST_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# Words that show a reply is about the decision: any form of approve (but "approver", a
# person), reject, decline, veto, ship, and lgtm.
_MENTIONS_DECISION = re.compile(
    r'(?<![^\W_])(approv(?!ers?(?![^\W_]))|reject|declin|veto|ship|lgtm)', re.IGNORECASE)
_REASON_START = re.compile(r'^[\s*_~`>:\-\u2013\u2014,.!]+')


@dataclasses.dataclass(frozen=True)
class Reply:
  """What one thread reply says.

  `verdict` is APPROVED, REJECTED or None. `reason` is a rejection's text after its first
  word. `why` is set for a reply that mentions the decision but is no answer: what counts.
  """
  verdict: Optional[str] = None
  reason: str = ''
  why: str = ''


def normalize(text: str) -> str:
  """NFKC, one kind of apostrophe, outer whitespace stripped: what the grammar reads."""
  text = unicodedata.normalize('NFKC', text or '')
  return _APOSTROPHES.sub("'", text).strip()


def read_reply(text: str) -> Reply:
  """Reads one thread reply by the grammar in the module docstring."""
  plain = normalize(text)
  if plain.casefold() in (APPROVAL, APPROVAL + '.'):
    return Reply(decision_lib.APPROVED)
  bare = _MARKUP.sub(' ', plain)
  first = _FIRST_WORD.search(bare)
  if first and first.group(0).casefold().replace("'", '') in REJECT_WORDS:
    reason = _REASON_START.sub('', bare[first.end():]).strip()
    reason = reason.rstrip('*_~` ')
    return Reply(decision_lib.REJECTED, reason=reason)
  if _MENTIONS_DECISION.search(bare):
    return Reply(why=f'it is neither an approval nor a rejection: {GRAMMAR}')
  return Reply()


def parse_reply(text: str) -> Tuple[Optional[str], str]:
  """`'reject: labels of class 3 look wrong'` -> ('rejected', 'labels of class 3 look wrong').

  Anything that is not an answer by `read_reply`'s grammar is (None, '').
  """
  reply = read_reply(text)
  return reply.verdict, reply.reason


def reaction_verdict(name: str) -> Optional[str]:
  """The verdict of a reaction by its name (skin tone ignored), or None when it is not listed."""
  name = (name or '').split('::')[0]
  if name in APPROVE_REACTIONS:
    return decision_lib.APPROVED
  if name in REJECT_REACTIONS:
    return decision_lib.REJECTED
  return None
