"""The review workspace (`vog-audit review serve`) on a small real report folder.

The protocol and its guards with Flask's test client: the token of the printed URL traded
for an HttpOnly, SameSite=Strict cookie; the Host header (DNS rebinding); the CSRF token on
every POST; verdicts through verdicts.mark and the decision through local_backend.answer, and
what they refuse. Then the real server, started by the command line, driven by a headless
Chromium through Selenium: verdicts by number keys and by clicks, the progress, the approval,
and what lands on disk.
"""

import dataclasses
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
import tensorflow as tf
from click.testing import CliRunner

import browser
import fixtures
import repo_paths
import review_gate_support as support

from components.review_gate import review_app
from components.review_gate import review_store
from components.review_gate import verdicts
from components.vog.report import report_format
from components.vog.report import report_rows

TOKEN = 'test-token-' + 'x' * 32
PORT = 48123  # the test client never listens; it only names the port the guards expect
BASE = f'http://127.0.0.1:{PORT}'
HOSTILE_ID = '<img src=x onerror="window.xss=1">'
# Whether flagged rows carry `kind` in this version (compute/flag_kinds.py).
HAS_KINDS = 'kind' in {f.name for f in dataclasses.fields(report_rows.FlaggedRow)}


def _row(rank, example_id, split, label, predicted, bucket='hard', agreeing=None, kind=None):
  row = {'rank': rank, 'example_id': example_id, 'split': split, 'label': label,
         'predicted_class': predicted, 'target_class': label, 'vog_score': 5.0 - rank / 10,
         'vog_raw': 0.03, 'vog_percentile': 99.9 - rank / 10, 'vog_bucket': bucket}
  if agreeing is not None:
    row['agreeing'] = agreeing
  if kind is not None and HAS_KINDS:
    row['kind'] = kind
  return row


ROWS = [
    _row(1, 'digit-0412', 'train', 8, 1, agreeing=['confidence', 'vog'], kind='wrong label'),
    _row(2, 'digit-<0099>', 'train', 3, 5, agreeing=['vog'], kind='atypical'),
    _row(3, HOSTILE_ID, 'eval', 1, 7, agreeing=['confidence', 'margin_last', 'vog'],
         kind='wrong label'),
    _row(4, 'digit-0007', 'train', 2, 7, bucket='medium', agreeing=[], kind='unclear'),
    _row(5, 'digit-0008', 'eval', 4, 9, agreeing=['el2n'], kind='atypical'),
    _row(6, 'digit-0009', 'eval', 0, 6, bucket='medium', agreeing=['vog'], kind='unclear'),
]


