"""HumanReviewGate against a Slack Web API stand-in on 127.0.0.1, the local store and the policy.

Each test runs the real executor; Slack is `slack_server.FakeSlack`, a real HTTP server.
"""

import dataclasses
import os
import time

import pytest

import review_gate_support as support
from slack_fixtures import start_gate_and_kill_it_waiting

from components.review_gate import auto_policy
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import slack_grammar
from components.vog.report import drift_model

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'
DRIFT_LINE = ('Since the last shipped model: flagged 11.1% → 13.0% (+1.9 pts); class 3 hard share '
              '+12.0 pts (eval); 40 newly flagged, 25 still flagged (up to 4 audits in a row)')


def _props(slack, **overrides):
  return support.gate_properties(slack_api_url=slack.api_url, **overrides)


def _review(blessing):
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_comment', 'review_backend',
                       'review_reason', 'slack_channel', 'slack_thread_ts', 'review_id')}


def _blessed_file(blessing):
  return sorted(os.listdir(blessing.uri))


def test_approval_in_thread_blesses_and_message_carries_the_audit(tmp_path, slack, logs):
  slack.auto_replies = [(ALICE, 'approve')]
  evaluation = support.write_evaluation(str(tmp_path / 'eval'), overall=0.931, hard=0.612)
  blessing = support.run_gate(str(tmp_path), _props(slack), evaluation_uri=evaluation)

  assert blessing.get_int_custom_property('blessed') == 1
  assert _blessed_file(blessing) == ['BLESSED']
  review = _review(blessing)
  assert review['review_decision'] == 'approved'
  assert review['reviewer'] == ALICE
  assert review['review_comment'] == ''
  assert review['review_backend'] == 'slack'
  posts = slack.top_level_posts()
  assert len(posts) == 1
  assert [review['slack_thread_ts']] == slack.threads()
  assert review['slack_channel'] == 'C0REVIEW'
  assert blessing.get_string_custom_property('current_model') == str(tmp_path / 'Trainer/model/3')
  assert blessing.get_int_custom_property('current_model_id') == 11
  blocks = str(posts[0]['params']['blocks'])
  assert '1797 seen, 1790 scored, 7 quarantined, 200 flagged' in blocks
  assert 'overall 93.1%, hard slice 61.2%' in blocks
  # Worst class first: class 8 has the largest flagged share.
  assert blocks.index('class 8 (train): 31/100') < blocks.index('class 3 (train): 14/120')
  assert '`digit-0412` (train) label 8, predicted 1' in blocks
  assert 'digit-&lt;0099&gt;' in blocks  # data is escaped, not read as Slack markup
  assert 'https://reports.example.com/digits_audit/12/report.html' in blocks
  # The report has no drift: nothing had shipped before, and the message says so.
  assert 'First audit with no shipped model to compare with' in blocks
  assert 'First audit with no shipped model to compare with.' in posts[0]['params']['text']
  # The montage went into the thread through the three-step upload.
  complete = slack.calls_to('files.completeUploadExternal')
  assert len(complete) == 1 and complete[0]['params']['thread_ts'] == review['slack_thread_ts']
  assert list(slack.uploads.values())[0].startswith(b'\x89PNG')
  # The thread is told what happened.
  confirmations = [c for c in slack.calls_to('chat.postMessage') if c['params'].get('thread_ts')]
  assert 'Approved by <@U0ALICE>' in confirmations[0]['params']['text']


def test_rejection_with_comment_does_not_bless(tmp_path, slack):
  slack.auto_replies = [(BOB, 'Reject: class 8 labels look swapped with 1')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False,
                              drift=support.example_drift())
  # The reviewer saw what changed since the last shipped model, in the message and its
  # notification text.
  [post] = slack.top_level_posts()
  assert {'type': 'section', 'text': {'type': 'mrkdwn', 'text': DRIFT_LINE}} in \
      post['params']['blocks']
  assert DRIFT_LINE + '. Reply "approve"' in post['params']['text']

  assert blessing.get_int_custom_property('blessed') == 0
  assert _blessed_file(blessing) == ['NOT_BLESSED']
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer'], review['review_comment']) == (
      'rejected', BOB, 'class 8 labels look swapped with 1')
  assert not slack.calls_to('files.getUploadURLExternal')  # no montage, no upload


