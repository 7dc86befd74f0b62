"""The `slack` backend: one Block Kit message, answered in its thread or by reaction.

Flow: the review record is already on disk (written by the executor before anything is sent).
`SlackReview.run` posts the message unless the record already names a thread (a retried
execution resumes it), uploads the flagged-examples montage into the thread, then polls
`conversations.replies` and `reactions.get` until a listed approver decides or the time is up.

Errors: 429 waits exactly its Retry-After, 5xx and network errors back off exponentially, both
within MAX_ATTEMPTS and the review's deadline. Slack's own error codes other than the transient
ones (`invalid_auth`, `channel_not_found`, `not_in_channel`, ...) are permanent and end the
review as NOT_BLESSED. The token is read from the environment here and never leaves the client.
"""

import http.client
import os
import re
import socket
import time
import urllib.error
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from components.review_gate import decision as decision_lib
from components.review_gate import review_store
from components.review_gate import review_summary

BACKEND = 'slack'
DEFAULT_API_URL = 'https://slack.com/api/'
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 15
# Slack reports these with HTTP 200 and ok=false, yet they clear up on their own.
TRANSIENT_SLACK_ERRORS = frozenset({'ratelimited', 'internal_error', 'fatal_error',
                                    'service_unavailable', 'request_timeout'})
APPROVE_WORDS = frozenset({'approve', 'approved', 'lgtm', 'ship'})
REJECT_WORDS = frozenset({'reject', 'rejected', 'decline', 'stop'})
APPROVE_REACTIONS = frozenset({'white_check_mark', 'heavy_check_mark', '+1', 'thumbsup'})
REJECT_REACTIONS = frozenset({'x', 'no_entry', 'no_entry_sign', '-1', 'thumbsdown'})
_MENTION = re.compile(r'^\s*<@[A-Z0-9]+>\s*')
# `approve`, `Reject: labels look wrong`, `LGTM!`, `reject - class 3` -> (word, comment)
_VERDICT = re.compile(r'^\s*\*?([A-Za-z]+)\b\*?[\s:,.!\-]*(.*)$', re.DOTALL)


def parse_reply(text: str) -> Tuple[Optional[str], str]:
  """`'reject: labels of class 3 look wrong'` -> ('rejected', 'labels of class 3 look wrong').

  The first word decides (after an optional @mention); anything else is (None, '').
  """
  match = _VERDICT.match(_MENTION.sub('', text or ''))
  if not match:
    return None, ''
  word, comment = match.group(1).lower(), match.group(2).strip()
  if word in APPROVE_WORDS:
    return decision_lib.APPROVED, comment
  if word in REJECT_WORDS:
    return decision_lib.REJECTED, comment
  return None, ''