def _cli(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  return CliRunner().invoke(main, list(args))


@pytest.fixture(scope='module')
def report_uri(tmp_path_factory):
  """A report folder of 6 flagged 8x8 digits (10 classes) with their bytes and model inputs,
  as the audit writes it, so that the workspace shows thumbnails."""
  uri = str(tmp_path_factory.mktemp('audit') / 'difficulty_report')
  support.write_report(uri, with_montage=False, flagged=ROWS)
  path = os.path.join(uri, 'summary.json')
  with open(path) as f:
    summary = json.load(f)
  summary.update(num_classes=10, model_inputs=[
      {'name': 'image', 'shape': [8, 8, 1], 'dtype': 'float32'}])
  with open(path, 'w') as f:
    json.dump(summary, f)
  images, _, _ = fixtures.digits(len(ROWS))
  with tf.io.TFRecordWriter(os.path.join(uri, 'flagged_examples.tfrecord')) as writer:
    for image, row in zip(images, ROWS):
      writer.write(fixtures.example(image, row['label'], row['example_id']).SerializeToString())
  return uri


@pytest.fixture(scope='module')
def report(report_uri):
  return report_format.load_report(report_uri)


def _open_review(root, report_uri, approvers=('alice', 'bob')):
  store = review_store.ReviewStore(os.path.join(root, 'reviews'))
  record, _ = store.open_review(support.local_record(
      'a' * 64, approvers=approvers, report_uri=report_uri, report_id=12))
  return store, record.review_id


@pytest.fixture
def root(tmp_path, report_uri):
  """A pipeline root whose local gate asked alice and bob about the report (artifact 12)."""
  _open_review(str(tmp_path), report_uri)
  return str(tmp_path)


def _workspace(root, report, by='alice', approvers=('alice', 'bob')):
  return review_app.Workspace(
      report, by=by, approvers=approvers,
      verdict_store=verdicts.VerdictStore(os.path.join(root, 'verdicts')),
      reviews_dir=os.path.join(root, 'reviews'), report_id=12)


def _signed_in(workspace):
  """A test client that opened the printed URL; returns (client, the page's CSRF token)."""
  client = review_app.create_app(workspace, token=TOKEN, port=PORT).test_client()
  first = client.get(f'/?token={TOKEN}', base_url=BASE)
  assert first.status_code == 303, first.data
  page = client.get('/', base_url=BASE)
  assert page.status_code == 200, page.data
  csrf = re.search(r'<meta name="csrf-token" id="csrf" content="([^"]+)">',
                   page.get_data(as_text=True)).group(1)
  return client, csrf


def _post(client, path, body, csrf, **headers):
  return client.post(path, base_url=BASE, data=json.dumps(body),
                     headers={'Content-Type': 'application/json', 'X-CSRF-Token': csrf,
                              **headers})


@pytest.fixture
def workspace(root, report):
  return _workspace(root, report)


def test_without_the_token_every_request_is_refused(workspace):
  client = review_app.create_app(workspace, token=TOKEN, port=PORT).test_client()
  for path in ('/', '/?token=wrong', '/api/state', f'/api/state?token={TOKEN[:-1]}'):
    refused = client.get(path, base_url=BASE)
    assert refused.status_code == 403, path
    assert b'needs its token' in refused.data
  posted = client.post('/api/verdict', base_url=BASE, json={})
  assert posted.status_code == 403
  assert posted.get_json()['error'].startswith('this review workspace needs its token')
  # The token is no key for a POST: only the session's cookie and CSRF token are.
  posted = client.post(f'/api/verdict?token={TOKEN}', base_url=BASE, json={})
  assert posted.status_code == 403


def test_the_token_is_traded_for_a_strict_http_only_cookie(workspace):
  client = review_app.create_app(workspace, token=TOKEN, port=PORT).test_client()
  first = client.get(f'/?token={TOKEN}', base_url=BASE)
  assert first.status_code == 303 and first.headers['Location'] == '/'
  cookie = first.headers['Set-Cookie']
  assert cookie.startswith(f'vog_review_{PORT}=')
  assert 'HttpOnly' in cookie and 'SameSite=Strict' in cookie and 'Path=/' in cookie
  assert TOKEN not in cookie
  page = client.get('/', base_url=BASE)
  assert page.status_code == 200
  html = page.get_data(as_text=True)
  policy = page.headers['Content-Security-Policy']
  nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
  assert "default-src 'none'" in policy and "img-src data:" in policy
  assert "frame-ancestors 'none'" in policy and 'unsafe' not in policy
  assert f'<script nonce="{nonce}">' in html and f'<style nonce="{nonce}">' in html
  assert page.headers['X-Frame-Options'] == 'DENY'
  assert page.headers['Referrer-Policy'] == 'no-referrer'
  assert page.headers['Cache-Control'] == 'no-store'
  # Another page load, another nonce.
  again = client.get('/', base_url=BASE).headers['Content-Security-Policy']
  assert again != policy
  # What the report holds is text: escaped in the page, and safe inside the JSON script.
  assert HOSTILE_ID not in html
  assert '&lt;img src=x onerror=&#34;window.xss=1&#34;&gt;' in html
  assert 'data:image/png;base64,' in html  # the report page's thumbnails
  assert 'onerror=' not in html.replace('onerror=&#34;', '').replace('onerror=\\"', '')
  data = json.loads(re.search(r'<script type="application/json" id="workspace-data">(.*?)'
                              r'</script>', html, re.S).group(1))
  assert [e['example_id'] for e in data['examples']] == [r['example_id'] for r in ROWS]
  assert data['state'] == {'verdicts': {}, 'given': 0, 'total': 6}
  assert '0 of 6 examples have a verdict' in html


def test_filters_follow_what_the_rows_carry(workspace, tmp_path):
  client, _ = _signed_in(workspace)
  html = client.get('/', base_url=BASE).get_data(as_text=True)
  assert '<option value="eval">eval</option>' in html
  assert '<option value="medium">medium</option>' in html
  assert '<option value="n:3">at least 3 of 8</option>' in html
  assert '<option value="s:el2n">el2n agrees</option>' in html
  assert ('id="f-kind"' in html) == HAS_KINDS
  # Rows of an older report: no kinds and no agreeing signals, so no such filters.
  uri = support.write_report(str(tmp_path / 'old_report'), with_montage=False)
  images, _, _ = fixtures.digits(2)
  with tf.io.TFRecordWriter(os.path.join(uri, 'flagged_examples.tfrecord')) as writer:
    for image, row in zip(images, support.FLAGGED):
      writer.write(fixtures.example(image, row['label'], row['example_id']).SerializeToString())
  old = _workspace(str(tmp_path), report_format.load_report(uri), approvers=('alice',))
  assert old.no_thumbnails.startswith('its summary.json names no model inputs')
  client, _ = _signed_in(old)
  html = client.get('/', base_url=BASE).get_data(as_text=True)
  assert 'id="f-kind"' not in html and 'value="n:1"' not in html
  assert '<table class="features">' in html and '<th>image</th>' in html  # feature values
  assert 'No thumbnails: its summary.json names no model inputs' in html


def test_a_host_other_than_loopback_and_the_port_is_refused(workspace):
  client, _ = _signed_in(workspace)
  for host in ('evil.example', f'evil.example:{PORT}', '127.0.0.1', f'127.0.0.1:{PORT + 1}',
               f'localhost.evil.example:{PORT}', ''):
    refused = client.get('/', base_url=BASE, headers={'Host': host})
    assert refused.status_code == 403, host
    assert b'answers only requests to' in refused.data
  assert client.get('/', base_url=BASE, headers={'Host': f'localhost:{PORT}'}).status_code == 200


def test_a_post_without_the_sessions_csrf_token_is_refused(workspace, root):
  client, csrf = _signed_in(workspace)
  body = {'example_id': 'digit-0412', 'split': 'train', 'verdict': 'correct'}
  no_header = client.post('/api/verdict', base_url=BASE, json=body)
  assert no_header.status_code == 403
  assert 'X-CSRF-Token' in no_header.get_json()['error']
  assert _post(client, '/api/verdict', body, csrf[:-1] + '#').status_code == 403
  assert _post(client, '/api/verdict', body, csrf,
               Origin='http://evil.example').status_code == 403
  # Another browser's session has its own CSRF token.
  other, other_csrf = _signed_in(workspace)
  assert other_csrf != csrf
  assert _post(other, '/api/verdict', body, csrf).status_code == 403
  assert not os.path.exists(os.path.join(root, 'verdicts', '000000000001.json'))
  accepted = _post(client, '/api/verdict', body, csrf, Origin=BASE)
  assert accepted.status_code == 200, accepted.data


def test_verdicts_go_to_the_store_that_review_mark_writes(workspace, root, report_uri):
  client, csrf = _signed_in(workspace)
  given = _post(client, '/api/verdict', {'example_id': 'digit-0412', 'split': 'train',
                                         'verdict': 'wrong label', 'label': 3,
                                         'note': 'a closed 3'}, csrf)
  assert given.status_code == 200, given.data
  answer = given.get_json()
  assert answer['message'] == 'verdict 1: alice marked digit-0412 (train) wrong label (8 -> 3)'
  assert answer['given'] == 1 and answer['total'] == 6
  assert answer['verdicts']['0']['text'] == 'wrong label (8 -> 3)'
  again = _post(client, '/api/verdict', {'example_id': 'digit-0412', 'split': 'train',
                                         'verdict': 'correct', 'label': None}, csrf)
  assert again.get_json()['message'] == (
      'verdict 2: alice marked digit-0412 (train) correct; it supersedes verdict 1 (wrong '
      'label (8 -> 3) by alice)')
  hostile = _post(client, '/api/verdict', {'example_id': HOSTILE_ID, 'split': 'eval',
                                           'verdict': 'exclude'}, csrf)
  assert hostile.status_code == 200, hostile.data
  [first, second, third] = verdicts.VerdictStore(os.path.join(root, 'verdicts')).history(
      ('alice',))
  assert (first.verdict, first.corrected_label, first.note, first.report_id) == (
      'wrong label', 3, 'a closed 3', 12)
  assert first.report_uri == report_uri and second.verdict == 'correct'
  assert third.example_id == HOSTILE_ID
  listed = _cli('review', 'verdicts', '--report', report_uri, '--pipeline-root', root)
  assert listed.exit_code == 0, listed.output
  assert 'digit-0412 (train)  correct  by alice' in listed.output
  state = client.get('/api/state', base_url=BASE).get_json()
  assert state['given'] == 2 and set(state['verdicts']) == {'0', '2'}


@pytest.mark.parametrize('body,status,error', [
    ({'example_id': 'digit-9999', 'split': 'train', 'verdict': 'correct'}, 400,
     "'digit-9999' is not a flagged example in split 'train' of the report"),
    ({'example_id': 'digit-0412', 'split': 'eval', 'verdict': 'correct'}, 400,
     "'digit-0412' is not a flagged example in split 'eval'"),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'wrong label', 'label': 8}, 400,
     "8 is the label 'digit-0412' already has"),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'wrong label', 'label': 10}, 400,
     '10 is not a class of the report (its classes: 0 to 9)'),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'wrong label'}, 400,
     "a 'wrong label' verdict needs the right class: choose the class"),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'correct', 'label': True}, 400,
     "the request's label is true; expected a class (a whole number) or null"),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'relabel'}, 400,
     "'relabel' is not a verdict"),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'correct', 'by': 'bob'}, 400,
     "the request has an unknown field 'by'"),
    ({'example_id': 'digit-0412', 'verdict': 'correct'}, 400, 'the request has no split'),
    ({'example_id': 'digit-0412', 'split': 'train', 'verdict': 'correct', 'note': 'a\nb'}, 400,
     'the note holds a line break'),
    (['digit-0412'], 400, 'the request body is not a JSON object'),
])
def test_a_verdict_the_store_would_refuse_is_refused_with_its_reason(workspace, root, body,
                                                                     status, error):
  client, csrf = _signed_in(workspace)
  refused = _post(client, '/api/verdict', body, csrf)
  assert refused.status_code == status, refused.data
  assert error in refused.get_json()['error']
  assert not os.path.exists(os.path.join(root, 'verdicts', '000000000001.json'))