def test_non_approver_is_ignored_and_the_review_times_out(tmp_path, slack, logs):
  slack.auto_replies = [(EVE, 'approve'), (EVE, 'reject: not my call')]
  slack.auto_reactions = [('white_check_mark', EVE)]
  started = time.monotonic()
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.5))
  elapsed = time.monotonic() - started

  assert blessing.get_int_custom_property('blessed') == 0
  review = _review(blessing)
  assert review['review_decision'] == 'timeout'
  assert review['reviewer'] == ''
  assert 'no decision from the approvers within 1.5s' in review['review_reason']
  assert 1.5 <= elapsed < 8
  ignored = [r.getMessage() for r in logs.records if 'not a listed approver' in r.getMessage()]
  # One line per ignored answer, not one per poll.
  assert len(ignored) == 3 and all(EVE in line for line in ignored)
  assert len(slack.calls_to('conversations.replies')) >= 3


def test_approver_reaction_decides_and_rejection_outweighs_approval(tmp_path, slack):
  slack.auto_reactions = [('white_check_mark', ALICE), ('x', BOB)]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('rejected', BOB)
  assert 'reaction :x:' in review['review_reason']


def test_late_answer_while_polling(tmp_path, slack):
  import threading

  def answer_later():
    deadline = time.monotonic() + 20
    while not slack.threads() and time.monotonic() < deadline:
      time.sleep(0.05)
    time.sleep(0.6)
    slack.react(slack.threads()[0], '+1', BOB)

  thread = threading.Thread(target=answer_later)
  thread.start()
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  thread.join()
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', BOB)
  assert len(slack.calls_to('reactions.get')) >= 2  # it kept looking until the answer


def test_decision_on_the_second_page_of_a_long_thread(tmp_path, slack):
  slack.auto_replies = [(EVE, f'looking at example {i}') for i in range(230)]
  slack.auto_replies.append((BOB, 'reject: see the discussion above'))
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  assert _review(blessing)['review_decision'] == 'rejected'
  pages = slack.calls_to('conversations.replies')
  assert [c['params'].get('cursor') for c in pages[:2]] == [None, '200']


def test_rate_limit_then_success_honours_retry_after(tmp_path, slack, logs):
  slack.fail('chat.postMessage', status=429, error='ratelimited', headers={'Retry-After': '1'})
  slack.auto_replies = [(ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)

  attempts = [c for c in slack.calls_to('chat.postMessage') if not c['params'].get('thread_ts')]
  assert [c['status'] for c in attempts] == [429, 200]
  assert attempts[1]['time'] - attempts[0]['time'] >= 1.0
  assert len(slack.top_level_posts()) == 1
  assert blessing.get_int_custom_property('blessed') == 1
  assert any('HTTP 429' in r.getMessage() and 'retrying in 1.0s' in r.getMessage()
             for r in logs.records)


def test_server_errors_are_retried_with_backoff(tmp_path, slack):
  slack.fail('conversations.replies', status=503, times=2)
  slack.auto_replies = [(ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=10.0),
                              with_montage=False)
  replies = slack.calls_to('conversations.replies')
  assert [c['status'] for c in replies[:3]] == [503, 503, 200]
  # Backoff doubles: 1s after the first failure, 2s after the second.
  assert replies[1]['time'] - replies[0]['time'] >= 1.0
  assert replies[2]['time'] - replies[1]['time'] >= 2.0
  assert blessing.get_int_custom_property('blessed') == 1


@pytest.mark.parametrize('error', ['invalid_auth', 'channel_not_found', 'not_in_channel'])
def test_permanent_slack_error_fails_closed_without_waiting(tmp_path, slack, error):
  slack.fail('chat.postMessage', error=error)
  started = time.monotonic()
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=30.0))
  assert time.monotonic() - started < 10  # not retried, not waited out
  assert blessing.get_int_custom_property('blessed') == 0
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert f'Slack refused chat.postMessage with {error}' in review['review_reason']
  assert len(slack.calls_to('chat.postMessage')) == 1
  assert not slack.calls_to('conversations.replies')


