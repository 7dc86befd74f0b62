"""The review workspace: an approver walks a report's flagged examples in a browser, gives
verdicts, and approves or rejects the model (`vog-audit review serve`).

One page lists every flagged example of one difficulty report as the report page shows it
(report_html's rows: a thumbnail for images, the feature values for tabular rows and text)
with its split, label, prediction, bucket, kind and agreeing signals. Filters and navigation
run in the page; the keyboard does everything the mouse does (0-9: `wrong label` with that
class; c, a, x: correct, ambiguous, exclude; j/k or the arrow keys: next/previous). Each
verdict goes through `verdicts.mark` into the verdicts folder that `vog-audit review mark`
writes; the decision goes through `local_backend.answer` into the pending local review of the
report, as `vog-audit review approve/reject` answers it, and the waiting gate picks it up.

Who may use it: the server listens on 127.0.0.1 only, on a free port by default. Every request
needs the random token of the URL the command prints (as Jupyter's); the first visit trades
it for a session cookie (HttpOnly, SameSite=Strict, named after the port) and is redirected
to the address without it. Requests whose Host header is not 127.0.0.1:PORT or
localhost:PORT are refused (DNS rebinding), and so are POSTs without the session's CSRF token
in the X-CSRF-Token header or from another Origin. Pages carry a Content-Security-Policy that
runs only the page's own script and style (by nonce) and loads nothing from elsewhere. The
approver is named when the server starts (--by), and is one of the gate's approvers; the
token stands for that name, as the name on the command line stands for it in `review mark`.
"""

import dataclasses
import errno
import hmac
import json
import os
import secrets
import signal
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import flask
import jinja2
from werkzeug import exceptions as http_errors
from werkzeug import serving

from components.review_gate import local_backend
from components.review_gate import review_record
from components.review_gate import review_store
from components.review_gate import verdicts as verdicts_lib
from components.vog import vocabulary as vocab
from components.vog.report import report_format
from components.vog.report import report_html
from components.vog.report import report_rows

LOOPBACK = '127.0.0.1'
TOKEN_BYTES = 32
MAX_BODY_BYTES = 16 * 1024
MAX_SESSIONS = 64  # browsers that traded the token for a cookie; the oldest go first
CSRF_HEADER = 'X-CSRF-Token'
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_COOKIE_PREFIX = 'vog_review_'
_WRITE_WAIT_SECONDS = 30.0
_DECISIONS = {'approve': True, 'reject': False}
# The fields of the API's requests: their JSON types, and how to say them.
_TEXT = ((str,), 'text')
_VERDICT_FIELDS = {'example_id': _TEXT, 'split': _TEXT, 'verdict': _TEXT,
                   'label': ((int, type(None)), 'a class (a whole number) or null'),
                   'note': _TEXT}
_DECISION_FIELDS = {'decision': _TEXT, 'comment': _TEXT}
# Every key of the verdict buttons and keyboard: the page and the tests name them from here.
KEYS = {verdicts_lib.CORRECT: 'c', verdicts_lib.AMBIGUOUS: 'a', verdicts_lib.EXCLUDE: 'x'}
_MAX_CLASS_BUTTONS = 20  # more classes than this get a number field instead of buttons


class WorkspaceError(ValueError):
  """A workspace that cannot start, or a request it refuses; `status` is the HTTP status
  the refusal is answered with, and the message says what is wrong and what to do."""

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


@dataclasses.dataclass(frozen=True)
class _ReadReport(report_format.LoadedReport):
  """A loaded report whose flagged examples were read once (every verdict needs their
  fingerprint, and the folder is an audit's output, which nothing changes)."""
  records: Tuple[bytes, ...] = ()

  def flagged_examples(self) -> List[bytes]:
    return list(self.records)


def _read_once(report: report_format.LoadedReport) -> _ReadReport:
  fields = {f.name: getattr(report, f.name)
            for f in dataclasses.fields(report_format.LoadedReport)}
  return _ReadReport(**fields, records=tuple(report.flagged_examples()))


