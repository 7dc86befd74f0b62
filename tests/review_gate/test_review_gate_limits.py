"""What the gate and `vog-audit review` do with data that is too long, hostile, or locked away.

Slack messages stay within Block Kit's limits, with ids escaped for mrkdwn; a lock held by
someone with read access to `.lock` delays the gate no longer than its own deadline and the
command line a few seconds; `review list` prints no control character from a record; and
`review approve`/`review list` on a folder they cannot use exit 2 with one line.
"""

import contextlib
import ctypes
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata

import pytest
from click.testing import CliRunner

import review_gate_support as support

from components.review_gate import decision as decision_lib
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import slack_backend
from components.review_gate import slack_message
import repo_paths

ALICE = 'U0ALICE'
REPO = repo_paths.REPO
HOSTILE_ID = 'digit`*bold*`<!channel>&' + 'x' * 4000


def _cli(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  return CliRunner().invoke(main, list(args))


def _row(rank, example_id, **changes):
  return dict(support.FLAGGED[0], rank=rank, example_id=example_id, **changes)


def test_a_4000_character_example_id_still_posts_within_slacks_limits(tmp_path, slack):
  """Slack refuses blocks over its limits (the stand-in does too); the review goes on."""
  slack.auto_replies = [(ALICE, 'approve')]
  rows = [_row(i, HOSTILE_ID if i == 1 else f'{i}' * 4000, split='train\n' * 500)
          for i in range(1, 6)]
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url), with_montage=False, flagged=rows)
  assert blessing.get_string_custom_property('review_decision') == 'approved'
  [post] = slack.top_level_posts()
  blocks = post['params']['blocks']
  assert slack_message.check_limits(post['params']['text'], blocks) == []
  [top] = [b['text']['text'] for b in blocks if 'Top flagged' in str(b)]
  assert len(top) <= slack_message.SECTION_TEXT_LIMIT
  assert top.startswith('*Top flagged examples* (ranked by vog)\n1. `digit\u02cb*bold*\u02cb'
                        '&lt;!channel&gt;&amp;xxx')
  assert '…` (train train train' in top  # the id is cut, the split is on one line


def test_ids_are_escaped_for_mrkdwn_and_every_field_is_bounded():
  assert slack_message.code('a`b*c*<!here>&\nz') == '`a\u02cbb*c*&lt;!here&gt;&amp; z`'
  assert slack_message.escape('<@U0ALICE> &', 200) == '&lt;@U0ALICE&gt; &amp;'
  huge = 'y' * 10000
  summary = review_summary.ReviewSummary(
      pipeline=huge, run_id=huge, model_uri=huge, model_id=11, report_uri=huge,
      report_url='https://reports.example.com/' + huge + '|<!channel>',
      counts=dict(support.SUMMARY['counts']), splits={},
      worst_classes=[{'class': huge, 'split': huge, 'flagged': 1, 'count': 2,
                      'flagged_share': 0.5}] * 100,
      top_flagged=[_row(i, huge, label=huge, predicted_class=huge) for i in range(200)],
      drift=support.unavailable_drift(huge), ranked_by='vog')
  text, blocks = slack_message.build(summary, '3fa9c21b-1', [ALICE] * 200, 60.0, quorum=1)
  assert slack_message.check_limits(text, blocks) == []
  rendered = json.dumps(blocks, ensure_ascii=False)
  assert '<!channel>' not in rendered and '|<!' not in rendered
  assert re.search(r'…and 1[0-9]{2} more in the report', rendered)


def test_limits_are_checked_block_by_block():
  """What the limits guard against: five 4,000-character ids made a 20,000-character section."""
  text = '\n'.join(f'{i}. `{HOSTILE_ID}` (train)' for i in range(1, 6))
  assert slack_message.check_limits('x' * 3001, [
      {'type': 'header', 'text': {'type': 'plain_text', 'text': 'h' * 151}},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': text}},
      {'type': 'section', 'fields': [{'type': 'mrkdwn', 'text': 'f' * 2001}] * 11},
  ]) == ['the text has 3001 characters, more than 3000',
         'block 1: header text has 151 characters, more than 150',
         f'block 2: section text has {len(text)} characters, more than 3000',
         'block 3: 11 fields, more than 10'] + [
             'block 3: section field has 2001 characters, more than 2000'] * 11


@contextlib.contextmanager
def _lock_held(reviews, release_after):
  """Holds `.lock` through a read-only descriptor, as a reviewer with read access can, until
  the block ends or `release_after` seconds have passed (so that a gate that waits for the
  lock forever still ends)."""
  os.makedirs(reviews, exist_ok=True)
  path = os.path.join(reviews, '.lock')
  os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o440))
  os.chmod(path, 0o440)
  fd = os.open(path, os.O_RDONLY)
  fcntl.flock(fd, fcntl.LOCK_EX)
  guard = threading.Lock()
  held = [True]

  def release():
    with guard:
      if held[0]:
        held[0] = False
        os.close(fd)

  timer = threading.Timer(release_after, release)
  timer.start()
  try:
    yield
  finally:
    timer.cancel()
    release()