def test_wrong_token_is_invalid_auth(tmp_path, slack, monkeypatch):
  monkeypatch.setenv('SLACK_BOT_TOKEN', 'xoxb-not-the-right-one')
  blessing = support.run_gate(str(tmp_path), _props(slack))
  assert _review(blessing)['review_decision'] == 'error'
  assert 'invalid_auth' in _review(blessing)['review_reason']
  assert 'xoxb-not-the-right-one' not in str(blessing.mlmd_artifact)


def test_missing_token_names_the_variable(tmp_path, slack, monkeypatch):
  monkeypatch.delenv('SLACK_BOT_TOKEN')
  blessing = support.run_gate(str(tmp_path), _props(slack))
  review = _review(blessing)
  assert review['review_decision'] == 'error'
  assert 'environment variable SLACK_BOT_TOKEN is empty or not set' in review['review_reason']
  assert not slack.calls


def test_server_down_at_posting_fails_closed_within_the_timeout(tmp_path, token):
  import socket
  with socket.socket() as s:  # a port with nobody listening
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  started = time.monotonic()
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=f'http://127.0.0.1:{port}/api/', timeout_seconds=2.5))
  elapsed = time.monotonic() - started
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  assert review['review_decision'] == 'error'
  assert f'chat.postMessage: cannot reach http://127.0.0.1:{port}/api/' in review['review_reason']
  assert 'gave up after 2 attempt(s)' in review['review_reason']  # waits 1s, then 2s > left
  assert elapsed < 2.5 + 5


def test_evaluator_not_blessed_asks_nobody(tmp_path, slack):
  blessing = support.run_gate(str(tmp_path), _props(slack), upstream_blessed=0)
  assert slack.calls == []
  assert blessing.get_int_custom_property('blessed') == 0
  assert _blessed_file(blessing) == ['NOT_BLESSED']
  review = _review(blessing)
  assert review['review_decision'] == 'not_blessed_upstream'
  assert 'the Evaluator did not bless the model' in review['review_reason']
  assert not os.path.exists(tmp_path / 'reviews')


def test_evaluator_blessed_goes_on_to_ask(tmp_path, slack):
  slack.auto_replies = [(ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack), upstream_blessed=1,
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 1
  assert len(slack.top_level_posts()) == 1


def test_retried_execution_resumes_the_same_thread(tmp_path, slack, token):
  """The first execution dies while waiting; the retry answers in the same thread."""
  start_gate_and_kill_it_waiting(str(tmp_path), slack)
  assert len(slack.top_level_posts()) == 1
  [thread_ts] = slack.threads()
  pending = review_store.ReviewStore(str(tmp_path / 'reviews')).list()
  assert [(r.status, r.state['slack_thread_ts']) for r in pending] == [('pending', thread_ts)]

  slack.reply(thread_ts, ALICE, 'approve')
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=10.0))
  assert len(slack.top_level_posts()) == 1  # resumed, not posted again
  assert len(slack.calls_to('files.completeUploadExternal')) == 1  # montage not sent twice
  review = _review(blessing)
  assert (review['review_decision'], review['slack_thread_ts'], review['review_id']) == (
      'approved', thread_ts, pending[0].review_id)
  # The review is closed; running the gate again asks again in a new thread.
  slack.auto_replies = [(BOB, 'reject')]
  again = support.run_gate(str(tmp_path), _props(slack), execution_id=8)
  assert len(slack.top_level_posts()) == 2
  assert _review(again)['review_id'] != review['review_id']