def _previews(report: _ReadReport, module_file: Optional[str]
              ) -> Tuple[List[report_html.ExamplePreview], str]:
  """The report page's previews of the flagged examples, and why they have no thumbnails
  ('' when they have them or the data is no images).

  Thumbnails need the audit's model inputs, settings and parser (its transform graph, or
  `module_file` when it used vog_inputs_fn); without them each example shows its feature
  values, as the report page shows tabular rows and text.
  """
  # Imported here: they load TensorFlow, which the module's users may not need.
  from components.vog import report_page  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import examples_io  # pylint: disable=g-import-not-at-top
  from components.vog.report import report_folder  # pylint: disable=g-import-not-at-top

  records = {row.rank: record for row, record in zip(report.flagged, report.records)}
  summary = report.summary
  why = ''
  specs: List[examples_io.InputSpec] = []
  parser = None
  if summary.model_inputs is None or summary.num_classes is None:
    why = 'its summary.json names no model inputs or classes (an older release wrote it)'
  else:
    specs = report_page.input_specs_of(summary)
    try:
      parser, why = report_page.report_parser(report.uri, summary, specs, module_file)
    except Exception as e:  # pylint: disable=broad-except
      # Thumbnails are a view; the feature values still show every example.
      parser, why = None, _cannot_parse(e)
    if parser is None:
      specs = []
  try:
    return report_folder.previews_of(parser, specs, report.flagged, records), why
  except Exception as e:  # pylint: disable=broad-except
    return _feature_previews(report), _cannot_parse(e)


def _feature_previews(report: _ReadReport) -> List[report_html.ExamplePreview]:
  """Previews of the examples' feature values only, as the report shows tabular rows."""
  from components.vog.report import report_folder  # pylint: disable=g-import-not-at-top
  records = {row.rank: record for row, record in zip(report.flagged, report.records)}
  return report_folder.previews_of(None, [], report.flagged, records)


def _cannot_parse(error: Exception) -> str:
  return f'its examples cannot be parsed here ({" ".join(str(error).split())[:300]})'