def test_bodies_that_are_not_small_json_are_refused(workspace):
  client, csrf = _signed_in(workspace)
  headers = {'X-CSRF-Token': csrf}
  as_form = client.post('/api/verdict', base_url=BASE, data={'verdict': 'correct'},
                        headers=headers)
  assert as_form.status_code == 415
  broken = client.post('/api/verdict', base_url=BASE, data='{"verdict": ',
                       headers={**headers, 'Content-Type': 'application/json'})
  assert broken.status_code == 400 and 'not valid JSON' in broken.get_json()['error']
  deep = client.post('/api/verdict', base_url=BASE, data='[' * 5000 + ']' * 5000,
                     headers={**headers, 'Content-Type': 'application/json'})
  assert deep.status_code == 400
  huge = client.post('/api/verdict', base_url=BASE,
                     data=json.dumps({'note': 'x' * review_app.MAX_BODY_BYTES}),
                     headers={**headers, 'Content-Type': 'application/json'})
  assert huge.status_code == 413 and 'larger than 16384 bytes' in huge.get_json()['error']
  assert client.get('/nothing', base_url=BASE).status_code == 404
  assert client.delete('/api/verdict', base_url=BASE, headers=headers).status_code == 405


def test_the_decision_answers_the_pending_review_as_review_approve_does(root, report):
  store = review_store.ReviewStore(os.path.join(root, 'reviews'))
  [record] = store.list()
  ws = _workspace(root, report)
  assert ws.review_status()['review_id'] == record.review_id
  client, csrf = _signed_in(ws)
  page = client.get('/', base_url=BASE).get_data(as_text=True)
  assert f'review {record.review_id} (pending): approvers: alice, bob (1 needed)' in page
  bad = _post(client, '/api/decision', {'decision': 'ship'}, csrf)
  assert bad.status_code == 400
  assert bad.get_json()['error'] == "'ship' is not a decision; give approve or reject"
  approved = _post(client, '/api/decision', {'decision': 'approve',
                                             'comment': 'labels of class 3 checked'}, csrf)
  assert approved.status_code == 200, approved.data
  assert approved.get_json()['message'] == (
      f'review {record.review_id} approved by alice; the waiting gate picks it up at its '
      'next poll')
  answered = store.get(record.review_id)
  assert answered.status == 'approved'
  [given] = answered.state['answers']
  assert (given['by'], given['verdict'], given['comment']) == (
      'alice', 'approved', 'labels of class 3 checked')
  twice = _post(client, '/api/decision', {'decision': 'reject'}, csrf)
  assert twice.status_code == 409
  assert f'review {record.review_id} was already approved' in twice.get_json()['error']