def test_token_never_reaches_logs_or_outputs(tmp_path, slack, token, logs, capfd):
  slack.fail('chat.postMessage', status=429, headers={'Retry-After': '0'})
  slack.auto_replies = [(ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack))
  assert blessing.get_int_custom_property('blessed') == 1
  assert all(c['authorization'] == f'Bearer {token}' for c in slack.calls
             if c['method'] != 'upload')  # it was sent where it belongs
  out, err = capfd.readouterr()
  assert token not in out + err + logs.text
  assert token not in str(blessing.mlmd_artifact)
  for folder, _, files in os.walk(tmp_path):
    for name in files:
      with open(os.path.join(folder, name), 'rb') as f:
        assert token.encode() not in f.read(), os.path.join(folder, name)


def test_auto_policy_names_the_rule_that_decided(tmp_path):
  strict = support.run_gate(str(tmp_path / 'a'), support.gate_properties(
      backend='auto', auto_policy={'max_quarantined': 10, 'max_flagged_share': 0.1}))
  review = _review(strict)
  assert strict.get_int_custom_property('blessed') == 0
  assert review['review_decision'] == 'rejected'
  assert review['review_reason'] == ('rejected by auto policy: rule max_flagged_share failed: '
                                     '200/1790 flagged = 0.1117 > 0.1')
  lenient = support.run_gate(str(tmp_path / 'b'), support.gate_properties(
      backend='auto', auto_policy={'max_flagged_share': 0.2, 'max_class_flagged_share': 0.35}))
  assert lenient.get_int_custom_property('blessed') == 1
  assert _review(lenient)['review_reason'].startswith('approved by auto policy: all 2 rules passed')
  # A number the policy needs but nobody measured rejects: fail closed.
  blind = support.run_gate(str(tmp_path / 'c'), support.gate_properties(
      backend='auto', auto_policy={'min_hard_accuracy': 0.5}))
  assert blind.get_int_custom_property('blessed') == 0
  assert 'accuracy on the vog_bucket=hard slice is not available' in _review(blind)['review_reason']


def test_auto_policy_uses_the_evaluation(tmp_path):
  evaluation = support.write_evaluation(str(tmp_path / 'eval'), 0.95, 0.58, metric='accuracy')
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      backend='auto', auto_policy={'min_overall_accuracy': 0.9, 'min_hard_accuracy': 0.6}),
                              evaluation_uri=evaluation)
  assert _review(blessing)['review_reason'] == (
      'rejected by auto policy: rule min_hard_accuracy failed: accuracy on the vog_bucket=hard '
      'slice = 0.58 < 0.6')


def test_drift_headline_is_one_line_for_every_case():
  assert review_summary.drift_headline(support.example_drift()) == DRIFT_LINE
  assert review_summary.drift_headline(None) == (
      'First audit with no shipped model to compare with')
  assert review_summary.drift_headline(support.unavailable_drift(
      'the baseline report cannot be read:\n/pipelines/x/summary.json: does not exist')) == (
          'Drift unavailable: the baseline report cannot be read: /pipelines/x/summary.json: '
          'does not exist')
  # No class rose, the flagged share fell, nothing flagged twice in a row.
  calm = support.example_drift(flagged_then=0.15, class_3_rises=(-0.02, -0.01), streaks={})
  assert review_summary.drift_headline(calm) == (
      'Since the last shipped model: flagged 15.0% → 13.0% (-2.0 pts); no class\'s hard share '
      'rose; 40 newly flagged, 25 still flagged')