def _esc(value) -> str:
  """Slack mrkdwn escaping for text that comes from data (example IDs, paths)."""
  return str(value).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def build_blocks(summary: review_summary.ReviewSummary, review_id: str, approvers: List[str],
                 timeout_seconds: float) -> Tuple[str, List[Dict]]:
  """Returns (fallback text, Block Kit blocks) of the review message."""
  c = summary.counts
  acc = review_summary.format_accuracy
  classes = '\n'.join(
      f'• class {_esc(r.get("class"))} ({_esc(r.get("split"))}): {r.get("flagged")}/'
      f'{r.get("count")} flagged ({100.0 * float(r.get("flagged_share") or 0):.1f}%)'
      for r in summary.worst_classes) or '_no per-class statistics_'
  examples = '\n'.join(
      f'{r.get("rank")}. `{_esc(r.get("example_id"))}` ({_esc(r.get("split"))}) label '
      f'{_esc(r.get("label"))}, predicted {_esc(r.get("predicted_class"))}, score '
      f'{float(r.get("vog_score") or 0):.2f}' for r in summary.top_flagged) or '_none flagged_'
  who = ', '.join(f'<@{a}>' for a in approvers)
  text = (f'Model review for {summary.pipeline}: {c["flagged"]} of {c["scored"]} examples '
          f'flagged. Reply "approve" or "reject <why>" in the thread.')
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
      {'type': 'section', 'text': {'type': 'mrkdwn',
                                   'text': f'*Worst classes by flagged share*\n{classes}'}},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': f'*Top flagged examples*\n{examples}'}},
      {'type': 'section', 'text': {'type': 'mrkdwn',
                                   'text': f'*Report*: <{summary.report_url}|open the review page>'
                                   if '://' in summary.report_url
                                   else f'*Report*: `{_esc(summary.report_url)}`'}},
      {'type': 'context', 'elements': [{'type': 'mrkdwn', 'text': (
          f'Reply in this thread with `approve` or `reject <comment>`, or react :white_check_mark:'
          f' / :x:. Approvers: {who}. Review `{review_id}`; no answer within '
          f'{timeout_seconds:g}s means not blessed.')}]},
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
    if not self.api_url.endswith('/'):
      self.api_url += '/'
    self.poll_interval = poll_interval_seconds
    self._sleep = sleep
    self._token = None
    self._client = None
    self._ignored = set()

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
          summary: review_summary.ReviewSummary, timeout_seconds: float) -> decision_lib.Decision:
    """Posts (or resumes) the review and waits for a decision; never raises for Slack errors."""
    deadline = time.monotonic() + timeout_seconds
    review_id = record['review_id']
    thread_ts = record.get('slack_thread_ts') or ''
    try:
      self._connect()
      if thread_ts:
        logging.info('Resuming Slack review %s in channel %s thread %s', review_id,
                     self.channel, thread_ts)
      else:
        thread_ts = self._post(store, review_id, summary, timeout_seconds, deadline)
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

  def _post(self, store, review_id, summary, timeout_seconds, deadline) -> str:
    text, blocks = build_blocks(summary, review_id, self.approvers, timeout_seconds)
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
    logging.info('Waiting up to %gs for %s to answer Slack review %s', timeout_seconds,
                 ', '.join(self.approvers), review_id)
    polls, last_error = 0, ''
    while True:
      polls += 1
      try:
        found = self._poll(thread_ts, deadline)
        last_error = ''
      except decision_lib.TransientReviewError as e:
        # An outage while waiting only costs time; the deadline still ends the review.
        last_error = str(e)
        logging.warning('Slack review %s: %s', review_id, e)
        found = None
      if found:
        verdict, reviewer, comment, how = found
        logging.info('Slack review %s %s by %s (%s) after %d poll(s)', review_id, verdict,
                     reviewer, how, polls)
        return self._decision(verdict, thread_ts, reviewer=reviewer, comment=comment,
                              reason=f'{verdict} by {reviewer} in Slack ({how})')
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        why = f'no decision from an approver within {timeout_seconds:g}s'
        if last_error:
          why += f' (last Slack error: {last_error})'
        logging.warning('Slack review %s timed out: %s', review_id, why)
        return self._decision(decision_lib.TIMEOUT, thread_ts, reason=why)
      self._sleep(min(self.poll_interval, remaining))

  def _poll(self, thread_ts, deadline) -> Optional[Tuple[str, str, str, str]]:
    """One look at the thread; (verdict, reviewer, comment, how) once an approver decided.

    A rejection from any approver outweighs approvals seen in the same look: fail closed.
    """
    messages, cursor = [], None
    while True:  # a long discussion spans pages
      page = self._call('conversations_replies', deadline, channel=self.channel, ts=thread_ts,
                        limit=200, **({'cursor': cursor} if cursor else {}))
      messages.extend(page.get('messages') or [])
      cursor = (page.get('response_metadata') or {}).get('next_cursor')
      if not page.get('has_more') or not cursor:
        break
    approvals, rejections = [], []
    for message in messages:
      if message.get('ts') == thread_ts or message.get('bot_id') or not message.get('user'):
        continue
      verdict, comment = parse_reply(message.get('text', ''))
      if verdict is None:
        continue
      user = message['user']
      if user not in self.approvers:
        if message.get('ts') not in self._ignored:
          self._ignored.add(message.get('ts'))
          logging.warning('Ignoring "%s" from %s in the review thread: not a listed approver',
                          verdict, user)
        continue
      target = approvals if verdict == decision_lib.APPROVED else rejections
      target.append((verdict, user, comment, 'thread reply'))
    reactions = self._call('reactions_get', deadline, channel=self.channel, timestamp=thread_ts)
    for reaction in (reactions.get('message') or {}).get('reactions') or []:
      name = reaction.get('name', '').split('::')[0]
      verdict = (decision_lib.APPROVED if name in APPROVE_REACTIONS
                 else decision_lib.REJECTED if name in REJECT_REACTIONS else None)
      for user in reaction.get('users') or []:
        if verdict is None:
          continue
        if user not in self.approvers:
          key = f'{name}/{user}'
          if key not in self._ignored:
            self._ignored.add(key)
            logging.warning('Ignoring :%s: from %s on the review: not a listed approver', name,
                            user)
          continue
        target = approvals if verdict == decision_lib.APPROVED else rejections
        target.append((verdict, user, '', f'reaction :{name}:'))
    if rejections:
      return rejections[0]
    return approvals[0] if approvals else None

  def _confirm(self, thread_ts: str, outcome: decision_lib.Decision) -> None:
    """Says in the thread what the gate did; a failure here changes nothing."""
    result = 'the model is blessed for the Pusher' if outcome.blessed else 'the model is not blessed'
    try:
      self._call('chat_postMessage', time.monotonic() + HTTP_TIMEOUT_SECONDS,
                 channel=self.channel, thread_ts=thread_ts,
                 text=f'{outcome.decision.capitalize()} by <@{outcome.reviewer}>: {result}.')
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
