"""What a review ends with, in the words that go onto the output ModelBlessing."""

import dataclasses
import datetime
from typing import Optional

from components.review_gate import spec_keys

# Custom properties written onto the gate's output ModelBlessing (all strings), read back
# by `vog-audit runs`. `review_decision` is one of DECISIONS; `review_cache` says whether
# TFX's cache may hand this outcome out again; `review_cache_key` is the key the gate's
# driver gave the execution (component.ReviewGateDriver, spec_keys.CACHE_KEY_PROPERTY), ''
# where no driver ran.
DECISION_PROPERTY = 'review_decision'
REVIEW_PROPERTIES = (DECISION_PROPERTY, 'reviewer', 'review_comment', 'reviewed_at',
                     'review_backend', 'review_reason', 'review_id', 'slack_channel',
                     'slack_thread_ts', 'review_cache', spec_keys.CACHE_KEY_PROPERTY)

APPROVED = 'approved'
REJECTED = 'rejected'
TIMEOUT = 'timeout'
ERROR = 'error'
NOT_BLESSED_UPSTREAM = 'not_blessed_upstream'

DECISIONS = (APPROVED, REJECTED, TIMEOUT, ERROR, NOT_BLESSED_UPSTREAM)
# Outcomes that follow from the inputs and from what a person said: the same model and report
# would end the same way, so TFX may hand them out again from its cache. A timeout or an error
# says nothing about the model, and the next run must ask again.
REUSABLE = (APPROVED, REJECTED, NOT_BLESSED_UPSTREAM)


def utc_now() -> str:
  """The current time as ISO-8601 UTC with a `Z`, second precision."""
  return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def iso_time(epoch_seconds: float) -> str:
  """`epoch_seconds` as ISO-8601 UTC with a `Z`, second precision."""
  moment = datetime.datetime.fromtimestamp(epoch_seconds, datetime.timezone.utc)
  return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def slack_time(ts: str) -> str:
  """A Slack message `ts` ('1712345678.000200') as ISO-8601 UTC with microseconds and a `Z`."""
  seconds, _, micros = str(ts).partition('.')
  moment = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
  return moment.strftime('%Y-%m-%dT%H:%M:%S') + f'.{(micros or "0")[:6]:0<6}Z'


@dataclasses.dataclass
class Decision:
  """The outcome of one review.

  Only `decision == 'approved'` blesses the model; everything else fails closed.
  `reason` says in one line why the gate ended where it did (the rule, the error, the timeout).
  """
  decision: str
  backend: str
  reason: str
  reviewer: str = ''
  comment: str = ''
  reviewed_at: str = dataclasses.field(default_factory=utc_now)
  slack_channel: str = ''
  slack_thread_ts: str = ''

  def __post_init__(self):
    if self.decision not in DECISIONS:
      raise ValueError(f'unknown review decision {self.decision!r}; expected one of {DECISIONS}')

  @property
  def blessed(self) -> bool:
    return self.decision == APPROVED

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict) -> 'Decision':
    """The decision `to_json` wrote; ValueError naming the first field that is missing, unknown
    or not a string (a review record is read from a folder others can write)."""
    if not isinstance(data, dict):
      raise ValueError(f'a decision is a JSON object, not a {type(data).__name__}')
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
      raise ValueError(f'the decision has an unknown field {unknown[0]!r}')
    for name in ('decision', 'backend', 'reason'):
      if name not in data:
        raise ValueError(f'the decision has no {name}')
    for name, value in data.items():
      if not isinstance(value, str):
        raise ValueError(f'the decision has a {type(value).__name__} for {name}')
    return cls(**data)


class ReviewError(Exception):
  """A failure that ends the review as NOT_BLESSED with this message as the reason."""


class PermanentReviewError(ReviewError):
  """A failure that retrying will not fix (bad token, unknown channel, missing bot membership)."""


class TransientReviewError(ReviewError):
  """A failure that persisted through every retry (rate limits, 5xx, network)."""


def redact(text: Optional[str], secret: Optional[str]) -> str:
  """Returns `text` with every occurrence of `secret` replaced, so no message can carry it."""
  text = text or ''
  if secret:
    text = text.replace(secret, '<redacted>')
  return text
