"""The `slack` backend: one Block Kit message, answered in its thread or by reaction.

Flow: the review record is already on disk (opened by `RecordedBackend.review` before anything
is sent). `SlackReview.run` posts the message, with Slack message metadata naming the review
and the fingerprint of its inputs (`review_metadata`), unless the record already names a
thread; it uploads the flagged-examples montage into the thread, then reads
`conversations.replies` (with `include_all_metadata`) and `reactions.get` (with `full`) until
the decision rule (decision_rule.py) decides or the deadline has passed.

What Slack says is the truth, not the reviews folder:

- The thread is this review's only when its first message was posted by this app's bot
  (`auth.test`'s `bot_id`) and carries REVIEW_EVENT metadata with this review's ID and the
  fingerprint of this gate's inputs. Only an app can set metadata, and no text counts: an
  example ID that equals a review ID proves nothing. The check is made on every read, so a
  deleted review message (a tombstone) ends the review as an error.
- The deadline is the review message's own Slack `ts` plus the gate's `timeout_seconds`.
- Answers are read from the thread every time; the record keeps only what Slack cannot say
  cheaply (the thread's `ts`, the channel ID, whether the montage went up), each field checked
  by the store's schema and then against Slack.

Answers, by slack_grammar.py's grammar, from the gate's own approvers:

- a reply that approves counts when its `ts` is not after the deadline; one that rejects
  counts whenever it came (a rejection at any time before the decision stops the review);
- an edited reply never counts (`edited` keeps the first `ts`, so an edit could otherwise
  date a new answer back), nor a deleted one, nor any message with a subtype (tombstones,
  joins, bot posts); the approver is told so in the thread;
- Slack gives reactions no time, so a reaction counts only where the rule holds without one:
  a rejecting reaction always, an approving one only if this execution saw it before the
  deadline (a gate resumed after the deadline does not count approving reactions).

An approval is final once a second read, CONFIRM_SECONDS later, still shows enough approvals
and no rejection; a rejection is final at once. Replies that mention a decision but are no
answer get a thread reply saying what counts, and a log line; each such notice carries
NOTICE_EVENT metadata, so a resumed gate sees it was given and does not repeat it.

Errors: 429 waits exactly its Retry-After, 5xx and network errors back off exponentially, both
within MAX_ATTEMPTS and the review's deadline. Slack's own error codes other than the transient
ones (`invalid_auth`, `channel_not_found`, `not_in_channel`, ...) are permanent and end the
review as NOT_BLESSED. The token is read from the environment here, sent only to an https://
(or loopback) `slack_api_url`, and redacted from every message the gate writes.
"""

import http.client
import ipaddress
import os
import re
import socket
import time
import urllib.error
import urllib.parse
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from absl import logging
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from components.review_gate import backend_api
from components.review_gate import decision as decision_lib
from components.review_gate import decision_rule
from components.review_gate import review_record
from components.review_gate import review_store
from components.review_gate import slack_message
from components.review_gate.slack_grammar import GRAMMAR
from components.review_gate.slack_grammar import reaction_verdict
from components.review_gate.slack_grammar import read_reply

BACKEND = 'slack'
DEFAULT_API_URL = 'https://slack.com/api/'
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 15
# How soon the thread is read again to confirm an approval before it becomes final.
CONFIRM_SECONDS = 1.0
# Slack reports these with HTTP 200 and ok=false, yet they clear up on their own.
TRANSIENT_SLACK_ERRORS = frozenset({'ratelimited', 'internal_error', 'fatal_error',
                                    'service_unavailable', 'request_timeout'})