def test_a_held_lock_delays_the_gate_no_longer_than_its_deadline(tmp_path):
  from components.review_gate import executor  # pylint: disable=g-import-not-at-top,unused-import
  with _lock_held(str(tmp_path / 'reviews'), release_after=15.0):
    started = time.monotonic()
    blessing = support.run_gate(str(tmp_path), support.gate_properties(
        backend='local', approvers=['alice'], slack_channel=None, timeout_seconds=3.0),
                                with_montage=False)
    elapsed = time.monotonic() - started
  assert elapsed < 3.0 + review_store.LOCK_GRACE_SECONDS + 1.0
  assert blessing.get_int_custom_property('blessed') == 0
  assert blessing.get_string_custom_property('review_decision') == 'error'
  reason = blessing.get_string_custom_property('review_reason')
  assert reason.startswith(f'cannot open the review in {tmp_path}/reviews: another process held '
                           f'the lock {tmp_path}/reviews/.lock for ')


def test_a_held_lock_ends_review_approve_with_one_line(tmp_path, monkeypatch):
  store = review_store.ReviewStore(str(tmp_path / 'reviews'))
  record, _ = store.open_review(support.local_record('c' * 64))
  monkeypatch.setattr(review_store, 'LOCK_WAIT_SECONDS', 0.5)
  with _lock_held(str(tmp_path / 'reviews'), release_after=8.0):
    started = time.monotonic()
    result = _cli('review', 'approve', record.review_id, '--by', 'alice',
                  '--pipeline-root', str(tmp_path))
    elapsed = time.monotonic() - started
  assert elapsed < 3
  assert result.exit_code == 2
  assert result.output.startswith(f'error: another process held the lock {tmp_path}/reviews/.lock')
  assert result.output.count('\n') == 1
  assert store.get(record.review_id).status == 'pending'


def _printable(text):
  return all(ch == '\n' or unicodedata.category(ch) not in ('Cc', 'Cf') for ch in text)


def test_review_list_prints_no_control_character_from_a_record(tmp_path):
  reviews = tmp_path / 'reviews'
  store = review_store.ReviewStore(str(reviews))
  record, _ = store.open_review(support.local_record(
      'e' * 64, model_uri='/m\x1b]0;owned\x07\x1b[2J', pipeline='digits\u202eevil\r',
      headline={'counts': {'flagged': 1}, 'report_url': '\x1b[1A\x1b[Kapproved by alice',
                'drift': 'ok\u2028line'}))
  closed = decision_lib.Decision(decision='rejected', backend='local', reason='x',
                                 reviewer='alice\x1b[31m', comment='fine\x08\x08\x08')
  store.update(record.review_id, lambda r: r.replace(closed=True, decision=closed))
  (reviews / '\x1b[31mred.json').write_text('{}')
  result = _cli('review', 'list', '--all', '--pipeline-root', str(tmp_path))
  assert result.exit_code == 0, result.output
  assert _printable(result.output), repr(result.output)
  assert '\\x1b]0;owned\\x07\\x1b[2J' in result.output
  assert 'digits\\u202eevil\\x0d' in result.output
  assert 'rejected by alice\\x1b[31m at ' in result.output
  assert f'warning: skipped {reviews}/\\x1b[31mred.json: its name is not a review ID' in (
      result.output)


def _drop_file_permission_override():
  """In the child before exec: take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the
  capability bounding set, so that root, too, is held to the folder's mode bits."""
  libc = ctypes.CDLL(None, use_errno=True)
  for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
      raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')


def _without_permission_override(args):
  """Runs `vog-audit ARGS` held to file permissions: in this process for a normal user; for
  root, in a child without the capabilities that let root ignore them. (exit code, output)"""
  if os.geteuid() != 0:
    result = _cli(*args)
    return result.exit_code, result.output
  try:
    done = subprocess.run(
        [sys.executable, '-c', 'from pipeline.cli import main; main()', *args], cwd=REPO,
        preexec_fn=_drop_file_permission_override, capture_output=True, text=True, timeout=60)
  except subprocess.SubprocessError as e:
    pytest.skip(f'cannot run a child held to file permissions here: {e}')
  return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize('command, folder_mode, message', [
    ('approve', 0o555, 'error: cannot write review {rid} in {reviews} (Permission denied); the '
                       'gate and everyone who answers local reviews need read and write access '
                       'to the reviews folder\n'),
    ('list', 0o311, 'error: cannot list the reviews folder {reviews} (Permission denied); the '
                    'gate and everyone who answers local reviews need read and write access to '
                    'the reviews folder\n'),
])
def test_review_commands_on_a_folder_they_cannot_use_exit_2_with_one_line(
    tmp_path, command, folder_mode, message):
  reviews = str(tmp_path / 'reviews')
  store = review_store.ReviewStore(reviews)
  record, _ = store.open_review(support.local_record('a' * 64, approvers=('alice',)))
  for name in os.listdir(reviews):
    os.chmod(os.path.join(reviews, name), 0o644)
  os.chmod(reviews, folder_mode)
  args = ['review', command] + ([record.review_id, '--by', 'alice'] if command == 'approve'
                                 else []) + ['--reviews-dir', reviews]
  try:
    code, output = _without_permission_override(args)
  finally:
    os.chmod(reviews, 0o755)
  assert (code, output) == (2, message.format(rid=record.review_id, reviews=reviews))
  assert store.get(record.review_id).status == 'pending'


def test_slack_metadata_names_the_review_and_its_inputs():
  assert slack_backend.review_metadata('3fa9c21b-1', 'f' * 64) == {
      'event_type': 'vog_audit_review',
      'event_payload': {'review_id': '3fa9c21b-1', 'fingerprint': 'f' * 64}}
