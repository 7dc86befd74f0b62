"""The `slack` backend: one Block Kit message, answered in its thread or by reaction.

Flow: the review record is already on disk (written by the executor before anything is sent).
`SlackReview.run` posts the message unless the record already names a thread (a retried
execution resumes it, after checking that the thread really is this review's message, posted
by this Slack app), uploads the flagged-examples montage into the thread, then reads
`conversations.replies` and `reactions.get` (with `full=True`) until a listed approver decides
or the deadline, fixed when the review was opened, has passed.

What decides is slack_grammar.py's grammar (`read_reply`, `reaction_verdict`); a reply that
looks like an answer but does not count is logged with why. Of the answers from listed approvers, the earliest in Slack time decides: a reply's time is its
message `ts`; Slack gives reactions no time, so a reaction's is when the gate first saw it
(kept in the review record). A tie goes to the rejection. An answer is final once the next
read of the thread shows the same earliest answer, so an earlier message that Slack shows late
still wins; answers dated after the deadline never count. `reviewed_at` is the answer's time.

Errors: 429 waits exactly its Retry-After, 5xx and network errors back off exponentially, both
within MAX_ATTEMPTS and the review's deadline. Slack's own error codes other than the transient
ones (`invalid_auth`, `channel_not_found`, `not_in_channel`, ...) are permanent and end the
review as NOT_BLESSED. The token is read from the environment here, sent only to an https://
(or loopback) `slack_api_url`, and redacted from every message the gate writes.
"""

import dataclasses
import http.client
import ipaddress
import json
import math
import os
import re
import socket
import time
import urllib.error
import urllib.parse
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from absl import logging
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from components.review_gate import decision as decision_lib
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate.slack_grammar import read_reply
from components.review_gate.slack_grammar import reaction_verdict

BACKEND = 'slack'
DEFAULT_API_URL = 'https://slack.com/api/'
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 15
# How soon the thread is read again to confirm the earliest answer before it becomes final.
CONFIRM_SECONDS = 1.0
# Slack reports these with HTTP 200 and ok=false, yet they clear up on their own.
TRANSIENT_SLACK_ERRORS = frozenset({'ratelimited', 'internal_error', 'fatal_error',
                                    'service_unavailable', 'request_timeout'})
# Slack member IDs: U (or W on Enterprise Grid) and capital letters and digits.
USER_ID_PATTERN = re.compile(r'[UW][A-Z0-9]{1,20}')
CHANNEL_ID_PATTERN = re.compile(r'[CGD][A-Z0-9]{1,20}')

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


@dataclasses.dataclass(frozen=True)
class Answer:
  """One approver's answer: a thread reply or a reaction on the review message."""
  at: float  # Slack time in epoch seconds: the reply's ts, or when the reaction was first seen
  verdict: str
  user: str
  comment: str
  how: str  # 'thread reply' or 'reaction :x:'
  key: str  # the reply's ts, or 'reaction/user'
  ts: str  # the time as a Slack ts string

  def order(self):
    """Earliest first; at the same time a rejection first (fail closed); then stable."""
    return (self.at, self.verdict != decision_lib.REJECTED, self.user, self.key)


