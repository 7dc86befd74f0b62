"""A Slack Web API stand-in on 127.0.0.1 for the review gate's tests.

It implements, over real HTTP, the methods the gate calls (auth.test, chat.postMessage,
conversations.replies, reactions.get, files.getUploadURLExternal, the upload URL,
files.completeUploadExternal), checks the bearer token like Slack does, records every call,
and lets a test script replies, edits, deletions, reactions and failures.

It answers with Slack's shapes where the gate relies on them:

- chat.postMessage takes `metadata` ({"event_type": ..., "event_payload": {...}}; anything
  else is `invalid_metadata_format`) and refuses blocks over Block Kit's limits
  (`invalid_blocks`: header text 150 characters, section text 3,000, at most 10 section fields
  of 2,000, at most 10 context elements of 3,000, 50 blocks) and text over 40,000 characters
  (`msg_too_long`). Messages it posts carry the bot's `bot_id`, `app_id` and bot `user`.
- conversations.replies returns a message's `metadata` only with `include_all_metadata=true`.
- An edited message keeps its `ts` and gains `edited: {"user", "ts"}` (as after chat.update or
  an edit in the client). A deleted reply is gone from the thread; a deleted message that has
  replies stays as a tombstone (`subtype: "tombstone"`, `hidden: true`, user USLACKBOT, text
  "This message was deleted.", no metadata).
- `reactions.get` without `full=true` shows only the first `REACTION_USERS_WITHOUT_FULL`
  users of each reaction.

A reply can be given an explicit `ts` and kept out of the next few `conversations.replies`
answers (`hidden_reads`), which is how a message that Slack dates earlier can show up in a
later read; or deleted once that many reads have shown it (`deleted_after_reads`).
"""

import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

BOT_ID = 'B0GATE'
BOT_USER_ID = 'U0GATEBOT'
APP_ID = 'A0GATE'
REACTION_USERS_WITHOUT_FULL = 2
# Block Kit's limits (docs.slack.dev, reference/block-kit/blocks) and chat.postMessage's.
HEADER_TEXT_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
SECTION_FIELDS_LIMIT = 10
SECTION_FIELD_TEXT_LIMIT = 2000
CONTEXT_ELEMENTS_LIMIT = 10
TEXT_OBJECT_LIMIT = 3000
BLOCKS_LIMIT = 50
MESSAGE_TEXT_LIMIT = 40000