class Workspace:
  """One approver's review of one report: its examples as the page shows them, the verdicts
  on them, and the answer to the report's pending review.

  Thread-safe: the server answers requests on several threads; verdicts and answers are
  written one at a time, and none after `close`.
  """

  def __init__(self, report: report_format.LoadedReport, *, by: str,
               approvers: Sequence[str], verdict_store: verdicts_lib.VerdictStore,
               reviews_dir: str, report_id: Optional[int] = None,
               module_file: Optional[str] = None,
               log: Callable[[str], None] = lambda line: None):
    """Reads the report's examples and builds their previews.

    Raises:
      WorkspaceError: `by` is empty or not among `approvers`.
      verdicts.VerdictError: the approvers are no list of names.
      json_checks.ReportFormatError: the report's flagged examples cannot be read.
    """
    self.approvers = verdicts_lib.check_approvers(approvers)
    by = (by or '').strip()
    if not by:
      raise WorkspaceError(f'say who reviews: pass --by NAME (one of the approvers: '
                           f'{", ".join(self.approvers)})')
    if by not in self.approvers:
      raise WorkspaceError(f'{by!r} is not an approver; approvers are: '
                           f'{", ".join(self.approvers)}; only they give verdicts and answer '
                           'reviews')
    self.by = by
    self.report = _read_once(report)
    self.report_uri = verdicts_lib.normal_uri(report.uri)
    self.report_id = report_id
    self.verdict_store = verdict_store
    self.reviews_dir = reviews_dir
    self.summary_sha256 = verdicts_lib.summary_sha256(self.report)
    self.classes, self.classes_text = verdicts_lib.report_classes(self.report)
    self._log = log
    self._write_lock = threading.Lock()
    self._closed = False
    self.previews, self.no_thumbnails = _previews(self.report, module_file)
    summary = self.report.summary
    known = vocab.AGREEMENT_NAMES
    self.ranked_by = summary.ranked_by if summary.ranked_by in known else vocab.VOG
    rows = [report_rows.flagged_row_to_json(row) for row in self.report.flagged]
    # The report page's rows: display text, and a thumbnail as a data: URI.
    try:
      self.cards = report_html.flagged_rows(
          rows, self.previews, self.ranked_by, known)
    except ValueError as e:  # an image of a shape the page cannot show
      self.previews, self.no_thumbnails = _feature_previews(self.report), str(e)
      self.cards = report_html.flagged_rows(
          rows, self.previews, self.ranked_by, known)

  def facets(self) -> List[Dict[str, Any]]:
    """Per flagged example, in rank order: what the page's filters compare."""
    out = []
    for i, row in enumerate(self.report.flagged):
      kind = getattr(row, 'kind', None)  # rows of reports written before kinds have none
      out.append({'i': i, 'rank': row.rank, 'example_id': row.example_id, 'split': row.split,
                  'label': row.label, 'bucket': row.vog_bucket,
                  'kind': None if kind is None else report_html.kind_slug(kind),
                  'agreeing': None if row.agreeing is None else list(row.agreeing)})
    return out

  def _latest(self) -> Dict[verdicts_lib.Key, verdicts_lib.Verdict]:
    try:
      return self.verdict_store.latest(self.approvers)
    except review_store.ReviewStoreError as e:
      raise WorkspaceError(str(e), 503) from None

  def state(self, latest: Optional[Mapping[verdicts_lib.Key, verdicts_lib.Verdict]] = None
            ) -> Dict[str, Any]:
    """The latest verdict on each flagged example (by any approver, in any audit: the
    latest wins; read from the folder unless given) and how many have one."""
    if latest is None:
      latest = self._latest()
    given = {}
    for i, row in enumerate(self.report.flagged):
      v = latest.get((row.split, row.example_id))
      if v is not None:
        given[str(i)] = {'verdict': v.verdict, 'label': v.corrected_label, 'by': v.by,
                         'text': v.describe(), 'note': v.note, 'at': v.at,
                         'other_audit': v.summary_sha256 != self.summary_sha256}
    return {'verdicts': given, 'given': len(given), 'total': len(self.report.flagged)}

  def give_verdict(self, payload: Any) -> Dict[str, Any]:
    """Records a verdict {example_id, split, verdict, label, note} by this approver; returns
    what it says and the new `state`."""
    fields = _fields(payload, _VERDICT_FIELDS, required=('example_id', 'split', 'verdict'))
    label = fields.get('label')
    with self._write_lock:
      if self._closed:
        raise WorkspaceError('the review workspace is stopping; start it again', 503)
      try:
        verdict = verdicts_lib.parse_verdict(fields['verdict'])
        # An example of another report, or of another split, is refused here by name.
        verdicts_lib.flagged_row(self.report, fields['example_id'], fields['split'])
        latest = self._latest()
        before = latest.get((fields['split'], fields['example_id']))
        recorded = verdicts_lib.mark(
            self.verdict_store, self.report, example_id=fields['example_id'], verdict=verdict,
            by=self.by, approvers=self.approvers, label=label, note=fields.get('note', ''),
            split=fields['split'], report_id=self.report_id)
      except verdicts_lib.VerdictError as e:
        raise WorkspaceError(_for_the_page(str(e))) from None
      except review_store.ReviewStoreError as e:  # the folder: locked, unwritable
        raise WorkspaceError(f'the verdict was not recorded: {e}', 503) from None
    line = (f'verdict {recorded.verdict_id}: {recorded.by} marked {recorded.example_id} '
            f'({recorded.split}) {recorded.describe()}')
    if before is not None:
      line += (f'; it supersedes verdict {before.verdict_id} ({before.describe()} by '
               f'{before.by})')
    self._log(line)
    # The folder as read before this verdict, and this verdict: one read per verdict.
    return {'message': line, **self.state({**latest, recorded.key(): recorded})}

  def _reviews(self) -> review_store.ReviewStore:
    try:
      return review_store.ReviewStore(self.reviews_dir)
    except review_store.ReviewStoreError as e:
      raise WorkspaceError(str(e), 409) from None

  def pending_review(self) -> Tuple[Optional[review_record.ReviewRecord], str]:
    """(the open local review of this report, '') or (None, why there is none to answer)."""
    none = (f'no pending review of this report in {self.reviews_dir}: the gate has not asked '
            'about it yet, or its review is closed; verdicts can still be given')
    if not os.path.isdir(self.reviews_dir):
      return None, none
    store = self._reviews()
    try:
      records = store.list()
    except review_store.ReviewStoreError as e:
      raise WorkspaceError(str(e), 503) from None
    mine = [r for r in records if r.report_uri and verdicts_lib.normal_uri(r.report_uri) == self.report_uri]
    local = [r for r in mine if r.backend == local_backend.BACKEND]
    if not local:
      if mine:
        r = mine[-1]
        return None, (f'the pending review {r.review_id} of this report is a {r.backend} '
                      'review, answered there (`vog-audit review list` says where), not '
                      'here; verdicts can still be given')
      return None, none
    waiting = [r for r in local if r.status == review_record.PENDING] or local
    if len(waiting) > 1:
      ids = ', '.join(r.review_id for r in waiting)
      return None, (f'several pending reviews of this report ({ids}); answer the one you mean '
                    'with `vog-audit review approve ID` or `reject ID`')
    return waiting[0], ''

  def review_status(self) -> Dict[str, Any]:
    """What the page says about the review at load time."""
    try:
      record, why = self.pending_review()
    except WorkspaceError as e:
      return {'review_id': None, 'text': str(e)}
    if record is None:
      return {'review_id': None, 'text': why}
    return {'review_id': record.review_id,
            'text': (f'review {record.review_id} ({record.status}): '
                     f'{local_backend.LocalBackend.where_to_answer(record)}')}

  def decide(self, payload: Any) -> Dict[str, Any]:
    """Approves or rejects ({decision: approve|reject, comment}) the pending review of this
    report as this approver, as `vog-audit review approve|reject` does."""
    fields = _fields(payload, _DECISION_FIELDS, required=('decision',))
    if fields['decision'] not in _DECISIONS:
      raise WorkspaceError(f'{fields["decision"][:40]!r} is not a decision; give approve or '
                           'reject')
    approve = _DECISIONS[fields['decision']]
    with self._write_lock:
      if self._closed:
        raise WorkspaceError('the review workspace is stopping; start it again', 503)
      record, why = self.pending_review()
      if record is None:
        raise WorkspaceError(f'cannot {fields["decision"]}: {why}', 409)
      try:
        record = local_backend.answer(self._reviews(), record.review_id, approve=approve,
                                      by=self.by, comment=fields.get('comment', ''))
      except review_store.ReviewStoreError as e:
        raise WorkspaceError(_for_the_page(str(e)), 409) from None
    said = 'approved' if approve else 'rejected'
    if record.status == review_record.PENDING:
      given = sum(a['verdict'] == 'approved' for a in record.state['answers'])
      line = (f'review {record.review_id}: {self.by} {said}; {given} of the {record.quorum} '
              'approvals needed so far, the gate waits for more')
    else:
      line = (f'review {record.review_id} {record.status} by {self.by}; the waiting gate '
              'picks it up at its next poll')
    self._log(line)
    return {'message': line, 'review_id': record.review_id, 'status': record.status}

  def close(self, wait_seconds: float = _WRITE_WAIT_SECONDS) -> bool:
    """Refuses later writes and waits for one under way; False when it did not end in time."""
    if not self._write_lock.acquire(timeout=wait_seconds):
      return False
    try:
      self._closed = True
    finally:
      self._write_lock.release()
    return True