# Slack member IDs: U (or W on Enterprise Grid) and capital letters and digits.
USER_ID_PATTERN = re.compile(r'[UW][A-Z0-9]{1,20}')
CHANNEL_ID_PATTERN = re.compile(r'[CGD][A-Z0-9]{1,20}')
# A message `ts`: seconds, a dot, six digits of microseconds.
TS_PATTERN = re.compile(r'[0-9]{1,12}\.[0-9]{6}')
# Message metadata `event_type`s this app posts: the review message, and notices in its thread.
REVIEW_EVENT = 'vog_audit_review'
NOTICE_EVENT = 'vog_audit_review_notice'
# Subtypes of messages a person writes in a thread; any other subtype is not an answer.
REPLY_SUBTYPES = (None, 'thread_broadcast')
_LOGGED_TEXT = 200  # characters of a reply quoted in a log line

build_blocks = slack_message.build


def check_approvers(approvers: Iterable[str]) -> List[str]:
  """Returns `approvers` when each is a Slack user ID; ValueError naming the first that is not."""
  approvers = list(approvers)
  for approver in approvers:
    if not isinstance(approver, str) or not USER_ID_PATTERN.fullmatch(approver):
      raise ValueError(
          f'approver {approver!r} is not a Slack user ID: backend="slack" needs IDs like '
          'U0123ABCD (a U or W and capital letters and digits; in Slack, open the profile, '
          'then ... > Copy member ID)')
  return approvers


def check_api_url(api_url: Optional[str]) -> str:
  """The Web API base URL ending in '/'; refuses anything but https:// or http:// to loopback.

  The bot token goes with every call, so it must not cross a network in clear: plain http://
  is accepted only for 127.0.0.0/8, ::1 and localhost (tests, a local TLS-terminating proxy).
  """
  url = api_url or DEFAULT_API_URL
  parts = urllib.parse.urlsplit(url)
  host = parts.hostname or ''
  if not (parts.scheme == 'https' and host) and not (parts.scheme == 'http' and _loopback(host)):
    raise ValueError(
        f'slack_api_url {url!r} must start with https:// and name a host: the bot token is '
        'sent with every call; plain http:// is accepted only for a loopback address, e.g. '
        'http://127.0.0.1:PORT/api/')
  return url if url.endswith('/') else url + '/'


def _loopback(host: str) -> bool:
  if host == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def review_metadata(review_id: str, fingerprint: str) -> Dict[str, Any]:
  """The Slack message metadata of a review message: what identifies its thread."""
  return {'event_type': REVIEW_EVENT,
          'event_payload': {'review_id': review_id, 'fingerprint': fingerprint}}


def _metadata_payload(message: Dict, event_type: str) -> Dict:
  """The message's metadata payload when its `event_type` is `event_type`, else {}."""
  metadata = message.get('metadata')
  if not isinstance(metadata, dict) or metadata.get('event_type') != event_type:
    return {}
  payload = metadata.get('event_payload')
  return payload if isinstance(payload, dict) else {}


class SlackBackend(backend_api.RecordedBackend):
  """Asks in a Slack channel; see the module docstring for what counts."""

  NAME = BACKEND
  DECIDES = ('`quorum` of the gate\'s approvers approve in the review message\'s thread (a '
             'reply that is exactly "approve", or a listed reaction) before the deadline and '
             'no approver rejects')
  APPROVERS_HINT = 'Slack user IDs like U0123ABCD'
  STATE_FIELDS = {
      'slack_channel': review_record.text(),
      'slack_channel_id': review_record.text(CHANNEL_ID_PATTERN, what='a Slack channel ID'),
      'slack_thread_ts': review_record.text(TS_PATTERN, what='a Slack message ts'),
      'montage_uploaded': review_record.flag(),
  }

  @classmethod
  def check_settings(cls, settings: backend_api.GateSettings) -> backend_api.GateSettings:
    """Refuses: no approvers, no channel, approvers that are not Slack user IDs, a bad quorum,
    and a `slack_api_url` the token must not go to."""
    if not settings.approvers:
      return super().check_settings(settings)  # says what is missing
    if not settings.slack_channel:
      raise ValueError('backend="slack" needs slack_channel (a channel ID like C0123ABCD)')
    check_approvers(settings.approvers)
    if settings.slack_api_url is not None:
      check_api_url(settings.slack_api_url)
    return super().check_settings(settings)

  @classmethod
  def where_to_answer(cls, record: review_record.ReviewRecord) -> str:
    state = record.state
    return (f'answered in Slack channel {state["slack_channel_id"] or state["slack_channel"]} '
            f'(thread {state["slack_thread_ts"] or "not posted yet"})')

  def initial_state(self, request: backend_api.ReviewRequest) -> Dict[str, Any]:
    return {'slack_channel': self.settings.slack_channel, 'slack_channel_id': '',
            'slack_thread_ts': '', 'montage_uploaded': False}

  def wait(self, store, record, request, resumed) -> decision_lib.Decision:
    settings = self.settings
    return SlackReview(
        channel=_slack_channel(record, settings.slack_channel), approvers=settings.approvers,
        quorum=settings.quorum, token_env=settings.slack_token_env,
        api_url=settings.slack_api_url, poll_interval_seconds=settings.poll_interval_seconds,
        timeout_seconds=settings.timeout_seconds,
    ).run(store, record, request)