class FakeSlack:
  """Start with `with FakeSlack(token, channels=['C1']) as slack:`; `slack.api_url` for the gate."""

  def __init__(self, token: str, channels=('C0REVIEW',)):
    self.token = token
    self.channels = set(channels)
    self.calls: List[Dict] = []
    self.messages: Dict[str, Dict] = {}
    self.uploads: Dict[str, bytes] = {}
    self.failures: Dict[str, List[Dict]] = {}
    # Applied to each new top-level message: replies (user, text) or (user, text, options)
    # with the options of `reply`, reactions (name, user), and then edits (i, new text) of
    # the i-th of those replies, as their authors would make them.
    self.auto_replies: List = []
    self.auto_reactions: List = []
    self.auto_edits: List = []
    self._lock = threading.Lock()
    self._ts = itertools.count(1)
    self._last_ts = 0.0
    self._hidden: Dict[str, int] = {}  # ts -> conversations.replies reads it is left out of
    self._deleted_after: Dict[str, int] = {}  # ts -> reads that show it before it is deleted
    self._server = ThreadingHTTPServer(('127.0.0.1', 0), _handler(self))
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

  @property
  def api_url(self) -> str:
    return f'http://127.0.0.1:{self._server.server_address[1]}/api/'

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._server.shutdown()
    self._server.server_close()

  # --- what tests script ----------------------------------------------------------------
  def fail(self, method: str, status: int = 200, error: Optional[str] = None,
           headers: Optional[Dict[str, str]] = None, times: int = 1) -> None:
    """The next `times` calls of `method` answer `status` (and ok=false `error`)."""
    for _ in range(times):
      self.failures.setdefault(method, []).append(
          {'status': status, 'error': error, 'headers': headers or {}})

  def reply(self, thread_ts: str, user: str, text: str, ts: Optional[str] = None,
            hidden_reads: int = 0, **extra) -> str:
    """Adds a reply; `ts` dates it (default: now), `hidden_reads` hides it from that many reads;
    `extra` fields (e.g. subtype='thread_broadcast') go onto the message."""
    with self._lock:
      return self._add_message(self.messages[thread_ts]['channel'], user, text, thread_ts,
                               ts=ts, hidden_reads=hidden_reads, **extra)['ts']

  def post_as_bot(self, channel: str, text: str, bot_id: str = 'B0OTHER', blocks=None,
                  metadata=None, thread_ts: Optional[str] = None) -> str:
    """A message by some bot (another app, or the gate's own when bot_id=BOT_ID), top-level
    unless `thread_ts`, with `metadata` as chat.postMessage takes it."""
    with self._lock:
      message = self._add_message(channel, None, text, thread_ts, bot=True, blocks=blocks)
      if bot_id != BOT_ID:
        message.update(bot_id=bot_id, app_id='A0OTHER', user='U0OTHERBOT')
      if metadata is not None:
        message['metadata'] = metadata
      return message['ts']

  def edit(self, ts: str, text: str, user: Optional[str] = None) -> None:
    """Edits a message as its author would (or `user`): new text, same `ts`, and `edited`."""
    with self._lock:
      message = self.messages[ts]
      message['text'] = text
      message['edited'] = {'user': user or message.get('user'), 'ts': self._next_ts()}

  def delete(self, ts: str) -> None:
    """Deletes a message: a reply disappears; a message with replies becomes a tombstone."""
    with self._lock:
      message = self.messages[ts]
      if any(m.get('thread_ts') == ts and m['ts'] != ts for m in self.messages.values()):
        self.messages[ts] = {'type': 'message', 'subtype': 'tombstone',
                             'text': 'This message was deleted.', 'user': 'USLACKBOT',
                             'hidden': True, 'ts': ts, 'thread_ts': ts,
                             'channel': message['channel']}
      else:
        del self.messages[ts]

  def unreact(self, ts: str, name: str, user: str) -> None:
    with self._lock:
      for r in self.messages[ts].get('reactions') or []:
        if r['name'] == name and user in r['users']:
          r['users'].remove(user)
          r['count'] -= 1
      self.messages[ts]['reactions'] = [r for r in self.messages[ts].get('reactions') or []
                                        if r['users']]

  def react(self, ts: str, name: str, user: str) -> None:
    with self._lock:
      self._add_reaction(self.messages[ts], name, user)

  # --- what tests read --------------------------------------------------------------------
  def calls_to(self, method: str) -> List[Dict]:
    return [c for c in list(self.calls) if c['method'] == method]

  def threads(self) -> List[str]:
    """The ts of every top-level message, oldest first."""
    with self._lock:
      return sorted(m['ts'] for m in self.messages.values() if 'thread_ts' not in m)

  def top_level_posts(self) -> List[Dict]:
    return [c for c in self.calls_to('chat.postMessage')
            if c['ok'] and not c['params'].get('thread_ts')]

  # --- server side ------------------------------------------------------------------------
  def _next_ts(self) -> str:
    """Like Slack's: the current time in microseconds, unique within the channel."""
    self._last_ts = max(round(time.time(), 6), self._last_ts + 0.000001)
    return f'{self._last_ts:.6f}'

  def _add_message(self, channel, user, text, thread_ts=None, bot=False, ts=None,
                   hidden_reads=0, deleted_after_reads=0, **extra):
    ts = ts or self._next_ts()
    message = {'type': 'message', 'ts': ts, 'text': text, 'channel': channel, **extra}
    if bot:
      message.update(bot_id=BOT_ID, app_id=APP_ID, user=BOT_USER_ID)
    else:
      message['user'] = user
    if thread_ts:
      message['thread_ts'] = thread_ts
    if hidden_reads:
      self._hidden[ts] = hidden_reads
    if deleted_after_reads:
      self._deleted_after[ts] = deleted_after_reads
    self.messages[ts] = message
    return message

  @staticmethod
  def _add_reaction(message, name, user):
    reactions = message.setdefault('reactions', [])
    for r in reactions:
      if r['name'] == name:
        r['users'].append(user)
        r['count'] += 1
        return
    reactions.append({'name': name, 'users': [user], 'count': 1})

  def handle(self, method: str, params: Dict, authorization: str):
    """Returns (status, headers, body dict) for one API call."""
    with self._lock:
      queued = self.failures.get(method)
      if queued:
        failure = queued.pop(0)
        body = {'ok': False, 'error': failure['error'] or 'ratelimited'}
        return failure['status'], failure['headers'], body
      if authorization != f'Bearer {self.token}':
        return 200, {}, {'ok': False, 'error': 'invalid_auth'}
      channel = params.get('channel') or params.get('channel_id')
      if method in ('chat.postMessage', 'conversations.replies', 'reactions.get',
                    'files.completeUploadExternal') and channel not in self.channels:
        return 200, {}, {'ok': False, 'error': 'channel_not_found'}
      if method == 'auth.test':
        return 200, {}, {'ok': True, 'user_id': BOT_USER_ID, 'bot_id': BOT_ID, 'team_id': 'T0TEAM'}
      if method == 'chat.postMessage':
        refusal = _post_refusal(params)
        if refusal:
          return 200, {}, refusal
        extra = {'metadata': params['metadata']} if params.get('metadata') else {}
        message = self._add_message(channel, None, params.get('text', ''),
                                    params.get('thread_ts'), bot=True,
                                    blocks=params.get('blocks'), **extra)
        if not params.get('thread_ts'):
          replies = [self._add_message(channel, user, text, message['ts'],
                                       **(options[0] if options else {}))
                     for user, text, *options in self.auto_replies]
          for name, user in self.auto_reactions:
            self._add_reaction(message, name, user)
          for i, text in self.auto_edits:
            replies[i]['text'] = text
            replies[i]['edited'] = {'user': replies[i]['user'], 'ts': self._next_ts()}
        return 200, {}, {'ok': True, 'channel': channel, 'ts': message['ts'], 'message': message}
      if method == 'conversations.replies':
        ts = params.get('ts')
        if ts not in self.messages:
          return 200, {}, {'ok': False, 'error': 'thread_not_found'}
        thread = []
        for m in self.messages.values():
          if m['ts'] != ts and m.get('thread_ts') != ts:
            continue
          if self._hidden.get(m['ts']):
            self._hidden[m['ts']] -= 1
            continue
          thread.append(m)
        for m in thread:  # deleted by its author once it has been read this often
          if m['ts'] in self._deleted_after:
            self._deleted_after[m['ts']] -= 1
            if not self._deleted_after[m['ts']]:
              del self._deleted_after[m['ts']]
              del self.messages[m['ts']]
        thread.sort(key=lambda m: float(m['ts']))
        if not _true(params.get('include_all_metadata')):
          thread = [{k: v for k, v in m.items() if k != 'metadata'} for m in thread]
        start, limit = int(params.get('cursor') or 0), int(params.get('limit') or 1000)
        page, more = thread[start:start + limit], start + limit < len(thread)
        return 200, {}, {'ok': True, 'messages': page, 'has_more': more,
                         'response_metadata': {'next_cursor': str(start + limit) if more else ''}}
      if method == 'reactions.get':
        message = self.messages.get(params.get('timestamp'))
        if message is None:
          return 200, {}, {'ok': False, 'error': 'message_not_found'}
        if not _true(params.get('full')):
          message = dict(message, reactions=[
              dict(r, users=r['users'][:REACTION_USERS_WITHOUT_FULL])
              for r in message.get('reactions') or []])
        return 200, {}, {'ok': True, 'type': 'message', 'channel': channel, 'message': message}
      if method == 'files.getUploadURLExternal':
        file_id = f'F{next(self._ts):06d}'
        return 200, {}, {'ok': True, 'file_id': file_id,
                         'upload_url': self.api_url.replace('/api/', f'/upload/{file_id}')}
      if method == 'files.completeUploadExternal':
        files = json.loads(params.get('files') or '[]')
        return 200, {}, {'ok': True, 'files': [{'id': f['id'], 'title': f.get('title')}
                                               for f in files]}
      return 404, {}, {'ok': False, 'error': 'unknown_method'}