def _for_the_page(message: str) -> str:
  """A store's message as the page says it: the page's buttons stand for the CLI's options."""
  return message.replace('pass --label N', 'choose the class').replace(
      'pass --by NAME', 'start the workspace with --by NAME')


def _fields(payload: Any, types: Mapping[str, Any], required: Sequence[str]
            ) -> Dict[str, Any]:
  """The fields of a request's JSON object, checked against `types`; refuses unknown and
  missing fields and values of the wrong type, naming them."""
  if not isinstance(payload, dict):
    raise WorkspaceError('the request body is not a JSON object')
  unknown = sorted(str(k)[:40] for k in payload if k not in types)
  if unknown:
    raise WorkspaceError(f'the request has an unknown field {unknown[0]!r}; it takes '
                         f'{", ".join(types)}')
  for name in required:
    if name not in payload:
      raise WorkspaceError(f'the request has no {name}')
  for name, value in payload.items():
    kinds, what = types[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
      raise WorkspaceError(f'the request\'s {name} is {json.dumps(value)[:40]}; expected '
                           f'{what}')
  return dict(payload)


@dataclasses.dataclass
class _Session:
  sid: str
  csrf: str
  started: float


class _Guard:
  """Who may talk to the server: the holder of the token, from this machine's address."""

  def __init__(self, token: str, port: int):
    self.token = token
    self.port = port
    self.cookie = f'{_COOKIE_PREFIX}{port}'  # cookies are per host, not per port
    self.hosts = {f'{LOOPBACK}:{port}', f'localhost:{port}'}
    self.origins = {f'http://{h}' for h in self.hosts}
    self._sessions: List[_Session] = []
    self._lock = threading.Lock()

  def good_token(self, given: Optional[str]) -> bool:
    return bool(given) and hmac.compare_digest(given.encode('utf-8', 'replace'),
                                               self.token.encode('utf-8'))

  def session(self, sid: Optional[str]) -> Optional[_Session]:
    if not sid:
      return None
    given = sid.encode('utf-8', 'replace')
    found = None
    with self._lock:
      for s in self._sessions:  # every one compared, in constant time each
        if hmac.compare_digest(given, s.sid.encode('ascii')):
          found = s
    return found

  def new_session(self) -> _Session:
    s = _Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES),
                 time.time())
    with self._lock:
      self._sessions = (self._sessions + [s])[-MAX_SESSIONS:]
    return s