def test_a_quorum_of_two_waits_for_the_second_approver(tmp_path, report_uri, report):
  store, review_id = _open_review(str(tmp_path), report_uri)
  store.update(review_id, lambda r: r.replace(quorum=2))
  client, csrf = _signed_in(_workspace(str(tmp_path), report, by='bob'))
  approved = _post(client, '/api/decision', {'decision': 'approve'}, csrf)
  assert approved.get_json()['message'] == (
      f'review {review_id}: bob approved; 1 of the 2 approvals needed so far, the gate waits '
      'for more')
  rejected = _cli('review', 'reject', review_id, '--by', 'alice', '--pipeline-root',
                  str(tmp_path))
  assert rejected.exit_code == 0, rejected.output
  assert store.get(review_id).status == 'rejected'


def test_without_a_pending_review_verdicts_are_given_and_the_decision_refused(
    tmp_path, report):
  ws = _workspace(str(tmp_path), report, approvers=('alice',))
  reviews = os.path.join(str(tmp_path), 'reviews')
  assert ws.review_status() == {'review_id': None, 'text': (
      f'no pending review of this report in {reviews}: the gate has not asked about it yet, '
      'or its review is closed; verdicts can still be given')}
  client, csrf = _signed_in(ws)
  refused = _post(client, '/api/decision', {'decision': 'approve'}, csrf)
  assert refused.status_code == 409
  assert refused.get_json()['error'].startswith(
      f'cannot approve: no pending review of this report in {reviews}')
  given = _post(client, '/api/verdict', {'example_id': 'digit-0007', 'split': 'train',
                                         'verdict': 'ambiguous'}, csrf)
  assert given.status_code == 200, given.data
  # A review of another report is not this one's.
  _open_review(str(tmp_path), '/pipelines/digits/VarianceOfGradients/difficulty_report/9',
               approvers=('alice',))
  assert _post(client, '/api/decision', {'decision': 'reject'}, csrf).status_code == 409


