"""A review record is input: whoever can write the reviews folder cannot make the gate bless.

Anyone who can write `<pipeline_root>/reviews/` can write a review record. These tests edit
records the way such a person would and check that the gate does not bless on them: a Slack
decision, deadline and reaction time are always read from Slack (the review message's `ts` and
metadata, the thread, the reactions), a record with a field this version does not write is
refused, and a local answer counts only when given by one of the gate's own approvers.
"""

import json
import os
import secrets
import time

import pytest

import review_gate_support as support
from slack_server import FakeSlack

from components.review_gate import slack_backend

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'


def _records(root):
  folder = os.path.join(str(root), 'reviews')
  paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith('.json')]
  records = []
  for path in paths:
    with open(path) as f:
      records.append((path, json.load(f)))
  return records


def _rewrite(path, record, state=None, **changes):
  """Writes `record` back with `changes`, and `state` changes merged into its state."""
  record = dict(record, **changes)
  if state:
    record['state'] = dict(record['state'], **state)
  with open(path, 'w') as f:
    json.dump(record, f)
  return record


def _reopen(path, record, state=None, **changes):
  """What someone with write access does to resume a closed review: mark it pending again."""
  return _rewrite(path, record, state, closed=False, status='pending', decision=None, **changes)


def _answered(verdict, backend, reviewer):
  return {'decision': verdict, 'backend': backend, 'reviewer': reviewer, 'comment': 'fine',
          'reason': f'{verdict} by {reviewer}', 'reviewed_at': '2025-01-01T00:00:00Z',
          'slack_channel': '', 'slack_thread_ts': ''}


def _review(blessing):
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_reason', 'review_id')}


def _logged(logs, text):
  return [r.getMessage() for r in logs.records if text in r.getMessage()]


@pytest.mark.parametrize('reviewer', [EVE, ALICE])
def test_slack_gate_without_token_ignores_an_approval_written_to_the_reviews_folder(
    tmp_path, monkeypatch, logs, reviewer):
  """The record says approved (by an outsider, or even by an approver); Slack was never asked."""
  monkeypatch.delenv('SLACK_BOT_TOKEN', raising=False)
  props = support.gate_properties(slack_api_url='http://127.0.0.1:9/api/', timeout_seconds=60.0)
  first = support.run_gate(str(tmp_path), props, with_montage=False)
  assert _review(first)['review_decision'] == 'error'
  [(path, record)] = _records(tmp_path)
  _rewrite(path, record, closed=False, status='approved',
           decision=_answered('approved', 'slack', reviewer))

  blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)

  assert blessing.get_int_custom_property('blessed') == 0
  assert sorted(os.listdir(blessing.uri)) == ['NOT_BLESSED']
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert review['review_id'] == record['review_id']  # it resumed the record, and distrusted it
  assert 'environment variable SLACK_BOT_TOKEN is empty or not set' in review['review_reason']
  assert any(f'Ignoring the decision stored in review {record["review_id"]}' in line
             and 'read from the Slack thread' in line
             for line in _logged(logs, 'Ignoring the decision'))


def _local_answer(by, verdict='approved'):
  return {'by': by, 'verdict': verdict, 'comment': 'fine', 'answered_at': '2025-01-01T00:00:00Z'}


@pytest.mark.parametrize('record_changes', [{}, {'approvers': ['alice', 'bob', 'mallory']}])
def test_local_gate_ignores_an_answer_by_someone_not_among_its_approvers(
    tmp_path, logs, record_changes):
  props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                  slack_channel=None, timeout_seconds=0.5)
  first = support.run_gate(str(tmp_path), props, with_montage=False)
  assert _review(first)['review_decision'] == 'timeout'
  [(path, record)] = _records(tmp_path)
  _reopen(path, record, state={'answers': [_local_answer('mallory')],
                               'deadline_at': time.time() + 60}, **record_changes)

  blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)

  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  assert _review(blessing)['review_id'] == record['review_id']
  ignored = _logged(logs, f'Ignoring an answer stored in review {record["review_id"]}')
  assert ignored and "'mallory' is not one of the gate's approvers (alice, bob)" in ignored[0]