def _esc(value) -> str:
  """Slack mrkdwn escaping for text that comes from data (example IDs, paths)."""
  return str(value).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def build_blocks(summary: review_summary.ReviewSummary, review_id: str, approvers: List[str],
                 timeout_seconds: float,
                 deadline_at: Optional[float] = None) -> Tuple[str, List[Dict]]:
  """Returns (fallback text, Block Kit blocks) of the review message.

  Both carry the review ID in backticks: a resumed gate checks it to know the thread is its own,
  and the drift headline (review_summary.drift_headline): what changed since the last shipped
  model, or why there is nothing to compare with.
  """
  c = summary.counts
  by = (f'by {decision_lib.iso_time(deadline_at)} ({timeout_seconds:g}s after the review '
        'opened)' if deadline_at else f'within {timeout_seconds:g}s')
  acc = review_summary.format_accuracy
  classes = '\n'.join(
      f'• class {_esc(r.get("class"))} ({_esc(r.get("split"))}): {r.get("flagged")}/'
      f'{r.get("count")} flagged ({100.0 * float(r.get("flagged_share") or 0):.1f}%)'
      for r in summary.worst_classes) or '_no per-class statistics_'
  examples = '\n'.join(
      f'{r.get("rank")}. `{_esc(r.get("example_id"))}` ({_esc(r.get("split"))}) label '
      f'{_esc(r.get("label"))}, predicted {_esc(r.get("predicted_class"))}, '
      f'{review_summary.flagged_line(r, summary.ranked_by)}'
      for r in summary.top_flagged) or '_none flagged_'
  who = ', '.join(f'<@{a}>' for a in approvers)
  drift = review_summary.drift_headline(summary.drift)
  drift = _esc(drift if len(drift) <= 1000 else drift[:999] + '…')
  text = (f'Model review `{review_id}` for {summary.pipeline}: {c["flagged"]} of '
          f'{c["scored"]} examples flagged. {drift.rstrip(".")}. Reply "approve" or '
          '"reject: <why>" in the thread.')
  blocks = [
      {'type': 'header', 'text': {'type': 'plain_text',
                                  'text': f'Model review: {summary.pipeline}'[:150]}},
      {'type': 'section', 'fields': [
          {'type': 'mrkdwn', 'text': f'*Run*\n{_esc(summary.run_id)}'},
          {'type': 'mrkdwn', 'text': f'*Model*\n`{_esc(summary.model_uri)}` (id {summary.model_id})'},
          {'type': 'mrkdwn', 'text': (f'*Examples*\n{c["seen"]} seen, {c["scored"]} scored, '
                                      f'{c["quarantined"]} quarantined, {c["flagged"]} flagged')},
          {'type': 'mrkdwn', 'text': (f'*Evaluator accuracy*\noverall {acc(summary.overall_accuracy)}'
                                      f', hard slice {acc(summary.hard_accuracy)}')},
      ]},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': drift}},
      {'type': 'section', 'text': {'type': 'mrkdwn',
                                   'text': f'*Worst classes by flagged share*\n{classes}'}},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': f'*Top flagged examples* (ranked by '
                                                              f'{_esc(summary.ranked_by)})\n'
                                                              f'{examples}'}},
      {'type': 'section', 'text': {'type': 'mrkdwn',
                                   'text': f'*Report*: <{summary.report_url}|open the review page>'
                                   if '://' in summary.report_url
                                   else f'*Report*: `{_esc(summary.report_url)}`'}},
      {'type': 'context', 'elements': [{'type': 'mrkdwn', 'text': (
          f'Reply in this thread with just `approve` or `reject`, optionally followed by `:` or '
          f'`-` and a comment (a question or a condition does not count), or react '
          f':white_check_mark: / :x:. The earliest answer decides. Approvers: {who}. Review '
          f'`{review_id}`; no answer {by} means not blessed.')}]},
  ]
  return text, blocks