def _true(value) -> bool:
  """Slack's reading of a boolean argument: true, 1 (slack_sdk sends "1")."""
  return str(value if value is not None else '').lower() in ('1', 'true')


def _post_refusal(params: Dict) -> Optional[Dict]:
  """chat.postMessage's error body for a message Slack would refuse, or None."""
  text = params.get('text') or ''
  if len(text) > MESSAGE_TEXT_LIMIT:
    return {'ok': False, 'error': 'msg_too_long'}
  metadata = params.get('metadata')
  if isinstance(metadata, str):
    try:
      metadata = json.loads(metadata)
    except ValueError:
      return {'ok': False, 'error': 'invalid_metadata_format'}
    params['metadata'] = metadata
  if metadata is not None and not (
      isinstance(metadata, dict) and isinstance(metadata.get('event_type'), str)
      and isinstance(metadata.get('event_payload'), dict)):
    return {'ok': False, 'error': 'invalid_metadata_format'}
  blocks = params.get('blocks')
  if isinstance(blocks, str):
    blocks = params['blocks'] = json.loads(blocks)
  errors = _block_errors(blocks or [])
  if errors:
    return {'ok': False, 'error': 'invalid_blocks', 'errors': errors,
            'response_metadata': {'messages': [f'[ERROR] {e}' for e in errors]}}
  return None