def _refuse(status: int, message: str):
  """Ends the request with `status` and a one-line message (JSON for the API)."""
  if flask.request.path.startswith('/api/'):
    response = flask.jsonify(error=message)
  else:
    response = flask.make_response(message + '\n')
    response.mimetype = 'text/plain'
  response.status_code = status
  return response


def create_app(workspace: Workspace, *, token: str, port: int) -> flask.Flask:
  """The Flask app of `workspace`, for requests to 127.0.0.1:`port` (or localhost:`port`)
  that carry `token` (then the session cookie it is traded for)."""
  app = flask.Flask(__name__, static_folder=None, template_folder='templates')
  app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
  app.jinja_env.undefined = jinja2.StrictUndefined
  guard = _Guard(token, port)

  @app.before_request
  def check():
    request = flask.request
    flask.g.nonce = secrets.token_urlsafe(16)
    host = request.headers.get('Host', '').lower()
    if host not in guard.hosts:
      return _refuse(403, f'this review workspace answers only requests to '
                          f'http://{LOOPBACK}:{port}/ (or localhost:{port}); open the URL that '
                          '`vog-audit review serve` printed')
    session = guard.session(request.cookies.get(guard.cookie))
    if session is None:
      if request.method == 'GET' and guard.good_token(request.args.get('token')):
        session = guard.new_session()
        # To the page, without the token in the address bar (and never to a path that the
        # request named, which could be another site's: //evil.example).
        response = flask.redirect('/', code=303)
        response.set_cookie(guard.cookie, session.sid, httponly=True, samesite='Strict',
                            path='/')
        return response
      return _refuse(403, 'this review workspace needs its token: open the URL with ?token=... '
                          'that `vog-audit review serve` printed')
    if request.method not in ('GET', 'HEAD'):
      origin = request.headers.get('Origin')
      if origin is not None and origin.lower() not in guard.origins:
        return _refuse(403, 'refused: the request comes from another site')
      given = request.headers.get(CSRF_HEADER, '')
      if not hmac.compare_digest(given.encode('utf-8', 'replace'),
                                 session.csrf.encode('ascii')):
        return _refuse(403, f'refused: the request lacks this page\'s {CSRF_HEADER}; reload '
                            'the page')
    flask.g.session = session
    return None

  @app.after_request
  def protect(response):
    nonce = flask.g.get('nonce', '')
    response.headers['Content-Security-Policy'] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'")
    response.headers['X-Content-Type-Options'] = 'nosniff'
    response.headers['X-Frame-Options'] = 'DENY'
    response.headers['Referrer-Policy'] = 'no-referrer'
    response.headers['Cache-Control'] = 'no-store'
    response.headers['Cross-Origin-Opener-Policy'] = 'same-origin'
    response.headers['Cross-Origin-Resource-Policy'] = 'same-origin'
    return response

  @app.errorhandler(http_errors.HTTPException)
  def http_error(error):
    return _refuse(error.code or 500, f'{error.code} {error.name}')

  @app.errorhandler(WorkspaceError)
  def refused(error):
    return _refuse(error.status, str(error))

  def body() -> Any:
    request = flask.request
    if not request.is_json:
      raise WorkspaceError('send the request as JSON (Content-Type: application/json)', 415)
    if request.content_length is None:
      raise WorkspaceError('send the request with its Content-Length', 411)
    if request.content_length > MAX_BODY_BYTES:
      raise WorkspaceError(f'the request body is larger than {MAX_BODY_BYTES} bytes', 413)
    try:
      return json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):
      raise WorkspaceError('the request body is not valid JSON') from None

  @app.get('/')
  def page():
    facets = workspace.facets()
    labels = sorted({f['label'] for f in facets if f['label'] is not None})
    max_agreeing = max((len(f['agreeing']) for f in facets if f['agreeing'] is not None),
                       default=0)
    names = [n for n in vocab.AGREEMENT_NAMES
             if any(f['agreeing'] and n in f['agreeing'] for f in facets)]
    kinds = report_html.kind_filter(
        [{'kind': getattr(row, 'kind', None)} for row in workspace.report.flagged])
    classes = list(workspace.classes)
    return flask.render_template(
        'review_app.html', nonce=flask.g.nonce, csrf=flask.g.session.csrf, ws=workspace,
        cards=workspace.cards, examples=list(zip(facets, workspace.cards)),
        data={'examples': facets, 'state': workspace.state(), 'classes': classes,
              'keys': KEYS},
        splits=sorted({f['split'] for f in facets}), labels=labels,
        has_unlabeled=any(f['label'] is None for f in facets),
        buckets=sorted({f['bucket'] for f in facets}), max_agreeing=max_agreeing,
        agreeing_total=len(vocab.AGREEMENT_NAMES), signal_names=names, kinds=kinds,
        classes=classes, class_buttons=len(classes) <= _MAX_CLASS_BUTTONS,
        keys=KEYS, review=workspace.review_status(), max_note=verdicts_lib.MAX_NOTE,
        max_comment=review_record.MAX_TEXT)

  @app.get('/api/state')
  def state():
    return flask.jsonify(workspace.state())

  @app.post('/api/verdict')
  def verdict():
    return flask.jsonify(workspace.give_verdict(body()))

  @app.post('/api/decision')
  def decision():
    return flask.jsonify(workspace.decide(body()))

  return app