def test_slack_message_escapes_the_drift_reason():
  from components.review_gate import slack_backend  # pylint: disable=g-import-not-at-top
  summary = _policy_summary(support.unavailable_drift('<!channel> report at <http://x|here>'))
  text, blocks = slack_backend.build_blocks(summary, 'r-1', [ALICE], 60.0)
  line = 'Drift unavailable: &lt;!channel&gt; report at &lt;http://x|here&gt;'
  assert {'type': 'section', 'text': {'type': 'mrkdwn', 'text': line}} in blocks
  assert line in text and '<!channel>' not in text + str(blocks)


def _policy_summary(drift):
  return review_summary.ReviewSummary(
      pipeline='digits_audit', run_id='run-1', model_uri='/m', model_id=11, report_uri='/r',
      report_url='/r/report.html', counts=dict(support.SUMMARY['counts']), splits={},
      worst_classes=[], top_flagged=[], drift=drift)


def test_drift_rules_reject_a_rise_and_name_the_class_and_split():
  drift = support.example_drift()
  decided = auto_policy.decide({'max_flagged_share_increase': 0.01}, _policy_summary(drift))
  assert (decided.decision, decided.reason) == ('rejected', (
      'rejected by auto policy: rule max_flagged_share_increase failed: flagged share change '
      'since the last shipped model (11.1% -> 13.0%) = 0.019 > 0.01'))
  decided = auto_policy.decide({'max_flagged_share_increase': 0.02,
                                'max_class_hard_share_increase': 0.1}, _policy_summary(drift))
  assert (decided.decision, decided.reason) == ('rejected', (
      'rejected by auto policy: rule max_class_hard_share_increase failed: hard share change '
      'of class 3 in eval since the last shipped model (10.0% -> 22.0%) = 0.12 > 0.1'))
  decided = auto_policy.decide({'max_flagged_share_increase': 0.02,
                                'max_class_hard_share_increase': 0.15}, _policy_summary(drift))
  assert decided.decision == 'approved'
  assert 'max_class_hard_share_increase: hard share change of class 3 in eval' in decided.reason
  # A fall passes whatever the threshold.
  calm = support.example_drift(flagged_then=0.15, class_3_rises=(-0.02, -0.01))
  decided = auto_policy.decide({'max_flagged_share_increase': 0.0,
                                'max_class_hard_share_increase': 0.0}, _policy_summary(calm))
  assert decided.decision == 'approved', decided.reason


def test_drift_rules_pass_without_a_baseline_and_say_so():
  policy = {'max_flagged_share_increase': 0.0, 'max_class_hard_share_increase': 0.0}
  first = auto_policy.decide(policy, _policy_summary(None))
  assert (first.decision, first.reason) == ('approved', (
      'approved by auto policy: all 2 rules passed (max_flagged_share_increase: passes, no '
      'shipped model to compare with; max_class_hard_share_increase: passes, no shipped model '
      'to compare with)'))
  lost = auto_policy.decide(policy, _policy_summary(support.unavailable_drift(
      'the baseline report cannot be read')))
  assert lost.decision == 'approved'
  assert ('max_flagged_share_increase: passes, drift against the last shipped model is '
          'unavailable (the baseline report cannot be read)') in lost.reason
  # The other rules still decide.
  strict = auto_policy.decide(dict(policy, max_flagged_share=0.1), _policy_summary(None))
  assert strict.reason.startswith('rejected by auto policy: rule max_flagged_share failed')
  no_common_split = drift_model.Drift('/pipelines/renamed_splits', None, None, 0.13, 0.111,
                                      (), (), {})
  decided = auto_policy.decide({'max_class_hard_share_increase': 0.0},
                               _policy_summary(no_common_split))
  assert decided.decision == 'approved'
  assert 'no split of this audit was audited for the last shipped model' in decided.reason