def _slack_channel(record: review_record.ReviewRecord, configured: str) -> str:
  """The channel to read: the configured ID, or the ID Slack gave for a configured name."""
  recorded = record.state['slack_channel_id']  # the schema checked it is an ID or ''
  if CHANNEL_ID_PATTERN.fullmatch(configured or ''):
    if recorded and recorded != configured:
      logging.warning('Review %s names channel %s, but the gate is set to %s; reading %s',
                      record.review_id, recorded, configured, configured)
    return configured
  return recorded or configured


def _read_bytes(path: str) -> bytes:
  """A file's bytes from any file system TensorFlow reads (local, gs://, ...)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


class SlackReview:
  """One review in one Slack channel, through the Web API."""

  def __init__(self, *, channel: str, approvers: Sequence[str], token_env: str,
               api_url: Optional[str] = None, poll_interval_seconds: float = 10.0,
               timeout_seconds: float = 24 * 3600.0, quorum: int = 1,
               sleep: Callable[[float], None] = time.sleep):
    self.channel = channel
    self.approvers = list(approvers)
    self.quorum = quorum
    self.token_env = token_env
    self.api_url = api_url or DEFAULT_API_URL
    self.poll_interval = poll_interval_seconds
    self.timeout = float(timeout_seconds)
    self._sleep = sleep
    self._token = None
    self._client = None
    self._bot_id = ''
    self._logged = set()
    self._store = None
    self._review_id = ''
    self._fingerprint = ''
    self._deadline_at = 0.0
    # This execution's own observations; none of them is kept on disk.
    self._reaction_first_seen: Dict[str, float] = {}
    self._counted: Dict[str, Tuple[str, str]] = {}  # ts -> (user, verdict) of counted replies
    self._notified: Set[Tuple[str, str]] = set()  # (about ts, kind) already told the thread

  def _check_settings(self) -> None:
    """Refuses approvers that are not user IDs and a URL the token must not go to."""
    try:
      check_approvers(self.approvers)
      self.api_url = check_api_url(self.api_url)
    except ValueError as e:
      raise decision_lib.PermanentReviewError(str(e)) from None

  def _connect(self) -> None:
    token = os.environ.get(self.token_env, '').strip()
    if not token:
      raise decision_lib.PermanentReviewError(
          f'environment variable {self.token_env} is empty or not set; export the Slack bot '
          'token there (or set slack_token_env to the variable that holds it)')
    self._token = token
    # Retries are ours (below), so they are logged and bounded by the review's deadline.
    self._client = WebClient(token=token, base_url=self.api_url, timeout=HTTP_TIMEOUT_SECONDS,
                             retry_handlers=[])

  def _call(self, method: str, deadline: float, **kwargs):
    """Calls WebClient.<method> with the retry policy; returns the SlackResponse.

    Raises PermanentReviewError for errors retrying cannot fix and TransientReviewError when
    attempts or time run out.
    """
    fn = getattr(self._client, method)
    api = method.replace('_', '.', 1) if method != 'files_upload_v2' else 'files upload'
    last = ''
    for attempt in range(1, MAX_ATTEMPTS + 1):
      wait = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
      try:
        return fn(**kwargs)
      except SlackApiError as e:
        status = e.response.status_code
        code = e.response.get('error') if isinstance(e.response.data, dict) else None
        if status == 429:
          wait = _retry_after(e.response.headers)
          last = f'{api}: HTTP 429 rate limited (Retry-After {wait:g}s)'
        elif status >= 500 or code in TRANSIENT_SLACK_ERRORS:
          last = f'{api}: HTTP {status} {code or "server error"}'
        else:
          raise decision_lib.PermanentReviewError(self._redact(
              f'Slack refused {api} with {code or "HTTP %d" % status}{_hint(code)}')) from None
      except urllib.error.HTTPError as e:  # the file upload step talks to its URL directly
        if e.code != 429 and e.code < 500:
          raise decision_lib.PermanentReviewError(
              self._redact(f'{api}: upload URL answered HTTP {e.code}')) from None
        wait = _retry_after(e.headers) if e.code == 429 else wait
        last = f'{api}: upload URL answered HTTP {e.code}'
      except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError,
              http.client.HTTPException, SlackRequestError) as e:
        last = f'{api}: cannot reach {self.api_url} ({_reason(e)})'
      remaining = deadline - time.monotonic()
      if attempt == MAX_ATTEMPTS or wait > remaining:
        raise decision_lib.TransientReviewError(self._redact(
            f'{last}; gave up after {attempt} attempt(s) within the review time')) from None
      logging.warning('Slack %s; retrying in %.1fs (attempt %d of %d)',
                      self._redact(last), wait, attempt + 1, MAX_ATTEMPTS)
      self._sleep(wait)
    raise AssertionError('unreachable')

  def _redact(self, text: str) -> str:
    return decision_lib.redact(text, self._token)

  def run(self, store: review_store.ReviewStore, record: review_record.ReviewRecord,
          request: backend_api.ReviewRequest) -> decision_lib.Decision:
    """Posts (or resumes) the review and waits for a decision; never raises for Slack errors.

    Args:
      store: the reviews folder; the thread and the upload are noted there.
      record: the review record opened or resumed for `request`.
      request: the question: its fingerprint binds the thread to these inputs.

    Returns:
      The decision: approved or rejected by the rule, a timeout, or an error (bad settings,
      no token, a thread that is not this review's or was deleted, Slack refusing or
      unreachable).
    """
    review_id = record.review_id
    self._store, self._review_id, self._fingerprint = store, review_id, request.fingerprint
    thread_ts = record.state['slack_thread_ts']
    if record.decision is not None or record.status != review_record.PENDING:
      logging.warning('Ignoring the decision stored in review %s: Slack decisions are read from '
                      'the Slack thread, not from the reviews folder', review_id)
    # Until the message exists, posting may take the review's time from now.
    deadline = time.monotonic() + self.timeout
    try:
      self._check_settings()
      self._connect()
      if thread_ts:
        logging.info('Resuming Slack review %s in channel %s thread %s', review_id,
                     self.channel, thread_ts)
        self._read_thread(thread_ts, deadline, limit=1)  # refuses a thread that is not ours
      else:
        thread_ts = self._post(store, review_id, request.summary, deadline)
      # The deadline is Slack's: the review message's own time plus the gate's timeout.
      self._deadline_at = float(thread_ts) + self.timeout
      deadline = time.monotonic() + (self._deadline_at - time.time())
      store.wait_until(deadline)
      if request.summary.montage_path and not record.state['montage_uploaded']:
        self._upload_montage(store, review_id, request.summary.montage_path, thread_ts,
                             deadline)
      outcome = self._wait(review_id, thread_ts, deadline)
    except decision_lib.ReviewError as e:
      kind = 'permanent' if isinstance(e, decision_lib.PermanentReviewError) else 'transient'
      logging.error('Slack review %s failed (%s error): %s', review_id, kind, e)
      return self._decision(decision_lib.ERROR, thread_ts, reason=str(e))
    if outcome.decision in (decision_lib.APPROVED, decision_lib.REJECTED):
      self._confirm(thread_ts, outcome)
    return outcome

  def _decision(self, verdict: str, thread_ts: str, **fields) -> decision_lib.Decision:
    fields['reason'] = self._redact(fields.get('reason'))
    fields['comment'] = self._redact(fields.get('comment'))
    return decision_lib.Decision(decision=verdict, backend=BACKEND, slack_channel=self.channel,
                                 slack_thread_ts=thread_ts or '', **fields)

  def _post(self, store, review_id, summary, deadline) -> str:
    text, blocks = slack_message.build(summary, review_id, self.approvers, self.timeout,
                                       time.time() + self.timeout, self.quorum)
    response = self._call('chat_postMessage', deadline, channel=self.channel, text=text,
                          blocks=blocks, unfurl_links=False,
                          metadata=review_metadata(review_id, self._fingerprint))
    thread_ts = str(response.get('ts') or '')
    if not TS_PATTERN.fullmatch(thread_ts):
      raise decision_lib.PermanentReviewError(
          f'chat.postMessage answered ok without a message ts (got {thread_ts[:40]!r}); is '
          'slack_api_url a Slack Web API?')
    channel_id = str(response.get('channel') or self.channel)
    if not CHANNEL_ID_PATTERN.fullmatch(channel_id):
      raise decision_lib.PermanentReviewError(
          f'chat.postMessage answered a channel that is not a channel ID ({channel_id[:40]!r})')
    try:
      store.update(review_id, lambda r: r.with_state(slack_thread_ts=thread_ts,
                                                     slack_channel_id=channel_id))
    except review_store.ReviewStoreError as e:
      logging.warning('Could not note thread %s in review %s (%s); a retried execution will '
                      'post again', thread_ts, review_id, e)
    # Replies and reactions are read by channel ID; a name like #ml-review only works for posting.
    self.channel = channel_id
    logging.info('Posted Slack review %s to channel %s (thread %s)', review_id, channel_id,
                 thread_ts)
    return thread_ts

  def _read_thread(self, thread_ts: str, deadline: float,
                   limit: Optional[int] = None) -> List[Dict]:
    """The thread's replies (all pages, or the first `limit` messages), after checking that
    its first message is this review's (see the module docstring)."""
    if not self._bot_id:
      self._bot_id = self._call('auth_test', deadline).get('bot_id') or ''
      if not self._bot_id:
        raise decision_lib.PermanentReviewError(
            'auth.test names no bot for this token: the gate needs a bot token (xoxb-...) so '
            'that it can tell its own review messages from anyone else\'s')
    messages, cursor = [], None
    while True:  # a long discussion spans pages
      page = self._call('conversations_replies', deadline, channel=self.channel, ts=thread_ts,
                        limit=limit or 200, include_all_metadata=True,
                        **({'cursor': cursor} if cursor else {}))
      messages.extend(m for m in page.get('messages') or [] if isinstance(m, dict))
      cursor = (page.get('response_metadata') or {}).get('next_cursor')
      if limit or not page.get('has_more') or not cursor:
        break
    parent = next((m for m in messages if m.get('ts') == thread_ts), None)
    self._check_parent(parent, thread_ts)
    return [m for m in messages if m is not parent]

  def _check_parent(self, parent: Optional[Dict], thread_ts: str) -> None:
    review_id = self._review_id
    if parent is not None and (parent.get('subtype') == 'tombstone' or parent.get('hidden')):
      raise decision_lib.PermanentReviewError(
          f'the message of review {review_id} (thread {thread_ts} in {self.channel}) was '
          'deleted; nothing in its thread counts - run the pipeline again to ask again')
    why = ''
    payload = _metadata_payload(parent or {}, REVIEW_EVENT)
    if parent is None:
      why = 'Slack did not return it'
    elif parent.get('bot_id') != self._bot_id:
      why = 'it was not posted by this Slack app'
    elif not payload:
      why = f'it carries no {REVIEW_EVENT} metadata'
    elif payload.get('review_id') != review_id:
      why = f'its metadata names review {str(payload.get("review_id"))[:40]!r}'
    elif payload.get('fingerprint') != self._fingerprint:
      why = 'its metadata names other inputs (another model or report)'
    if why:
      raise decision_lib.PermanentReviewError(
          f'thread {thread_ts} in {self.channel} is not the message of review {review_id} '
          f'({why}); the review record points at the wrong thread - move {review_id}.json out '
          'of the reviews folder and run the pipeline again')

  def _upload_montage(self, store, review_id, path, thread_ts, deadline) -> None:
    try:
      self._call('files_upload_v2', deadline, channel=self.channel, thread_ts=thread_ts,
                 file=_read_bytes(path), filename=os.path.basename(path),
                 title='Top flagged examples')
    except decision_lib.ReviewError as e:
      # The message already holds the numbers; a missing picture is no reason to block.
      logging.warning('Could not upload %s to the review thread: %s', path, e)
      return
    try:
      store.update(review_id, lambda r: r.with_state(montage_uploaded=True))
    except review_store.ReviewStoreError as e:
      logging.warning('Could not note the upload in review %s: %s', review_id, e)
    logging.info('Uploaded %s to Slack review %s', os.path.basename(path), review_id)

  def _wait(self, review_id, thread_ts, deadline) -> decision_lib.Decision:
    """Reads the thread until the rule decides (an approval confirmed by a second read), or
    time is up."""
    logging.info('Waiting until %s (the review message\'s Slack time plus %gs) for %s of %s to '
                 'answer Slack review %s', decision_lib.iso_time(self._deadline_at),
                 self.timeout, self.quorum, ', '.join(self.approvers), review_id)
    polls, last_error, previous = 0, '', None
    while True:
      polls += 1
      result = None
      try:
        result = decision_rule.tally(self._read_answers(thread_ts, deadline), self.approvers,
                                     self.quorum)
        last_error = ''
      except decision_lib.TransientReviewError as e:
        # An outage while waiting only costs time; the deadline still ends the review.
        last_error = str(e)
        logging.warning('Slack review %s: %s', review_id, e)
      if result is not None and result.verdict == decision_lib.REJECTED:
        return self._answered(review_id, thread_ts, result, polls)
      if result is not None and result.verdict == decision_lib.APPROVED:
        if previous is not None:
          return self._answered(review_id, thread_ts, result, polls)
        previous = result
        self._sleep(CONFIRM_SECONDS)
        continue
      previous = None
      if time.time() >= self._deadline_at:
        why = f'no decision from the approvers within {self.timeout:g}s'
        if result is not None:
          why += f' ({decision_rule.describe(result)})'
        if last_error:
          why += f' (last Slack error: {last_error})'
        logging.warning('Slack review %s timed out: %s', review_id, why)
        return self._decision(decision_lib.TIMEOUT, thread_ts, reason=why)
      remaining = deadline - time.monotonic()
      self._sleep(max(0.0, min(self.poll_interval, remaining)))

  def _answered(self, review_id, thread_ts, result: decision_rule.Tally,
                polls: int) -> decision_lib.Decision:
    deciding = [a for a in result.deciding if a.at == result.decided_at] or list(result.deciding)
    key = deciding[0].key
    reviewed_at = decision_lib.slack_time(key if TS_PATTERN.fullmatch(key)
                                          else f'{result.decided_at:.6f}')
    logging.info('Slack review %s %s (%s, decided at %s) after %d read(s)', review_id,
                 decision_rule.describe(result), result.how, reviewed_at, polls)
    return self._decision(result.verdict, thread_ts, reviewer=result.reviewers,
                          comment=result.comment, reviewed_at=reviewed_at,
                          reason=f'{decision_rule.describe(result)} in Slack ({result.how})')

  def _read_answers(self, thread_ts, deadline) -> List[decision_rule.Answer]:
    """One read of the thread: every answer that counts (see the module docstring)."""
    replies = self._read_thread(thread_ts, deadline)
    reactions = self._call('reactions_get', deadline, channel=self.channel,
                           timestamp=thread_ts, full=True)
    seen_at = time.time()  # every reaction in this answer existed by now
    answers, notices, present = [], [], set()
    for message in replies:
      if message.get('bot_id'):
        if message.get('bot_id') == self._bot_id:
          payload = _metadata_payload(message, NOTICE_EVENT)
          if payload.get('review_id') == self._review_id:
            self._notified.add((str(payload.get('about')), str(payload.get('kind'))))
        continue
      ts, user = str(message.get('ts') or ''), message.get('user')
      if message.get('subtype') not in REPLY_SUBTYPES or not user or not TS_PATTERN.fullmatch(ts):
        continue
      present.add(ts)
      answer = self._reply_answer(message, ts, user, notices)
      if answer is not None:
        answers.append(answer)
    for ts, (user, verdict) in list(self._counted.items()):
      if ts not in present:  # a reply that counted on an earlier read is gone
        del self._counted[ts]
        self._log(f'deleted/{ts}', 'Reply %s by %s (%s) was deleted; it no longer counts',
                  ts, user, verdict)
        notices.append((ts, 'deleted', f'<@{user}>, your reply that {verdict} the model was '
                        'deleted; deleted replies do not count.'))
    answers += self._reaction_answers(reactions, seen_at)
    for about, kind, text in notices:
      self._notify(thread_ts, about, kind, text)
    return answers

  def _reply_answer(self, message: Dict, ts: str, user: str,
                    notices: List) -> Optional[decision_rule.Answer]:
    """The answer one reply gives, or None; adds what the thread must be told to `notices`."""
    text = message.get('text') if isinstance(message.get('text'), str) else ''
    reply = read_reply(text)
    if user not in self.approvers:
      if reply.verdict:
        self._log(f'outsider/{ts}', 'Ignoring "%s" from %s in the review thread: not a listed '
                  'approver', reply.verdict, user)
      return None
    if message.get('edited'):
      if reply.verdict or reply.why or ts in self._counted:
        self._counted.pop(ts, None)
        self._log(f'edited/{ts}', 'Ignoring reply %s by %s in the review thread: it was '
                  'edited, and edited replies never count: %r', ts, user, self._quote(text))
        notices.append((ts, 'edited', f'<@{user}>, you edited a reply in this thread; edited '
                        f'replies never count. Post a new reply: {GRAMMAR}.'))
      return None
    if reply.verdict is None:
      if reply.why:
        self._log(f'unclear/{ts}', 'Ignoring a reply by %s in the review thread (ts %s): %s: %r',
                  user, ts, reply.why, self._quote(text))
        notices.append((ts, 'not_an_answer', f'<@{user}>, your reply does not count: {GRAMMAR}.'))
      return None
    at = float(ts)
    if reply.verdict == decision_lib.APPROVED and at > self._deadline_at:
      self._log(f'late/{ts}', 'Ignoring "approve" from %s in the review thread: it came after '
                'the deadline (%s)', user, decision_lib.iso_time(self._deadline_at))
      return None
    self._counted[ts] = (user, reply.verdict)
    return decision_rule.Answer(user=user, verdict=reply.verdict, at=at, how='thread reply',
                                comment=reply.reason, key=ts)

  def _reaction_answers(self, reactions, seen_at: float) -> List[decision_rule.Answer]:
    """The approvers' listed reactions on the review message; a reaction taken back and given
    again is seen anew."""
    answers, present = [], set()
    for reaction in (reactions.get('message') or {}).get('reactions') or []:
      name = str(reaction.get('name') or '').split('::')[0]
      verdict = reaction_verdict(name)
      if verdict is None:
        continue
      for user in reaction.get('users') or []:
        key = f'{name}/{user}'
        if user not in self.approvers:
          self._log(key, 'Ignoring :%s: from %s on the review: not a listed approver', name,
                    user)
          continue
        present.add(key)
        first = self._reaction_first_seen.setdefault(key, seen_at)
        if verdict == decision_lib.APPROVED and first > self._deadline_at:
          # Slack gives reactions no time: one first seen after the deadline may be late.
          self._log(f'late/{key}', 'Ignoring :%s: from %s on the review: first seen after the '
                    'deadline, and a reaction has no time of its own', name, user)
          continue
        answers.append(decision_rule.Answer(user=user, verdict=verdict, at=first,
                                            how=f'reaction :{name}:', key=key))
    for key in set(self._reaction_first_seen) - present:
      del self._reaction_first_seen[key]
    return answers

  def _quote(self, text: str) -> str:
    return self._redact(slack_message.shorten(text, _LOGGED_TEXT))

  def _log(self, key: str, message: str, *args) -> None:
    """Logs `message` once per answer, not once per read."""
    if key not in self._logged:
      self._logged.add(key)
      logging.warning(message, *args)

  def _notify(self, thread_ts: str, about: str, kind: str, text: str) -> None:
    """Tells the thread, once per message and kind (also across executions: each notice
    carries metadata the next read recognises); a failure here changes nothing."""
    if (about, kind) in self._notified:
      return
    self._notified.add((about, kind))
    try:
      self._call('chat_postMessage', time.monotonic() + HTTP_TIMEOUT_SECONDS,
                 channel=self.channel, thread_ts=thread_ts, text=text,
                 metadata={'event_type': NOTICE_EVENT, 'event_payload': {
                     'review_id': self._review_id, 'about': about, 'kind': kind}})
    except decision_lib.ReviewError as e:
      logging.warning('Could not tell the review thread about reply %s: %s', about, e)

  def _confirm(self, thread_ts: str, outcome: decision_lib.Decision) -> None:
    """Says in the thread what the gate did; a failure here changes nothing."""
    result = 'the model is blessed for the Pusher' if outcome.blessed else 'the model is not blessed'
    who = ' and '.join(f'<@{u}>' for u in outcome.reviewer.split(',') if u)
    try:
      self._call('chat_postMessage', time.monotonic() + HTTP_TIMEOUT_SECONDS,
                 channel=self.channel, thread_ts=thread_ts,
                 text=f'{outcome.decision.capitalize()} by {who}: {result}.',
                 metadata={'event_type': NOTICE_EVENT, 'event_payload': {
                     'review_id': self._review_id, 'about': thread_ts, 'kind': 'decision'}})
    except decision_lib.ReviewError as e:
      logging.warning('Could not confirm the decision in the review thread: %s', e)


def _retry_after(headers) -> float:
  for key, value in (headers or {}).items():
    if key.lower() == 'retry-after':
      value = value[0] if isinstance(value, list) else value
      try:
        return max(0.0, float(value))
      except (TypeError, ValueError):
        break
  return 1.0


def _reason(error: Exception) -> str:
  return str(getattr(error, 'reason', None) or error or type(error).__name__)


def _hint(code: Optional[str]) -> str:
  hints = {
      'invalid_auth': ' - the token is not valid; check the value of the token variable',
      'not_authed': ' - no token reached Slack; check the token variable',
      'token_revoked': ' - the token was revoked; issue a new bot token',
      'account_inactive': ' - the bot user was deactivated; reinstall the Slack app',
      'channel_not_found': ' - check slack_channel (a channel ID like C0123 or a name the bot can see)',
      'not_in_channel': ' - invite the bot to the channel (/invite @bot)',
      'missing_scope': ' - add the scopes chat:write, channels:history, reactions:read, files:write',
      'is_archived': ' - the channel is archived; pick another slack_channel',
  }
  return hints.get(code or '', '')
