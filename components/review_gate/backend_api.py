"""The one interface every review backend implements, and what the executor hands it.

The executor knows nothing about Slack, files or policies. It parses the gate's parameters
into `GateSettings`, builds a `ReviewRequest` (the question and the numbers to show) and calls
`ReviewBackend.review`, which returns the `ReviewResult`. Each backend class says:

- NAME: the value of HumanReviewGate's `backend` parameter;
- DECIDES: in one sentence, how it decides;
- NEEDS_APPROVERS: whether the gate must name approvers (and so a quorum applies);
- RECORDS and STATE_FIELDS: whether it keeps a review record in the reviews folder, and the
  fields of its own it keeps there (checked by the store on every read, see review_record.py);
- `check_settings`: refuses, when the pipeline is declared, settings it cannot work with;
- `where_to_answer`: one line for `vog-audit review list` on how a person answers.

Backends that ask people derive from `RecordedBackend`, which opens (or resumes) the review
record, calls `wait`, and closes the record with the outcome; the decision rule itself is
`decision_rule.tally`, shared by all of them. `backends.py` lists the backends, once.
"""

import abc
import dataclasses
import json
import math
import time
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

from absl import logging

from components.review_gate import decision as decision_lib
from components.review_gate import decision_rule
from components.review_gate import review_record
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import spec_keys


@dataclasses.dataclass(frozen=True)
class GateSettings:
  """HumanReviewGate's parameters, typed. See HumanReviewGate.__init__ for each."""
  backend: str
  approvers: Tuple[str, ...] = ()
  quorum: int = 1
  timeout_seconds: float = 24 * 3600.0
  poll_interval_seconds: float = 15.0
  slack_channel: str = ''
  slack_token_env: str = 'SLACK_BOT_TOKEN'
  slack_api_url: Optional[str] = None
  report_url_template: Optional[str] = None
  auto_policy: Optional[Dict[str, float]] = None
  reviews_dir: Optional[str] = None

  @classmethod
  def from_exec_properties(cls, props: Mapping[str, Any]) -> 'GateSettings':
    """The settings as HumanReviewGateSpec serialises them (JSON lists and objects as text).

    A pipeline compiled before `quorum` existed has none: it means 1.
    """
    approvers = json.loads(props.get(spec_keys.APPROVERS_KEY) or '[]')
    policy = props.get(spec_keys.AUTO_POLICY_KEY)
    quorum = props.get(spec_keys.QUORUM_KEY)
    return cls(
        backend=props[spec_keys.BACKEND_KEY], approvers=tuple(approvers),
        quorum=1 if quorum in (None, '') else int(quorum),
        timeout_seconds=float(props[spec_keys.TIMEOUT_SECONDS_KEY]),
        poll_interval_seconds=float(props[spec_keys.POLL_INTERVAL_SECONDS_KEY]),
        slack_channel=props.get(spec_keys.SLACK_CHANNEL_KEY) or '',
        slack_token_env=props.get(spec_keys.SLACK_TOKEN_ENV_KEY) or 'SLACK_BOT_TOKEN',
        slack_api_url=props.get(spec_keys.SLACK_API_URL_KEY) or None,
        report_url_template=props.get(spec_keys.REPORT_URL_TEMPLATE_KEY) or None,
        auto_policy=json.loads(policy) if policy else None,
        reviews_dir=props.get(spec_keys.REVIEWS_DIR_KEY) or None)

  def to_exec_properties(self) -> Dict[str, Any]:
    """The inverse of `from_exec_properties`, for the component spec."""
    return {
        spec_keys.BACKEND_KEY: self.backend,
        spec_keys.APPROVERS_KEY: json.dumps(list(self.approvers)),
        spec_keys.QUORUM_KEY: self.quorum,
        spec_keys.TIMEOUT_SECONDS_KEY: float(self.timeout_seconds),
        spec_keys.POLL_INTERVAL_SECONDS_KEY: float(self.poll_interval_seconds),
        spec_keys.SLACK_CHANNEL_KEY: self.slack_channel or None,
        spec_keys.SLACK_TOKEN_ENV_KEY: self.slack_token_env,
        spec_keys.SLACK_API_URL_KEY: self.slack_api_url,
        spec_keys.REPORT_URL_TEMPLATE_KEY: self.report_url_template,
        spec_keys.AUTO_POLICY_KEY: json.dumps(self.auto_policy) if self.auto_policy else None,
        spec_keys.REVIEWS_DIR_KEY: self.reviews_dir,
    }


@dataclasses.dataclass(frozen=True)
class ReviewRequest:
  """One question to a backend: which model and report, and what the reviewer is shown.

  `fingerprint` identifies the question (pipeline, gate node, backend and input artifacts):
  the same inputs resume the same review. `reviews_dir` is set for backends that RECORD.
  """
  settings: GateSettings
  summary: review_summary.ReviewSummary
  fingerprint: str
  pipeline: str
  run_id: str
  node_id: str
  model_uri: str
  model_id: int
  report_uri: str
  report_id: int
  reviews_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ReviewResult:
  """What a backend ends with: the decision, and the review record's ID ('' when none)."""
  decision: decision_lib.Decision
  review_id: str = ''