def test_auto_policy_reads_the_drift_of_the_report(tmp_path):
  rejected = support.run_gate(str(tmp_path / 'a'), support.gate_properties(
      backend='auto', auto_policy={'max_class_hard_share_increase': 0.05}),
                              drift=support.example_drift())
  assert rejected.get_int_custom_property('blessed') == 0
  assert _review(rejected)['review_reason'] == (
      'rejected by auto policy: rule max_class_hard_share_increase failed: hard share change '
      'of class 3 in eval since the last shipped model (10.0% -> 22.0%) = 0.12 > 0.05')
  first = support.run_gate(str(tmp_path / 'b'), support.gate_properties(
      backend='auto', auto_policy={'max_class_hard_share_increase': 0.05}))
  assert first.get_int_custom_property('blessed') == 1
  assert 'no shipped model to compare with' in _review(first)['review_reason']


def test_reply_parsing():
  assert slack_grammar.parse_reply('approve') == ('approved', '')
  assert slack_grammar.parse_reply('<@U0GATE> LGTM!') == (None, '')
  assert slack_grammar.parse_reply('reject: class 3 is noisy') == ('rejected', 'class 3 is noisy')
  assert slack_grammar.parse_reply('*Rejected* - see the report') == ('rejected', 'see the report')
  assert slack_grammar.parse_reply('approvers please look') == (None, '')
  assert slack_grammar.parse_reply('should we approve?') == (None, '')


def test_component_refuses_bad_configuration():
  from tfx.types import channel_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import HumanReviewGate  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top
  model = channel_utils.as_channel([standard_artifacts.Model()])
  report = channel_utils.as_channel([DifficultyReport()])
  cases = [
      (dict(backend='email'), "backend 'email' is not one of slack, local, auto"),
      (dict(backend='slack', slack_channel='C1'), 'needs approvers'),
      (dict(backend='slack', approvers=['U1']), 'needs slack_channel'),
      (dict(backend='local', approvers=['alice'], timeout_seconds=0), 'timeout_seconds must be'),
      (dict(backend='auto'), 'auto_policy needs at least one rule'),
      (dict(backend='auto', auto_policy={'max_flaged_share': 0.1}), "rule 'max_flaged_share' is unknown"),
      (dict(backend='local', approvers=['a'], slack_token_env='xoxb-12-34'), 'never pass the token'),
      (dict(backend='local', approvers=['a'], report_url_template='https://x/{run}'),
       "unknown placeholder 'run'"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError, match=message.replace('(', r'\(')):
      HumanReviewGate(model=model, difficulty_report=report, **kwargs)
  gate = HumanReviewGate(model=model, difficulty_report=report, backend='auto',
                         auto_policy={'max_flagged_share': 0.2})
  assert gate.outputs['review_blessing'].type_name == 'ModelBlessing'
  assert auto_policy.BACKEND == gate.exec_properties['backend']


def test_slack_lists_top_flagged_by_what_ranked_them_and_how_many_signals_agree():
  from components.review_gate import slack_backend  # pylint: disable=g-import-not-at-top
  row = {'rank': 1, 'example_id': 'digit-7', 'split': 'train', 'label': 3,
         'predicted_class': 5, 'vog_score': 0.4,
         'signals': {'audit_confidence': 0.043, 'audit_el2n': 1.2},
         'agreeing': ['confidence', 'margin_mean', 'el2n', 'vog']}
  summary = dataclasses.replace(_policy_summary(None), top_flagged=[row],
                                ranked_by='confidence')
  _, blocks = slack_backend.build_blocks(summary, 'r-1', [ALICE], 60.0)
  texts = [b['text']['text'] for b in blocks if 'text' in b and 'Top flagged' in str(b)]
  assert texts == ['*Top flagged examples* (ranked by confidence)\n1. `digit-7` (train) '
                   'label 3, predicted 5, confidence 0.04, 4 of 8 signals agree']
  # A report ranked by VoG, written before the signals existed, reads as it did.
  old = dict(row, signals=None, agreeing=None)
  assert review_summary.flagged_line(old, 'vog') == 'score 0.40'
