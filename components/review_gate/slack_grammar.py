"""What a Slack answer says: the reply grammar and the reaction lists of the review gate.

A reply counts only when it is exactly a decision word, optionally followed by `:` or `-`
and a comment, after any @mentions:

    approve: class 8 spot-checked      LGTM - ship it      *Rejected* - see the report

A `?` anywhere, or a negation or condition in an approval's comment (`approve - once the
labels are fixed`, `LGTM: not before Monday`), makes a reply count for nothing. A reaction
counts when its name (skin tone aside) is in APPROVE_REACTIONS or REJECT_REACTIONS.
"""

import re
from typing import Optional, Tuple

from components.review_gate import decision as decision_lib

# The decision words, matched whole and case-insensitively.
APPROVE_WORDS = ('approve', 'approved', 'lgtm', 'ship', 'ship it')
REJECT_WORDS = ('reject', 'rejected', 'decline', 'declined', 'stop')
# Words that make an approval's comment negated or conditional (and words ending in n't).
NEGATION_WORDS = frozenset({'no', 'not', 'never', 'none', 'nope', 'nor', 'without', 'cannot',
                            'dont', 'wont', 'cant', 'shouldnt', 'wait', 'hold'})
CONDITION_WORDS = frozenset({'if', 'unless', 'once', 'until', 'till', 'after', 'before', 'when',
                             'whenever', 'provided', 'assuming', 'pending', 'but', 'except',
                             'however', 'though', 'although'})
APPROVE_REACTIONS = frozenset({'white_check_mark', 'heavy_check_mark', '+1', 'thumbsup'})
REJECT_REACTIONS = frozenset({'x', 'no_entry', 'no_entry_sign', '-1', 'thumbsdown'})
_MENTIONS = re.compile(r'^\s*(?:<[@!][^>]*>[\s,:]*)+')
_WORDS = '|'.join(re.escape(w) for w in sorted(APPROVE_WORDS + REJECT_WORDS, key=len,
                                                reverse=True))
_STARTS_WITH_WORD = re.compile(rf'[*_]?(?:{_WORDS})\b', re.IGNORECASE)
_REPLY = re.compile(
    rf'(?P<mark>[*_]?)(?P<word>{_WORDS})(?P=mark)[.!]?(?:\s*[:\-\u2013\u2014]\s*(?P<comment>.*))?',
    re.IGNORECASE | re.DOTALL)
_GRAMMAR = 'only a decision word, optionally followed by ":" or "-" and a comment, counts'


def read_reply(text: str) -> Tuple[Optional[str], str, str]:
  """Reads one thread reply: (verdict or None, comment, why it does not count).

  `why` is '' for a reply that decides and for ordinary discussion (text that does not start
  with a decision word); it says what is wrong with a reply that looks like an answer but is
  not one, so that the gate can log it.
  """
  text = _MENTIONS.sub('', text or '').strip().replace('\u2019', "'")
  if not _STARTS_WITH_WORD.match(text):
    return None, '', ''
  if '?' in text:
    return None, '', 'a question ("?") is not a decision'
  match = _REPLY.fullmatch(text)
  if not match:
    return None, '', _GRAMMAR
  word, comment = match.group('word').lower(), (match.group('comment') or '').strip()
  if word in REJECT_WORDS:
    return decision_lib.REJECTED, comment, ''  # a hedged rejection still fails closed
  hedge = _hedge(comment)
  if hedge:
    return None, '', f'an approval with "{hedge}" in it is negated or conditional'
  return decision_lib.APPROVED, comment, ''


def parse_reply(text: str) -> Tuple[Optional[str], str]:
  """`'reject: labels of class 3 look wrong'` -> ('rejected', 'labels of class 3 look wrong').

  Anything that is not a decision by `read_reply`'s grammar is (None, '').
  """
  verdict, comment, _ = read_reply(text)
  return verdict, comment


def _hedge(comment: str) -> str:
  """The first negation or condition word in `comment`, or ''."""
  for word in re.findall(r"[a-z']+", comment.lower()):
    bare = word.replace("'", '')
    if bare in NEGATION_WORDS or bare in CONDITION_WORDS or word.endswith("n't"):
      return word
  return ''


def reaction_verdict(name: str) -> Optional[str]:
  """The verdict of a reaction by its name (skin tone ignored), or None when it is not listed."""
  name = (name or '').split('::')[0]
  if name in APPROVE_REACTIONS:
    return decision_lib.APPROVED
  if name in REJECT_REACTIONS:
    return decision_lib.REJECTED
  return None