def _block_errors(blocks: List[Dict]) -> List[str]:
  """What Slack would say is wrong with `blocks`, e.g. 'must be less than 3001 characters
  [json-pointer:/blocks/4/text/text]'."""
  errors = []

  def check(text, limit, pointer):
    if len(text or '') > limit:
      errors.append(f'must be less than {limit + 1} characters [json-pointer:{pointer}]')

  if len(blocks) > BLOCKS_LIMIT:
    errors.append(f'no more than {BLOCKS_LIMIT} items allowed [json-pointer:/blocks]')
  for i, block in enumerate(blocks):
    where = f'/blocks/{i}'
    if block.get('type') == 'header':
      check(block['text'].get('text'), HEADER_TEXT_LIMIT, f'{where}/text/text')
    elif block.get('type') == 'section':
      if 'text' in block:
        check(block['text'].get('text'), SECTION_TEXT_LIMIT, f'{where}/text/text')
      fields = block.get('fields') or []
      if len(fields) > SECTION_FIELDS_LIMIT:
        errors.append(f'no more than {SECTION_FIELDS_LIMIT} items allowed '
                      f'[json-pointer:{where}/fields]')
      for j, field in enumerate(fields):
        check(field.get('text'), SECTION_FIELD_TEXT_LIMIT, f'{where}/fields/{j}/text')
    elif block.get('type') == 'context':
      elements = block.get('elements') or []
      if len(elements) > CONTEXT_ELEMENTS_LIMIT:
        errors.append(f'no more than {CONTEXT_ELEMENTS_LIMIT} items allowed '
                      f'[json-pointer:{where}/elements]')
      for j, element in enumerate(elements):
        check(element.get('text'), TEXT_OBJECT_LIMIT, f'{where}/elements/{j}/text')
  return errors


def _handler(slack: FakeSlack):

  class Handler(BaseHTTPRequestHandler):

    def log_message(self, *args):  # keep test output clean
      pass

    def do_GET(self):
      self.do_POST()

    def do_POST(self):
      url = urllib.parse.urlparse(self.path)
      raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
      if url.path.startswith('/upload/'):
        slack.uploads[url.path.rsplit('/', 1)[1]] = raw
        slack.calls.append({'method': 'upload', 'params': {}, 'ok': True, 'time': time.monotonic(),
                            'authorization': self.headers.get('Authorization', '')})
        return self._send(200, {}, b'OK - %d' % len(raw), 'text/plain')
      params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
      content_type = self.headers.get('Content-Type', '')
      if raw and content_type.startswith('application/json'):
        params.update(json.loads(raw))
      elif raw:
        params.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
      method = url.path.rsplit('/', 1)[-1]
      status, headers, body = slack.handle(method, params,
                                           self.headers.get('Authorization', ''))
      slack.calls.append({'method': method, 'params': params, 'status': status,
                          'ok': bool(body.get('ok')), 'time': time.monotonic(),
                          'authorization': self.headers.get('Authorization', '')})
      data = json.dumps(body).encode() if status < 500 else b'<html>upstream error</html>'
      self._send(status, headers, data,
                 'application/json; charset=utf-8' if status < 500 else 'text/html')

    def _send(self, status, headers, data, content_type):
      self.send_response(status)
      self.send_header('Content-Type', content_type)
      self.send_header('Content-Length', str(len(data)))
      for key, value in headers.items():
        self.send_header(key, value)
      self.end_headers()
      self.wfile.write(data)

  return Handler
