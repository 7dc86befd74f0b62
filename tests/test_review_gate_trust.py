"""A decision read back from the reviews folder counts only when the gate can verify it.

Anyone who can write `<pipeline_root>/reviews/` can write a review record. These tests write
records the way such a person would and check that the gate does not bless on them: a Slack
decision is always read again from the thread, and a local one counts only when it was given
for the gate's backend by one of the gate's approvers.
"""

import json
import os
import secrets

import pytest

from slack_server import FakeSlack
import test_review_gate_support as support

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'


def _records(root):
  folder = os.path.join(str(root), 'reviews')
  paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith('.json')]
  records = []
  for path in paths:
    with open(path) as f:
      records.append((path, json.load(f)))
  return records


def _rewrite(path, record, **changes):
  record = dict(record, **changes)
  with open(path, 'w') as f:
    json.dump(record, f)
  return record


def _answered(verdict, backend, reviewer):
  return {'decision': verdict, 'backend': backend, 'reviewer': reviewer, 'comment': 'fine',
          'reason': f'{verdict} by {reviewer}', 'reviewed_at': '2025-01-01T00:00:00Z',
          'slack_channel': '', 'slack_thread_ts': ''}


def _review(blessing):
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_reason', 'review_id')}


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
  assert any(f'Ignoring the decision stored in review {record["review_id"]}' in r.getMessage()
             and 'read from the Slack thread' in r.getMessage() for r in logs.records)


@pytest.mark.parametrize('reviewer, decision_backend, record_changes, why', [
    ('mallory', 'local', {}, "'mallory' is not one of the gate's approvers"),
    ('mallory', 'local', {'approvers': ['alice', 'bob', 'mallory']},
     "'mallory' is not one of the gate's approvers"),
    ('alice', 'slack', {}, 'the decision was given for the slack backend'),
    ('alice', 'local', {'backend': 'slack'}, 'the record is a slack review'),
])
def test_local_gate_ignores_a_decision_it_cannot_verify(tmp_path, logs, reviewer,
                                                         decision_backend, record_changes, why):
  props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                  slack_channel=None, timeout_seconds=0.5)
  first = support.run_gate(str(tmp_path), props, with_montage=False)
  assert _review(first)['review_decision'] == 'timeout'
  [(path, record)] = _records(tmp_path)
  _rewrite(path, record, closed=False, status='approved',
           decision=_answered('approved', decision_backend, reviewer), **record_changes)

  blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)

  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  ignored = [r.getMessage() for r in logs.records
             if r.getMessage().startswith(f'Ignoring the decision stored in review '
                                          f'{record["review_id"]}')]
  assert ignored and why in ignored[0], ignored


def test_local_gate_still_takes_a_verified_answer(tmp_path):
  """The same path with an answer the gate can verify: approver, backend, status all agree."""
  props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                  slack_channel=None, timeout_seconds=0.5)
  support.run_gate(str(tmp_path), props, with_montage=False)
  [(path, record)] = _records(tmp_path)
  deadline = record.get('deadline_at')
  _rewrite(path, record, closed=False, status='approved',
           decision=_answered('approved', 'local', 'alice'),
           **({'deadline_at': deadline + 60} if deadline else {}))
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
    _rewrite(path, record, closed=False, slack_thread_ts=approved_thread,
             slack_channel_id='C0REVIEW')
    slack.auto_replies = []

    blessing = support.run_gate(str(tmp_path), props, with_montage=False, model_id=12,
                                execution_id=9)

  assert blessing.get_int_custom_property('blessed') == 0
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert (f'thread {approved_thread} in C0REVIEW is not the message of review '
          f'{record["review_id"]}') in review['review_reason']


def test_slack_gate_refuses_a_thread_started_by_another_app(tmp_path, monkeypatch):
  """The review id in a message posted by some other bot does not make it the gate's."""
  token = 'xoxb-' + secrets.token_hex(12)
  monkeypatch.setenv('SLACK_BOT_TOKEN', token)
  props = support.gate_properties(timeout_seconds=60.0)
  with FakeSlack(token) as slack:
    props['slack_api_url'] = slack.api_url
    monkeypatch.delenv('SLACK_BOT_TOKEN')
    first = support.run_gate(str(tmp_path), props, with_montage=False)
    monkeypatch.setenv('SLACK_BOT_TOKEN', token)
    review_id = _review(first)['review_id']
    fake = slack.post_as_bot('C0REVIEW', f'Model review `{review_id}`', bot_id='B0OTHER')
    slack.reply(fake, ALICE, 'approve')
    [(path, record)] = _records(tmp_path)
    _rewrite(path, record, closed=False, slack_thread_ts=fake, slack_channel_id='C0REVIEW')
    blessing = support.run_gate(str(tmp_path), props, with_montage=False, execution_id=8)
  assert blessing.get_int_custom_property('blessed') == 0
  assert 'is not the message of review' in _review(blessing)['review_reason']