def _read_bytes(path: str) -> bytes:
  """A file's bytes from any file system TensorFlow reads (local, gs://, ...)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


class SlackReview:
  """One review in one Slack channel, through the Web API."""

  def __init__(self, *, channel: str, approvers: List[str], token_env: str,
               api_url: Optional[str] = None, poll_interval_seconds: float = 10.0,
               sleep: Callable[[float], None] = time.sleep):
    self.channel = channel
    self.approvers = list(approvers)
    self.token_env = token_env
    self.api_url = api_url or DEFAULT_API_URL
    self.poll_interval = poll_interval_seconds
    self._sleep = sleep
    self._token = None
    self._client = None
    self._ignored = set()
    self._store = None
    self._review_id = ''
    self._deadline_at = 0.0
    self._reactions_seen: Dict[str, float] = {}

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

  def run(self, store: review_store.ReviewStore, record: Dict,
          summary: review_summary.ReviewSummary, timeout_seconds: float,
          deadline_at: Optional[float] = None) -> decision_lib.Decision:
    """Posts (or resumes) the review and waits for a decision; never raises for Slack errors.

    Args:
      store: the reviews folder; the thread, the upload and first-seen reactions are noted there.
      record: the review record the executor opened or resumed.
      summary: what the message shows.
      timeout_seconds: the review's time in all, for the messages.
      deadline_at: epoch seconds after which no answer counts; default now + timeout_seconds.

    Returns:
      The decision: approved or rejected by a listed approver, a timeout, or an error (bad
      settings, no token, a thread that is not this review's, Slack refusing or unreachable).
    """
    deadline_at = time.time() + timeout_seconds if deadline_at is None else deadline_at
    deadline = time.monotonic() + (deadline_at - time.time())
    review_id = record['review_id']
    self._store, self._review_id, self._deadline_at = store, review_id, deadline_at
    self._reactions_seen = _reactions_seen(record)
    thread_ts = record.get('slack_thread_ts') or ''
    try:
      self._check_settings()
      self._connect()
      if thread_ts:
        logging.info('Resuming Slack review %s in channel %s thread %s', review_id,
                     self.channel, thread_ts)
        self._check_thread(review_id, thread_ts, deadline)
      else:
        thread_ts = self._post(store, review_id, summary, timeout_seconds, deadline_at, deadline)
      # Stored first-seen times are read from disk: a reaction cannot predate the review
      # message, nor be seen later than now.
      self._reactions_seen = _reactions_seen(record, floor=_seconds(thread_ts) or 0.0,
                                             ceiling=time.time())
      if summary.montage_path and not record.get('montage_uploaded'):
        self._upload_montage(store, review_id, summary.montage_path, thread_ts, deadline)
      outcome = self._wait(review_id, thread_ts, timeout_seconds, deadline)
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

  def _post(self, store, review_id, summary, timeout_seconds, deadline_at, deadline) -> str:
    text, blocks = build_blocks(summary, review_id, self.approvers, timeout_seconds, deadline_at)
    response = self._call('chat_postMessage', deadline, channel=self.channel, text=text,
                          blocks=blocks, unfurl_links=False)
    thread_ts = response.get('ts')
    if not thread_ts:
      raise decision_lib.PermanentReviewError(
          'chat.postMessage answered ok without a message ts; is slack_api_url a Slack Web API?')
    channel_id = response.get('channel') or self.channel

    def remember(record):
      record['slack_thread_ts'] = thread_ts
      record['slack_channel_id'] = channel_id

    store.update(review_id, remember)
    # Replies and reactions are read by channel ID; a name like #ml-review only works for posting.
    self.channel = channel_id
    logging.info('Posted Slack review %s to channel %s (thread %s)', review_id, channel_id,
                 thread_ts)
    return thread_ts

  def _check_thread(self, review_id: str, thread_ts: str, deadline: float) -> None:
    """Refuses a recorded thread unless this app posted it for this review.

    The record's thread is only a pointer someone could have changed: the thread must start
    with a message from this bot (auth.test says which) that names the review ID.
    """
    me = self._call('auth_test', deadline)
    page = self._call('conversations_replies', deadline, channel=self.channel, ts=thread_ts,
                      limit=1)
    parent = next((m for m in page.get('messages') or [] if m.get('ts') == thread_ts), None)
    marker = f'`{review_id}`'
    why = ''
    if parent is None:
      why = 'Slack did not return it'
    elif not me.get('bot_id') or parent.get('bot_id') != me.get('bot_id'):
      why = 'it was not posted by this Slack app'
    elif marker not in (parent.get('text') or '') and marker not in json.dumps(
        parent.get('blocks') or []):
      why = f'it does not name review {review_id}'
    if why:
      raise decision_lib.PermanentReviewError(
          f'thread {thread_ts} in {self.channel} is not the message of review {review_id} '
          f'({why}); the review record points at the wrong thread - move '
          f'{review_id}.json out of the reviews folder and run the pipeline again')

  def _upload_montage(self, store, review_id, path, thread_ts, deadline) -> None:
    try:
      self._call('files_upload_v2', deadline, channel=self.channel, thread_ts=thread_ts,
                 file=_read_bytes(path), filename=os.path.basename(path),
                 title='Top flagged examples')
    except decision_lib.ReviewError as e:
      # The message already holds the numbers; a missing picture is no reason to block.
      logging.warning('Could not upload %s to the review thread: %s', path, e)
      return
    store.update(review_id, lambda r: r.update(montage_uploaded=True))
    logging.info('Uploaded %s to Slack review %s', os.path.basename(path), review_id)

  def _wait(self, review_id, thread_ts, timeout_seconds, deadline) -> decision_lib.Decision:
    """Reads the thread until the earliest answer is confirmed by a second read, or time is up."""
    logging.info('Waiting until %s for %s to answer Slack review %s',
                 decision_lib.iso_time(self._deadline_at), ', '.join(self.approvers), review_id)
    polls, last_error, previous = 0, '', None
    while True:
      polls += 1
      answers = None
      try:
        answers = self._read_answers(thread_ts, deadline)
        last_error = ''
      except decision_lib.TransientReviewError as e:
        # An outage while waiting only costs time; the deadline still ends the review.
        last_error = str(e)
        logging.warning('Slack review %s: %s', review_id, e)
      out_of_time = time.monotonic() >= deadline
      if answers is not None:
        first = min(answers, key=Answer.order, default=None)
        if first is not None and (out_of_time or (previous and previous.key == first.key)):
          return self._answered(review_id, thread_ts, first, polls)
        previous = first
      elif out_of_time and previous is not None:
        return self._answered(review_id, thread_ts, previous, polls)
      if out_of_time:
        why = f'no decision from an approver within {timeout_seconds:g}s'
        if last_error:
          why += f' (last Slack error: {last_error})'
        logging.warning('Slack review %s timed out: %s', review_id, why)
        return self._decision(decision_lib.TIMEOUT, thread_ts, reason=why)
      remaining = deadline - time.monotonic()
      pause = self.poll_interval if previous is None else min(self.poll_interval, CONFIRM_SECONDS)
      self._sleep(max(0.0, min(pause, remaining)))

  def _answered(self, review_id, thread_ts, answer: Answer, polls: int) -> decision_lib.Decision:
    reviewed_at = decision_lib.slack_time(answer.ts)
    logging.info('Slack review %s %s by %s (%s at %s) after %d read(s)', review_id,
                 answer.verdict, answer.user, answer.how, reviewed_at, polls)
    return self._decision(answer.verdict, thread_ts, reviewer=answer.user, comment=answer.comment,
                          reviewed_at=reviewed_at,
                          reason=f'{answer.verdict} by {answer.user} in Slack ({answer.how})')

  def _read_answers(self, thread_ts, deadline) -> List[Answer]:
    """One read of the thread: every answer a listed approver gave by the deadline."""
    messages, cursor = [], None
    while True:  # a long discussion spans pages
      page = self._call('conversations_replies', deadline, channel=self.channel, ts=thread_ts,
                        limit=200, **({'cursor': cursor} if cursor else {}))
      messages.extend(page.get('messages') or [])
      cursor = (page.get('response_metadata') or {}).get('next_cursor')
      if not page.get('has_more') or not cursor:
        break
    answers = []
    for message in messages:
      ts = str(message.get('ts') or '')
      if ts == thread_ts or message.get('bot_id') or not message.get('user'):
        continue
      user = message['user']
      verdict, comment, why = read_reply(message.get('text', ''))
      if verdict is None:
        if why and user in self.approvers:
          self._note(ts, 'Ignoring a reply by %s in the review thread (ts %s): %s: %r', user, ts,
                     why, self._redact(message.get('text', '')))
        continue
      if user not in self.approvers:
        self._note(ts, 'Ignoring "%s" from %s in the review thread: not a listed approver',
                   verdict, user)
        continue
      at = _seconds(ts)
      if at is None:
        continue
      if at > self._deadline_at:
        self._note(ts, 'Ignoring "%s" from %s in the review thread: it came after the deadline '
                   '(%s)', verdict, user, decision_lib.iso_time(self._deadline_at))
        continue
      answers.append(Answer(at=at, verdict=verdict, user=user, comment=comment,
                            how='thread reply', key=ts, ts=ts))
    reactions = self._call('reactions_get', deadline, channel=self.channel, timestamp=thread_ts,
                           full=True)
    now, new = time.time(), {}
    for reaction in (reactions.get('message') or {}).get('reactions') or []:
      name = (reaction.get('name') or '').split('::')[0]
      verdict = reaction_verdict(name)
      if verdict is None:
        continue
      for user in reaction.get('users') or []:
        key = f'{name}/{user}'
        if user not in self.approvers:
          self._note(key, 'Ignoring :%s: from %s on the review: not a listed approver', name,
                     user)
          continue
        at = self._reactions_seen.get(key)
        if at is None:
          at = self._reactions_seen[key] = new[key] = now
        if at > self._deadline_at:
          self._note(key, 'Ignoring :%s: from %s on the review: first seen after the deadline',
                     name, user)
          continue
        answers.append(Answer(at=at, verdict=verdict, user=user, comment='',
                              how=f'reaction :{name}:', key=key, ts=f'{at:.6f}'))
    if new:  # a retried execution dates these reactions as this one did
      self._store.update(self._review_id,
                         lambda r: r.update(reactions_seen={**_reactions_seen(r), **new}))
    return answers

  def _note(self, key: str, message: str, *args) -> None:
    """Logs `message` once per answer, not once per read."""
    if key not in self._ignored:
      self._ignored.add(key)
      logging.warning(message, *args)

  def _confirm(self, thread_ts: str, outcome: decision_lib.Decision) -> None:
    """Says in the thread what the gate did; a failure here changes nothing."""
    result = 'the model is blessed for the Pusher' if outcome.blessed else 'the model is not blessed'
    try:
      self._call('chat_postMessage', time.monotonic() + HTTP_TIMEOUT_SECONDS,
                 channel=self.channel, thread_ts=thread_ts,
                 text=f'{outcome.decision.capitalize()} by <@{outcome.reviewer}>: {result}.')
    except decision_lib.ReviewError as e:
      logging.warning('Could not confirm the decision in the review thread: %s', e)


def _seconds(ts: str) -> Optional[float]:
  try:
    return float(ts)
  except (TypeError, ValueError):
    return None


def _reactions_seen(record: Dict, floor: float = -math.inf,
                    ceiling: float = math.inf) -> Dict[str, float]:
  """The record's first-seen times of reactions: well-formed, finite entries only, each
  moved into [floor, ceiling]."""
  seen = record.get('reactions_seen')
  if not isinstance(seen, dict):
    return {}
  return {k: min(max(float(v), floor), ceiling) for k, v in seen.items()
          if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
          and math.isfinite(v)}


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