def test_only_an_approver_opens_the_workspace(root, report, report_uri):
  with pytest.raises(review_app.WorkspaceError,
                     match="'mallory' is not an approver; approvers are: alice, bob"):
    _workspace(root, report, by='mallory')
  result = _cli('review', 'serve', '--report', report_uri, '--by', 'mallory',
                '--pipeline-root', root)
  assert result.exit_code == 2 and result.stdout == ''
  assert result.stderr == ("error: 'mallory' is not an approver; approvers are: alice, bob; "
                           'only they may open the review workspace\n')
  for args, error in [
      ((), 'say who reviews: pass --by NAME (one of the approvers: alice, bob)'),
      (('--by', 'alice', '--port', 'http'),
       "--port 'http' is not a TCP port (0 to 65535; 0 picks a free one)"),
      (('--by', 'alice', '--port', '70000'),
       "--port '70000' is not a TCP port (0 to 65535; 0 picks a free one)")]:
    result = _cli('review', 'serve', '--report', report_uri, '--pipeline-root', root, *args)
    assert (result.exit_code, result.stderr) == (2, f'error: {error}\n')
  no_report = _cli('review', 'serve', '--by', 'alice', '--pipeline-root', root)
  assert no_report.stderr == ('error: say which audit to review: pass --report with its '
                              'difficulty_report folder\n')