def test_local_gate_refuses_a_record_turned_into_another_backends(tmp_path, logs):
  props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                  slack_channel=None, timeout_seconds=0.5)
  support.run_gate(str(tmp_path), props, with_montage=False)
  [(path, record)] = _records(tmp_path)
  _reopen(path, record, backend='slack', state={'answers': [_local_answer('alice')]})
  blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)
  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_id'] != record['review_id']  # a new review, not that one
  assert any(os.path.basename(path) in line and 'has no state.slack_channel' in line
             for line in _logged(logs, 'skipped'))


def test_local_gate_still_takes_a_verified_answer(tmp_path):
  """The same path with an answer the gate can verify: one of its approvers, in time."""
  props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                  slack_channel=None, timeout_seconds=0.5)
  support.run_gate(str(tmp_path), props, with_montage=False)
  [(path, record)] = _records(tmp_path)
  _reopen(path, record, state={'answers': [_local_answer('alice')],
                               'deadline_at': time.time() + 60})
  blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)
  assert blessing.get_int_custom_property('blessed') == 1
  assert _review(blessing)['reviewer'] == 'alice'


def test_slack_gate_refuses_a_thread_that_is_not_its_own_review(tmp_path, monkeypatch):
  """A record pointed at another review's approved thread does not borrow that approval."""
  token = 'xoxb-' + secrets.token_hex(12)
  monkeypatch.setenv('SLACK_BOT_TOKEN', token)
  with FakeSlack(token) as slack:
    slack.auto_replies = [(ALICE, 'approve')]
    props = support.gate_properties(slack_api_url=slack.api_url, timeout_seconds=60.0)
    other = support.run_gate(str(tmp_path), props, with_montage=False, model_id=11)
    assert _review(other)['review_decision'] == 'approved'
    [approved_thread] = slack.threads()

    # Another model's review: opened while the token is missing, then pointed at that thread.
    monkeypatch.delenv('SLACK_BOT_TOKEN')
    first = support.run_gate(str(tmp_path), props, with_montage=False, model_id=12,
                             execution_id=8)
    assert _review(first)['review_decision'] == 'error'
    monkeypatch.setenv('SLACK_BOT_TOKEN', token)
    [(path, record)] = [(p, r) for p, r in _records(tmp_path)
                        if r['review_id'] == _review(first)['review_id']]
    _reopen(path, record, state={'slack_thread_ts': approved_thread,
                                 'slack_channel_id': 'C0REVIEW'})
    slack.auto_replies = []

    blessing = support.run_gate(str(tmp_path), props, with_montage=False, model_id=12,
                                execution_id=9)

  assert blessing.get_int_custom_property('blessed') == 0
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert (f'thread {approved_thread} in C0REVIEW is not the message of review '
          f'{record["review_id"]}') in review['review_reason']


def test_slack_gate_refuses_a_thread_started_by_another_app(tmp_path, monkeypatch):
  """Neither the review id in the text nor a copy of the gate's metadata, posted by some other
  bot, makes a thread the gate's."""
  token = 'xoxb-' + secrets.token_hex(12)
  monkeypatch.setenv('SLACK_BOT_TOKEN', token)
  props = support.gate_properties(timeout_seconds=60.0)
  with FakeSlack(token) as slack:
    props['slack_api_url'] = slack.api_url
    monkeypatch.delenv('SLACK_BOT_TOKEN')
    first = support.run_gate(str(tmp_path), props, with_montage=False)
    monkeypatch.setenv('SLACK_BOT_TOKEN', token)
    review_id = _review(first)['review_id']
    [(path, record)] = _records(tmp_path)
    fake = slack.post_as_bot('C0REVIEW', f'Model review `{review_id}`', bot_id='B0OTHER',
                             metadata=slack_backend.review_metadata(review_id,
                                                                    record['fingerprint']))
    slack.reply(fake, ALICE, 'approve')
    _reopen(path, record, state={'slack_thread_ts': fake, 'slack_channel_id': 'C0REVIEW'})
    blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)
  assert blessing.get_int_custom_property('blessed') == 0
  assert ('is not the message of review' in _review(blessing)['review_reason']
          and 'it was not posted by this Slack app' in _review(blessing)['review_reason'])


