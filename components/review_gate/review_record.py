"""The review record: one typed object per review, with the schema the store checks on every read.

A record is what a backend that asks people keeps on disk between executions of the gate
(`review_store.py` writes one JSON file per review). Its common fields say which question was
asked (the inputs' fingerprint, the model, the report, the headline numbers), of whom
(approvers and quorum, informational: the gate always uses its own), and how it ended; `state`
holds the fields the backend itself declares in `ReviewBackend.STATE_FIELDS`, e.g. the Slack
thread a review was posted to, or the answers given with `vog-audit review`.

    {"format_version": 2, "review_id": "3fa9c21b-1", "fingerprint": "<sha256 hex>",
     "backend": "slack", "status": "pending", "closed": false, "created_at": "...Z",
     "timeout_seconds": 14400.0, "approvers": ["U0ALICE"], "quorum": 1,
     "pipeline": "...", "run_id": "...", "node_id": "...", "model_uri": "...", "model_id": 11,
     "report_uri": "...", "report_id": 12, "headline": {...}, "decision": null,
     "state": {"slack_channel": "C0REVIEW", "slack_channel_id": "", "slack_thread_ts": "",
               "montage_uploaded": false}}

The folder is shared, so a record is input: `ReviewRecord.from_json` refuses, naming the
field, any record with a missing, unknown or ill-typed field, a value outside its pattern, or
state fields its backend does not declare. Nothing a record says is trusted for a decision:
each backend says in its module what it re-checks.
"""

import dataclasses
import math
import re
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from components.review_gate import decision as decision_lib

FORMAT_VERSION = 2
PENDING = 'pending'
ANSWERED = (decision_lib.APPROVED, decision_lib.REJECTED)
STATUSES = (PENDING,) + ANSWERED
# What the store hands out: 8 hex digits of the fingerprint, a dash, a counter.
REVIEW_ID_PATTERN = re.compile(r'[0-9a-f]{8}-[1-9][0-9]{0,5}')
REVIEW_ID_EXAMPLE = '3fa9c21b-1'
FINGERPRINT_PATTERN = re.compile(r'[0-9a-f]{64}')
ISO_TIME_PATTERN = re.compile(
    r'[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z')
MAX_TEXT = 4096  # longest string field; URIs and names are far shorter


class RecordError(ValueError):
  """A JSON value that is not a review record this version writes; the message names why."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One field of the schema: the JSON types it may hold and a check of its value.

  `check` returns '' for a good value and otherwise what is wrong with it, e.g.
  'is not a Slack channel ID'.
  """
  types: Tuple[type, ...]
  check: Optional[Callable[[Any], str]] = None

  def problem(self, name: str, value: Any) -> str:
    """Why `value` cannot be field `name`, or ''."""
    if (isinstance(value, bool) and bool not in self.types) or not isinstance(value, self.types):
      return f'has {_a(type(value).__name__)} for {name}'
    why = self.check(value) if self.check else ''
    return f'has {name} {_show(value)}, which {why}' if why else ''


def _a(noun: str) -> str:
  return ('an ' if noun[:1] in 'aeiou' else 'a ') + noun