def _get(port, path, host=None, cookie=None):
  conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
  headers = {'Host': host or f'127.0.0.1:{port}'}
  if cookie:
    headers['Cookie'] = cookie
  conn.request('GET', path, headers=headers)
  response = conn.getresponse()
  response.read()
  conn.close()
  return response


def test_the_server_listens_on_loopback_only_and_stops(workspace):
  for host in ('0.0.0.0', '::', 'localhost', '192.168.1.5', ''):
    with pytest.raises(review_app.WorkspaceError, match='listens on 127.0.0.1 only'):
      review_app.start_server(workspace, host=host)
  server, url = review_app.start_server(workspace)
  port = server.port
  assert server.socket.getsockname() == ('127.0.0.1', port) and port > 0
  assert re.fullmatch(rf'http://127\.0\.0\.1:{port}/\?token=[A-Za-z0-9_-]{{43}}', url)
  stop = threading.Event()
  thread = threading.Thread(target=review_app.serve_until_stopped,
                            args=(server, workspace, stop))
  thread.start()
  try:
    assert _get(port, '/').status == 403
    first = _get(port, url[len(f'http://127.0.0.1:{port}'):])
    assert first.status == 303
    cookie = first.getheader('Set-Cookie').split(';')[0]
    assert _get(port, '/', cookie=cookie).status == 200
    assert _get(port, '/', host=f'rebound.example:{port}', cookie=cookie).status == 403
    with pytest.raises(review_app.WorkspaceError, match=f'port {port} on 127.0.0.1 is in use'):
      review_app.start_server(workspace, port=port)
  finally:
    stop.set()
    thread.join(10)
  assert not thread.is_alive()
  with pytest.raises(OSError):
    socket.create_connection(('127.0.0.1', port), timeout=2)
  with pytest.raises(review_app.WorkspaceError, match='stopping'):
    workspace.give_verdict({'example_id': 'digit-0412', 'split': 'train',
                            'verdict': 'correct'})


# The browser test: the command line's server, a real Chromium, keys and clicks.


@pytest.fixture(scope='module')
def served(tmp_path_factory, report_uri):
  """`vog-audit review serve` as alice in a subprocess; yields (root, review id, URL, the
  process)."""
  root = str(tmp_path_factory.mktemp('served'))
  _, review_id = _open_review(root, report_uri)
  proc = subprocess.Popen(
      [sys.executable, '-c', 'from pipeline.cli import main; main()', 'review', 'serve',
       '--report', report_uri, '--by', 'alice', '--pipeline-root', root],
      cwd=repo_paths.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  url = None
  lines = []
  deadline = time.monotonic() + 120
  try:
    while url is None and time.monotonic() < deadline:
      line = proc.stdout.readline()
      if not line:
        break
      lines.append(line)
      match = re.search(r'open in a browser on this machine: (http://\S+)', line)
      url = match.group(1) if match else None
    assert url, f'no URL printed: {lines} {proc.stderr.read() if proc.poll() is not None else ""}'
    yield root, review_id, url, proc
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture(scope='module')
def chrome(tmp_path_factory):
  options = webdriver.ChromeOptions()
  options.binary_location = browser.ensure_chromium()
  for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
               '--no-first-run', '--disable-background-networking', '--window-size=1400,1000',
               f'--user-data-dir={tmp_path_factory.mktemp("chrome-profile")}'):
    options.add_argument(flag)
  options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
  driver = webdriver.Chrome(service=Service(executable_path=browser.ensure_chromedriver()),
                            options=options)
  try:
    yield driver
  finally:
    driver.quit()