def test_an_example_id_equal_to_the_review_id_does_not_make_a_thread_the_reviews(
    tmp_path, monkeypatch):
  """Review X's message lists an example whose id (data) is review Y's id; Y's record is then
  pointed at X's approved thread. The thread is identified by its metadata, not by text."""
  token = 'xoxb-' + secrets.token_hex(12)
  with FakeSlack(token) as slack:
    props = support.gate_properties(slack_api_url=slack.api_url, timeout_seconds=30.0)
    monkeypatch.delenv('SLACK_BOT_TOKEN', raising=False)
    first_y = support.run_gate(str(tmp_path / 'y'), props, with_montage=False, model_id=12)
    review_y = _review(first_y)['review_id']
    monkeypatch.setenv('SLACK_BOT_TOKEN', token)
    slack.auto_replies = [(ALICE, 'approve')]
    rows = [dict(support.FLAGGED[0], example_id=review_y)]
    x = support.run_gate(str(tmp_path / 'x'), props, with_montage=False, model_id=11,
                         flagged=rows)
    assert _review(x)['review_decision'] == 'approved'
    [thread_x] = slack.threads()
    assert f'`{review_y}`' in json.dumps(slack.messages[thread_x]['blocks'])  # the id is there
    slack.auto_replies = []
    [(path, record)] = _records(tmp_path / 'y')
    _reopen(path, record, state={'slack_thread_ts': thread_x, 'slack_channel_id': 'C0REVIEW'})

    blessing = support.run_gate(str(tmp_path / 'y'), props, with_montage=False, model_id=12,
                                execution_id=8)

  assert blessing.get_int_custom_property('blessed') == 0
  reason = _review(blessing)['review_reason']
  assert f'thread {thread_x} in C0REVIEW is not the message of review {review_y}' in reason
  assert 'its metadata names review' in reason


def _timed_out_review(root, slack, timeout):
  """Runs a Slack review to its timeout; returns (record path, record JSON, thread ts)."""
  blessing = support.run_gate(str(root), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=timeout), with_montage=False)
  assert _review(blessing)['review_decision'] == 'timeout'
  [(path, record)] = _records(root)
  return path, record, record['state']['slack_thread_ts']


@pytest.mark.parametrize('answer, edit, logged', [
    # Old records kept reactions' first-seen times: setting one early dated a late reaction.
    ('reaction', lambda ts: {'reactions_seen': {f'white_check_mark/{ALICE}': float(ts) + 0.1}},
     "has an unknown field 'reactions_seen'"),
    ('reaction', lambda ts: {'state': {'reactions_seen': {}}},
     "has an unknown field 'state.reactions_seen'"),
    # Without any edit, a reaction first seen after the deadline has no time and does not count.
    ('reaction', lambda ts: {}, 'first seen after the deadline'),
    # Old records kept the deadline: moving it let a late answer count.
    ('reply', lambda ts: {'deadline_at': time.time() + 10 ** 6},
     "has an unknown field 'deadline_at'"),
    # The record's timeout is informational: the deadline is the message's ts plus the gate's.
    ('reply', lambda ts: {'timeout_seconds': 10.0 ** 6}, 'it came after the deadline'),
], ids=['reactions_seen', 'state.reactions_seen', 'late-reaction', 'deadline_at',
        'timeout_seconds'])
def test_an_approval_after_the_deadline_never_counts_whatever_the_record_says(
    tmp_path, slack, logs, answer, edit, logged):
  timeout = 1.0
  path, record, thread_ts = _timed_out_review(tmp_path, slack, timeout)
  changes = edit(thread_ts)
  state = changes.pop('state', None)
  _reopen(path, record, state, **changes)
  while time.time() < float(thread_ts) + timeout + 0.2:
    time.sleep(0.05)
  if answer == 'reaction':
    slack.react(thread_ts, 'white_check_mark', ALICE)
  else:
    slack.reply(thread_ts, ALICE, 'approve')

  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=timeout), with_montage=False, execution_id=8)

  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  assert _logged(logs, logged), [r.getMessage() for r in logs.records][-10:]


def test_a_resumed_review_takes_its_deadline_from_the_slack_message(tmp_path, slack, logs):
  """An answer in time counts after a resume past the deadline; the record's clock is not
  asked, and a decision the record holds is not believed."""
  timeout = 1.0
  path, record, thread_ts = _timed_out_review(tmp_path, slack, timeout)
  slack.reply(thread_ts, ALICE, 'approve', ts=f'{float(thread_ts) + 0.5:.6f}')
  _rewrite(path, record, closed=False, timeout_seconds=0.001)
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=timeout), with_montage=False, execution_id=8)
  assert (_review(blessing)['review_decision'], _review(blessing)['reviewer']) == (
      'approved', ALICE)
  assert _logged(logs, f'Ignoring the decision stored in review {record["review_id"]}')
