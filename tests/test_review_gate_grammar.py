"""What a Slack reply or reaction must look like to decide, and which answer decides.

A reply decides only when it is exactly a decision word, optionally followed by `:` or `-` and a
comment; a question, a negation or a condition never approves. Of the answers the gate sees, the
earliest in Slack's own time (the message `ts`) decides, whichever read of the thread shows it.
"""

import datetime

import pytest

import test_review_gate_support as support

from components.review_gate import slack_grammar

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'


def _props(slack, **overrides):
  return support.gate_properties(slack_api_url=slack.api_url, **overrides)


def _review(blessing):
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_comment', 'review_reason',
                       'reviewed_at')}


@pytest.mark.parametrize('text', [
    'approve? no - wait for the class 3 fix',
    'ship?',
    'LGTM once labels are fixed',
    'approved not',
    'approve: not until class 3 is relabelled',
    'approve - if the hard slice holds up',
    'lgtm: but check class 8 first',
    "approve - don't push before Monday",
    'approve: once the labels are fixed',
    'approve\nlooks fine',
    'approve approve',
    'should we approve?',
    'approvers please look',
    'not approved',
    'LGTM?!',
])
def test_replies_that_do_not_approve(text):
  assert slack_grammar.parse_reply(text) == (None, '')


@pytest.mark.parametrize('text, expected', [
    ('approve: looks fine', ('approved', 'looks fine')),
    ('LGTM - ship it', ('approved', 'ship it')),
    ('<@U0GATE> LGTM!', ('approved', '')),
    ('Approved.', ('approved', '')),
    ('ship it', ('approved', '')),
    ('*approve*', ('approved', '')),
    ('approve – class 8 spot-checked', ('approved', 'class 8 spot-checked')),
    ('reject: class 3 is noisy', ('rejected', 'class 3 is noisy')),
    ('*Rejected* - see the report', ('rejected', 'see the report')),
    ('stop', ('rejected', '')),
    # A negation or a condition in a rejection's comment still rejects: that fails closed.
    ('reject - do not ship until class 3 is fixed', ('rejected', 'do not ship until class 3 is fixed')),
])
def test_replies_that_decide(text, expected):
  assert slack_grammar.parse_reply(text) == expected


def test_ambiguous_replies_from_an_approver_are_ignored_and_logged(tmp_path, slack, logs):
  texts = ['approve? no - wait for the class 3 fix', 'ship?', 'LGTM once labels are fixed',
           'approved not']
  slack.auto_replies = [(ALICE, text) for text in texts]
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.5),
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  ignored = [r.getMessage() for r in logs.records
             if r.getMessage().startswith(f'Ignoring a reply by {ALICE}')]
  assert len(ignored) == len(texts), ignored  # once each, not once per read
  assert any('a question' in line for line in ignored)
  assert any('only a decision word, optionally followed by ":" or "-" and a comment' in line
             for line in ignored)


def test_a_plain_approval_with_a_comment_blesses(tmp_path, slack):
  slack.auto_replies = [(ALICE, 'approve: looks fine')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 1
  assert (review['review_decision'], review['reviewer'], review['review_comment']) == (
      'approved', ALICE, 'looks fine')


def test_reactions_outside_the_fixed_list_do_not_decide(tmp_path, slack, logs):
  slack.auto_reactions = [('approved', ALICE), ('shipit', ALICE), ('rocket', BOB)]
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.0),
                              with_montage=False)
  assert _review(blessing)['review_decision'] == 'timeout'


def test_a_listed_reaction_with_a_skin_tone_decides(tmp_path, slack):
  slack.auto_reactions = [('+1::skin-tone-3', BOB)]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', BOB)
  assert 'reaction :+1:' in review['review_reason']


def _iso(ts):
  seconds, micros = ts.split('.')
  moment = datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)
  return moment.strftime('%Y-%m-%dT%H:%M:%S') + f'.{micros}Z'  # Slack's ts has six digits


def _reply_ts(slack, user):
  return [m['ts'] for m in slack.messages.values() if m.get('user') == user][0]


def test_earliest_answer_in_one_read_decides_and_dates_the_review(tmp_path, slack):
  """Alice approved before Bob rejected: the approval stands, at the time Alice wrote it."""
  slack.auto_replies = [(ALICE, 'approve: class 8 checked'), (BOB, 'reject')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', ALICE)
  assert review['reviewed_at'] == _iso(_reply_ts(slack, ALICE))


def test_earliest_answer_decides_even_when_a_later_read_shows_it(tmp_path, slack):
  """Slack dates Alice's approval before Bob's rejection, but the first read only shows Bob's."""
  slack.auto_replies = [(ALICE, 'approve', {'hidden_reads': 1}), (BOB, 'reject: class 3')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('approved', ALICE)
  assert review['reviewed_at'] == _iso(_reply_ts(slack, ALICE))
  assert len(slack.calls_to('conversations.replies')) >= 2


def test_the_same_thread_gives_the_same_decision_in_any_order_of_reads(tmp_path, slack):
  """Bob rejected first; Alice's later approval, seen in the same read, does not override it."""
  slack.auto_replies = [(BOB, 'reject: class 3'), (ALICE, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('rejected', BOB)
  assert review['reviewed_at'] == _iso(_reply_ts(slack, BOB))