def _show(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 60 else text[:57] + '...'


def text(pattern: Optional['re.Pattern'] = None, *, empty: bool = True,
         what: str = '') -> Field:
  """A string field: at most MAX_TEXT characters, no NUL; matching `pattern` when given
  (or empty, when `empty`)."""

  def check(value: str) -> str:
    if len(value) > MAX_TEXT:
      return f'is longer than {MAX_TEXT} characters'
    if '\x00' in value:
      return 'holds a NUL character'
    if not value:
      return '' if empty else 'is empty'
    if pattern is not None and not pattern.fullmatch(value):
      return f'is not {what or "in the pattern " + pattern.pattern}'
    return ''

  return Field((str,), check)


def number(*, positive: bool = False) -> Field:
  """A finite JSON number (int or float); > 0 when `positive`."""

  def check(value) -> str:
    if not math.isfinite(value):
      return 'is not a finite number'
    if positive and value <= 0:
      return 'is not positive'
    return ''

  return Field((int, float), check)


def whole(*, minimum: int = 0) -> Field:
  return Field((int,), lambda v: '' if v >= minimum else f'is less than {minimum}')


def flag() -> Field:
  return Field((bool,))


def text_list(item: Field) -> Field:
  """A list whose items each pass `item`."""

  def check(values) -> str:
    for i, value in enumerate(values):
      why = item.problem(f'item {i + 1}', value)
      if why:
        return why.replace('has ', 'holds ', 1)
    return ''

  return Field((list,), check)


def _headline_problem(value: Dict) -> str:
  """The headline is shown by `vog-audit review list`: counts, accuracies, the link, drift."""
  allowed = {'counts': dict, 'overall_accuracy': (int, float, type(None)),
             'hard_accuracy': (int, float, type(None)), 'report_url': str, 'drift': str}
  for key, item in value.items():
    if key not in allowed:
      return f'holds an unknown key {key!r}'
    if isinstance(item, bool) or not isinstance(item, allowed[key]):
      return f'holds {_a(type(item).__name__)} for {key}'
    if isinstance(item, str) and len(item) > MAX_TEXT:
      return f'holds a {key} longer than {MAX_TEXT} characters'
  for name, count in (value.get('counts') or {}).items():
    if not isinstance(name, str) or isinstance(count, bool) or not isinstance(count, int):
      return f'holds a count {_show(name)} that is not a whole number'
  return ''


def _decision_problem(value) -> str:
  if value is None:
    return ''
  try:
    decision_lib.Decision.from_json(value)
  except (TypeError, ValueError) as e:
    return f'cannot be read ({e})'
  return ''


# The fields every record has, in the order they are written.
COMMON_FIELDS: Dict[str, Field] = {
    'format_version': Field((int,), lambda v: '' if v == FORMAT_VERSION else (
        f'this version of vog-audit does not read (it reads {FORMAT_VERSION})')),
    'review_id': text(REVIEW_ID_PATTERN, empty=False, what='a review ID'),
    'fingerprint': text(FINGERPRINT_PATTERN, empty=False, what='a sha256 hex digest'),
    'backend': text(re.compile(r'[a-z][a-z0-9_]{0,31}'), empty=False, what='a backend name'),
    'status': Field((str,), lambda v: '' if v in STATUSES else (
        f'is not one of {", ".join(STATUSES)}')),
    'closed': flag(),
    'created_at': text(ISO_TIME_PATTERN, empty=False, what='an ISO-8601 UTC time'),
    'timeout_seconds': number(positive=True),
    'approvers': text_list(text(empty=False)),
    'quorum': whole(minimum=1),
    'pipeline': text(),
    'run_id': text(),
    'node_id': text(),
    'model_uri': text(),
    'model_id': whole(),
    'report_uri': text(),
    'report_id': whole(),
    'headline': Field((dict,), _headline_problem),
    'decision': Field((dict, type(None)), _decision_problem),
    'state': Field((dict,)),
}


@dataclasses.dataclass(frozen=True)
class ReviewRecord:
  """One review as it is kept on disk; `state` holds the backend's own declared fields."""
  review_id: str
  fingerprint: str
  backend: str
  status: str
  closed: bool
  created_at: str
  timeout_seconds: float
  approvers: Tuple[str, ...]
  quorum: int
  pipeline: str
  run_id: str
  node_id: str
  model_uri: str
  model_id: int
  report_uri: str
  report_id: int
  headline: Mapping[str, Any]
  decision: Optional[decision_lib.Decision]
  state: Mapping[str, Any]

  def to_json(self) -> Dict[str, Any]:
    """The JSON object the store writes."""
    data = {'format_version': FORMAT_VERSION}
    for name in COMMON_FIELDS:
      if name == 'format_version':
        continue
      value = getattr(self, name)
      if name == 'decision':
        value = None if value is None else value.to_json()
      elif name == 'approvers':
        value = list(value)
      elif name in ('headline', 'state'):
        value = _plain(value)
      data[name] = value
    return data

  @classmethod
  def from_json(cls, data: Any, state_fields: Callable[[str], Optional[Mapping[str, Field]]],
                review_id: Optional[str] = None) -> 'ReviewRecord':
    """Checks `data` against the schema and returns the record.

    Args:
      data: a parsed JSON value.
      state_fields: backend name -> the state fields it declares, or None for a backend this
        version does not know.
      review_id: the ID the file's name says; the record must hold the same.

    Raises:
      RecordError: what is wrong, e.g. 'has no quorum', 'has a str for closed', 'has an
        unknown field 'reactions_seen''.
    """
    if not isinstance(data, dict):
      raise RecordError(f'is not a JSON object but a {type(data).__name__}')
    if 'format_version' not in data:
      raise RecordError('has no format_version')
    why = COMMON_FIELDS['format_version'].problem('format_version', data['format_version'])
    if why:
      raise RecordError(why)
    for name, field in COMMON_FIELDS.items():
      if name not in data:
        raise RecordError(f'has no {name}')
      why = field.problem(name, data[name])
      if why:
        raise RecordError(why)
    unknown = sorted(set(data) - set(COMMON_FIELDS))
    if unknown:
      raise RecordError(f'has an unknown field {unknown[0]!r}')
    if review_id is not None and data['review_id'] != review_id:
      raise RecordError(f'holds review {data["review_id"]!r}, not the {review_id!r} its name says')
    fields = state_fields(data['backend'])
    if fields is None:
      raise RecordError(f'is a review of backend {data["backend"]!r}, which this version of '
                        'vog-audit does not have')
    check_state(data['state'], fields)
    return cls(
        review_id=data['review_id'], fingerprint=data['fingerprint'], backend=data['backend'],
        status=data['status'], closed=data['closed'], created_at=data['created_at'],
        timeout_seconds=float(data['timeout_seconds']), approvers=tuple(data['approvers']),
        quorum=data['quorum'], pipeline=data['pipeline'], run_id=data['run_id'],
        node_id=data['node_id'], model_uri=data['model_uri'], model_id=data['model_id'],
        report_uri=data['report_uri'], report_id=data['report_id'],
        headline=dict(data['headline']),
        decision=None if data['decision'] is None else decision_lib.Decision.from_json(
            data['decision']),
        state=dict(data['state']))

  def replace(self, **changes) -> 'ReviewRecord':
    """A copy with `changes` to common fields."""
    return dataclasses.replace(self, **changes)

  def with_state(self, **changes) -> 'ReviewRecord':
    """A copy with `changes` to the backend's state fields."""
    return dataclasses.replace(self, state={**self.state, **changes})


def check_state(state: Any, fields: Mapping[str, Field]) -> None:
  """Refuses (RecordError) backend state that lacks a declared field, holds an undeclared one,
  or holds a bad value."""
  if not isinstance(state, dict):
    raise RecordError(f'has {_a(type(state).__name__)} for state')
  for name, field in fields.items():
    if name not in state:
      raise RecordError(f'has no state.{name}')
    why = field.problem(f'state.{name}', state[name])
    if why:
      raise RecordError(why)
  unknown = sorted(set(state) - set(fields))
  if unknown:
    raise RecordError(f'has an unknown field {"state." + unknown[0]!r}')


def _plain(value):
  """A JSON-ready deep copy of mappings and sequences."""
  if isinstance(value, Mapping):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value