class ReviewBackend(abc.ABC):
  """A way of asking whether a model ships. Subclasses set the class attributes below."""

  NAME: ClassVar[str] = ''
  DECIDES: ClassVar[str] = ''
  NEEDS_APPROVERS: ClassVar[bool] = True
  APPROVERS_HINT: ClassVar[str] = ''  # what an approver is, e.g. 'Slack user IDs like U0123ABCD'
  RECORDS: ClassVar[bool] = True
  STATE_FIELDS: ClassVar[Mapping[str, review_record.Field]] = {}

  def __init__(self, settings: GateSettings):
    self.settings = settings

  @classmethod
  def check_settings(cls, settings: GateSettings) -> GateSettings:
    """Returns `settings` (normalised) when this backend can work with them.

    Raises ValueError naming the setting and the fix. The base checks approvers and quorum.
    """
    if cls.NEEDS_APPROVERS and not settings.approvers:
      raise ValueError(f'backend={cls.NAME!r} needs approvers: list who may approve'
                       + (f' ({cls.APPROVERS_HINT})' if cls.APPROVERS_HINT else ''))
    if cls.NEEDS_APPROVERS:
      decision_rule.check_quorum(settings.quorum, settings.approvers)
    elif settings.quorum != 1:
      raise ValueError(f'quorum applies to backends with approvers; backend={cls.NAME!r} '
                       f'decides by itself, so leave quorum at 1 (got {settings.quorum!r})')
    return settings

  @classmethod
  def where_to_answer(cls, record: review_record.ReviewRecord) -> str:
    """How a person answers this review, for `vog-audit review list`."""
    return f'answered through the {cls.NAME} backend'

  @abc.abstractmethod
  def review(self, request: ReviewRequest) -> ReviewResult:
    """Asks, waits and decides. Never raises for an outcome (rejection, timeout, a service
    failing): those are decisions that do not bless, with the reason."""


class RecordedBackend(ReviewBackend):
  """A backend that asks people and keeps a review record, so that a retried gate resumes.

  `review` opens the record (or resumes the open one for the same question), calls `wait`,
  then closes the record with the outcome. Waits for the folder's lock are bounded by the
  review's deadline; a folder that cannot be used ends the review as an error, not blessed.
  """

  @abc.abstractmethod
  def initial_state(self, request: ReviewRequest) -> Dict[str, Any]:
    """The STATE_FIELDS of a new record."""

  @abc.abstractmethod
  def wait(self, store: review_store.ReviewStore, record: review_record.ReviewRecord,
           request: ReviewRequest, resumed: bool) -> decision_lib.Decision:
    """Asks (unless resumed) and waits for the decision; never raises for an outcome."""

  def review(self, request: ReviewRequest) -> ReviewResult:
    settings = self.settings
    try:
      store = review_store.ReviewStore(request.reviews_dir)
    except review_store.ReviewStoreError as e:
      return ReviewResult(self._error(str(e)))
    store.wait_until(time.monotonic() + settings.timeout_seconds)
    try:
      record, resumed = store.open_review(self._template(request))
    except review_store.ReviewStoreError as e:
      logging.error('Cannot open the %s review in %s: %s', self.NAME, store.reviews_dir, e)
      return ReviewResult(self._error(f'cannot open the review in {store.reviews_dir}: {e}'))
    logging.info('%s %s review %s in %s', 'Resuming' if resumed else 'Opened', self.NAME,
                 record.review_id, store.reviews_dir)
    outcome = self.wait(store, record, request, resumed)
    try:
      review_store.close(store, record.review_id, outcome)
    except review_store.ReviewStoreError as e:
      logging.warning('Could not mark review %s as closed (%s); the next run with the same '
                      'inputs resumes it and decides again', record.review_id, e)
    return ReviewResult(outcome, record.review_id)

  def _template(self, request: ReviewRequest) -> review_record.ReviewRecord:
    settings = self.settings
    return review_record.ReviewRecord(
        review_id='', fingerprint=request.fingerprint, backend=self.NAME,
        status=review_record.PENDING, closed=False, created_at=decision_lib.utc_now(),
        timeout_seconds=float(settings.timeout_seconds), approvers=tuple(settings.approvers),
        quorum=settings.quorum, pipeline=request.pipeline, run_id=request.run_id,
        node_id=request.node_id, model_uri=request.model_uri, model_id=int(request.model_id or 0),
        report_uri=request.report_uri, report_id=int(request.report_id or 0),
        headline=_finite(request.summary.headline()), decision=None,
        state=self.initial_state(request))

  def _error(self, reason: str) -> decision_lib.Decision:
    return decision_lib.Decision(decision=decision_lib.ERROR, backend=self.NAME, reason=reason)


def _finite(value):
  """`value` with non-finite floats as None: a record is strict JSON."""
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value
