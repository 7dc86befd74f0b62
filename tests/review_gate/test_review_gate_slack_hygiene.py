"""Slack settings checked before anything is sent, complete reactions, a deadline that holds.

Approver ids must look like Slack user ids, the API URL must be https (loopback excepted, for
tests and tunnels), reactions are read with `full=True`, and the deadline is the review
message's own Slack time plus the timeout: a retried execution keeps it, and an approval after
it does not count.
"""

import logging as py_logging
import time

import pytest

import review_gate_support as support
from slack_fixtures import start_gate_and_kill_it_waiting

from components.review_gate import review_store
from components.review_gate import slack_backend

ALICE, BOB = 'U0ALICE', 'U0BOB'


def _gate(**kwargs):
  from tfx.types import channel_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import HumanReviewGate  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top
  model = channel_utils.as_channel([standard_artifacts.Model()])
  report = channel_utils.as_channel([DifficultyReport()])
  kwargs.setdefault('backend', 'slack')
  kwargs.setdefault('slack_channel', 'C0REVIEW')
  return HumanReviewGate(model=model, difficulty_report=report, **kwargs)


def _review(blessing):
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_reason', 'slack_thread_ts')}


@pytest.mark.parametrize('approvers, bad', [
    (['u0alice'], 'u0alice'),
    ([ALICE, 'alice@example.com'], 'alice@example.com'),
    (['<@U0ALICE>'], '<@U0ALICE>'),
    (['C0REVIEW'], 'C0REVIEW'),
])
def test_approvers_must_be_slack_user_ids(approvers, bad):
  with pytest.raises(ValueError) as raised:
    _gate(approvers=approvers)
  assert str(raised.value) == (
      f'approver {bad!r} is not a Slack user ID: backend="slack" needs IDs like U0123ABCD '
      '(a U or W and capital letters and digits; in Slack, open the profile, then ... > Copy '
      'member ID)')


def test_slack_user_ids_are_accepted_and_local_names_are_free():
  assert _gate(approvers=[ALICE, 'W012ABCDEF']).exec_properties['approvers'] == (
      '["U0ALICE", "W012ABCDEF"]')
  _gate(backend='local', slack_channel=None, approvers=['alice', 'Bob Smith'])


@pytest.mark.parametrize('url', [
    'http://example.com/api/', 'http://10.0.0.8:8080/api/', 'ftp://slack.com/api/',
    'slack.com/api/', 'http://localhost.example.com/api/', 'https:///api/',
])
def test_slack_api_url_must_be_https_except_loopback(url):
  with pytest.raises(ValueError) as raised:
    _gate(approvers=[ALICE], slack_api_url=url)
  assert str(raised.value).startswith(f'slack_api_url {url!r} ')
  assert 'https://' in str(raised.value)


@pytest.mark.parametrize('url', [
    'https://slack.com/api/', 'https://slack.example.com:8443/api', 'http://127.0.0.1:8080/api/',
    'http://127.0.0.2/api/', 'http://[::1]:9000/api/', 'http://localhost:8080/api/',
])
def test_https_and_loopback_urls_are_accepted(url):
  gate = _gate(approvers=[ALICE], slack_api_url=url)
  assert gate.exec_properties['slack_api_url'] == url
  assert slack_backend.check_api_url(url) == (url if url.endswith('/') else url + '/')


def test_executor_refuses_a_plain_http_url_to_another_host_before_sending_the_token(
    tmp_path, token):
  started = time.monotonic()
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url='http://example.com/api/', timeout_seconds=30.0), with_montage=False)
  assert time.monotonic() - started < 10
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  assert review['review_decision'] == 'error'
  assert "slack_api_url 'http://example.com/api/' " in review['review_reason']
  assert 'https://' in review['review_reason']


def test_executor_refuses_approvers_that_are_not_user_ids(tmp_path, slack):
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, approvers=['u0alice', ALICE]), with_montage=False)
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert "approver 'u0alice' is not a Slack user ID" in review['review_reason']
  assert not slack.calls


def test_reactions_are_read_in_full(tmp_path, slack):
  """Slack shortens a reaction's user list unless asked for all of it; Alice reacted third."""
  slack.auto_reactions = [('white_check_mark', 'U0EVE'), ('white_check_mark', 'U0MALLORY'),
                          ('white_check_mark', ALICE)]
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=2.0), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', ALICE)
  assert all(c['params'].get('full') in ('1', 'true')
             for c in slack.calls_to('reactions.get'))


def _start_and_kill(tmp_path, slack, timeout):
  """Runs the gate in a process and kills it once it waits, like a preempted worker; returns
  the review message's ts."""
  start_gate_and_kill_it_waiting(str(tmp_path), slack, timeout, with_montage=False)
  [pending] = review_store.ReviewStore(str(tmp_path / 'reviews')).list()
  [thread_ts] = slack.threads()
  assert pending.state['slack_thread_ts'] == thread_ts
  return thread_ts


def test_deadline_is_kept_when_a_retried_execution_resumes(tmp_path, slack, caplog):
  caplog.set_level(py_logging.INFO)
  thread_ts = _start_and_kill(tmp_path, slack, timeout=4.0)
  # The answer comes after the deadline: the review message's Slack time plus the timeout.
  while time.time() < float(thread_ts) + 4.0 + 0.5:
    time.sleep(0.1)
  slack.reply(thread_ts, ALICE, 'approve')

  from components.review_gate import executor  # pylint: disable=g-import-not-at-top,unused-import
  started = time.monotonic()  # imports done: what is timed is the review
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=4.0), with_montage=False)
  assert time.monotonic() - started < 4  # not another 4 seconds
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  assert review['review_decision'] == 'timeout'
  assert review['slack_thread_ts'] == thread_ts
  assert 'no decision from the approvers within 4s' in review['review_reason']
  assert any('it came after the deadline' in r.getMessage() for r in caplog.records)


def test_an_answer_before_the_deadline_counts_after_a_resume_past_it(tmp_path, slack):
  """Alice answered in time; the gate was down and comes back after the deadline."""
  thread_ts = _start_and_kill(tmp_path, slack, timeout=3.0)
  slack.reply(thread_ts, ALICE, 'approve')
  while time.time() < float(thread_ts) + 3.0 + 0.5:
    time.sleep(0.1)
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=3.0), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', ALICE)


def test_token_stays_out_of_debug_logs(tmp_path, slack, token, caplog, capfd):
  """With every logger at DEBUG (slack_sdk's request lines included), the token is not printed."""
  caplog.set_level(py_logging.DEBUG)
  py_logging.getLogger('slack_sdk').setLevel(py_logging.DEBUG)
  slack.fail('conversations.replies', status=503)
  slack.fail('reactions.get', status=429, headers={'Retry-After': '0'})
  slack.auto_replies = [(ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url, timeout_seconds=20.0))
  assert blessing.get_int_custom_property('blessed') == 1
  out, err = capfd.readouterr()
  assert any('Sending a request' in r.getMessage() for r in caplog.records)
  assert token not in out + err + caplog.text