class _QuietHandler(serving.WSGIRequestHandler):
  """Logs no line per request (the first one's URL holds the token); errors still show."""

  def log_request(self, *args, **kwargs):
    del args, kwargs


def start_server(workspace: Workspace, *, host: str = LOOPBACK, port: int = 0,
                 token: Optional[str] = None) -> Tuple[serving.BaseWSGIServer, str]:
  """Binds the workspace's server to `host`:`port` (0: a free port); returns it (not yet
  serving) and the URL to open, token included.

  Raises:
    WorkspaceError: a host other than 127.0.0.1, a port out of range or in use.
  """
  if host != LOOPBACK:
    raise WorkspaceError(f'the review workspace listens on {LOOPBACK} only, not {host!r}: '
                         'it gives verdicts and answers reviews as its approver, so only this '
                         'machine may reach it (use an SSH tunnel to reach it from elsewhere)')
  if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
    raise WorkspaceError(f'port {port!r} is not a TCP port (0 to 65535; 0 picks a free one)')
  token = token or secrets.token_urlsafe(TOKEN_BYTES)
  # Bound here rather than by werkzeug, which ends the process on a port in use.
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  try:
    sock.bind((host, port))
    sock.listen(serving.LISTEN_QUEUE)
    server = serving.make_server(host, port, None, threaded=True,
                                 request_handler=_QuietHandler, fd=sock.fileno())
  except OSError as e:
    if e.errno == errno.EADDRINUSE:
      raise WorkspaceError(f'port {port} on {host} is in use; pass another --port, or leave '
                           'it out for a free one') from None
    raise WorkspaceError(f'cannot listen on {host}:{port} '
                         f'({review_store.os_reason(e)})') from None
  finally:
    sock.close()  # the server holds its own copy of the socket
  bound = server.port
  server.app = create_app(workspace, token=token, port=bound)
  return server, f'http://{LOOPBACK}:{bound}/?token={token}'


def serve_until_stopped(server: serving.BaseWSGIServer, workspace: Workspace,
                        stop: Optional[threading.Event] = None) -> None:
  """Serves until SIGINT (Ctrl-C) or SIGTERM, or until `stop` is set; then stops taking
  requests, lets a verdict or answer being written finish, and closes the socket.

  Call it from the main thread when it should handle the signals; elsewhere pass `stop`.
  """
  stop = stop or threading.Event()
  previous = {}
  if threading.current_thread() is threading.main_thread():
    for sig in STOP_SIGNALS:
      previous[sig] = signal.signal(sig, lambda *_: stop.set())
  thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.2},
                            name='review-workspace', daemon=True)
  thread.start()
  try:
    while thread.is_alive() and not stop.wait(0.5):
      pass
  finally:
    server.shutdown()
    thread.join()
    server.server_close()
    if not workspace.close():
      logging.warning('Review workspace: a write was still under way after %.0fs',
                      _WRITE_WAIT_SECONDS)
    for sig, handler in previous.items():
      signal.signal(sig, handler)