def test_an_approver_reviews_in_a_real_browser(served, chrome, report_uri):
  root, review_id, url, proc = served
  driver = chrome
  wait = WebDriverWait(driver, 15)

  def text(element_id):
    return driver.find_element(By.ID, element_id).text

  def progress_is(n):
    wait.until(lambda d: text('progress') == f'{n} of 6 examples have a verdict',
               message=f'progress is {text("progress")!r}, not {n} of 6')

  def current_id():
    return driver.execute_script(
        "var a = document.querySelector('article.example:not([hidden]) .example-id');"
        'return a ? a.textContent : null;')

  def press(keys):
    ActionChains(driver).send_keys(keys).perform()

  driver.get(url)
  wait.until(lambda d: d.find_elements(By.ID, 'progress'))
  assert driver.current_url == url.split('?')[0]  # the token left the address bar
  assert driver.get_cookie(f'vog_review_{url.split(":")[2].split("/")[0]}')['httpOnly']
  progress_is(0)
  assert current_id() == 'digit-0412'
  assert text('shown-count') == '6 of 6 shown'
  thumbnail = driver.find_element(By.CSS_SELECTOR, 'article.example:not([hidden]) img')
  assert driver.execute_script('return arguments[0].naturalWidth', thumbnail) >= 8

  # Number keys: wrong label with that class; the page moves on to the next example.
  press('3')
  progress_is(1)
  wait.until(lambda d: current_id() == 'digit-<0099>')
  press('5')
  progress_is(2)
  wait.until(lambda d: current_id() == HOSTILE_ID)  # shown as text, never run
  assert driver.execute_script('return window.xss') is None
  # A number that is the example's own label is refused on the page, and nothing is written.
  press('1')
  wait.until(lambda d: 'already has' in text('message'))
  # Clicks: correct, twice, on the two next examples.
  driver.find_element(By.CSS_SELECTOR, '.verdict-button[data-verdict="correct"]').click()
  progress_is(3)
  wait.until(lambda d: current_id() == 'digit-0007')
  driver.find_element(By.CSS_SELECTOR, '.verdict-button[data-verdict="correct"]').click()
  progress_is(4)
  wait.until(lambda d: current_id() == 'digit-0008')
  # Back and forth with the keys: k and the left arrow go back, j forward.
  press('k')
  wait.until(lambda d: current_id() == 'digit-0007')
  press('j')
  wait.until(lambda d: current_id() == 'digit-0008')
  press('\ue012')  # the left arrow
  wait.until(lambda d: current_id() == 'digit-0007')
  # Filters: the eval split, then only those without a verdict.
  driver.find_element(By.CSS_SELECTOR, '#f-split option[value="eval"]').click()
  wait.until(lambda d: text('shown-count') == '3 of 6 shown')
  driver.find_element(By.ID, 'f-open').click()
  wait.until(lambda d: text('shown-count') == '2 of 6 shown')
  assert current_id() == 'digit-0008'
  listed = driver.find_element(By.ID, 'list').text
  assert 'digit-0008 (eval)' in listed and 'digit-0009 (eval)' in listed
  assert 'digit-0412' not in listed

  # The decision, with a comment.
  driver.find_element(By.ID, 'comment').send_keys('class 3 and 5 relabelled')
  driver.find_element(By.ID, 'approve').click()
  wait.until(lambda d: text('decision-message') == (
      f'review {review_id} approved by alice; the waiting gate picks it up at its next poll'))
  assert not driver.find_element(By.ID, 'approve').is_enabled()
  problems = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE'
              and 'Content Security Policy' in e['message']]
  assert not problems

  # On disk: the verdicts `review verdicts` lists, and the review's answer the gate reads.
  given = verdicts.VerdictStore(os.path.join(root, 'verdicts')).history(('alice', 'bob'))
  assert [(v.example_id, v.split, v.verdict, v.corrected_label, v.by) for v in given] == [
      ('digit-0412', 'train', 'wrong label', 3, 'alice'),
      ('digit-<0099>', 'train', 'wrong label', 5, 'alice'),
      (HOSTILE_ID, 'eval', 'correct', None, 'alice'),
      ('digit-0007', 'train', 'correct', None, 'alice')]
  assert {v.report_uri for v in given} == {report_uri}
  record = review_store.ReviewStore(os.path.join(root, 'reviews')).get(review_id)
  assert record.status == 'approved'
  assert [(a['by'], a['verdict'], a['comment']) for a in record.state['answers']] == [
      ('alice', 'approved', 'class 3 and 5 relabelled')]

  # SIGTERM stops the server cleanly.
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=30)
  assert proc.returncode == 0
  assert 'review workspace stopped' in out
  assert f'review {review_id} approved by alice' in out
