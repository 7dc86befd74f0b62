"""What a Slack reply or reaction must look like to count.

An approval is exactly `approve` (any case, an optional full stop, after NFKC); a rejection
starts with a rejection word and may give a reason; anything else that mentions the decision
is no answer, and the approver is told so in the thread. Which answers decide is
test_review_gate_decisions.py.
"""

import pytest

import review_gate_support as support

from components.review_gate import slack_grammar

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'


_props = support.slack_gate_properties
_review = support.review_fields


@pytest.mark.parametrize('text', [
    # What the old grammar let through as approvals.
    'approve - reject', 'approve - stop', 'approve - nah', 'approve - jk',
    'approve - ok\uff1f',  # full-width question mark
    'approve - \uff4e\uff4f\uff54',  # full-width "not"
    "approve - shouldn\u02bct",  # U+02BC, not an apostrophe
    'approve: looks fine', 'LGTM - ship it', 'ship it', 'approved', 'lgtm', '*approve*',
    'approve!', 'approve\u200b', '<@U0GATE> approve', 'approve approve', 'approve\nlooks fine',
    'approve? no - wait for the class 3 fix', 'ship?', 'LGTM once labels are fixed',
    'approve: once the labels are fixed', 'should we approve?', 'LGTM?!', 'approve..',
])
def test_replies_that_mention_a_decision_but_are_no_answer(text):
  reply = slack_grammar.read_reply(text)
  assert (reply.verdict, reply.reason) == (None, '')
  assert 'reply with exactly "approve"' in reply.why  # the approver is told what counts


@pytest.mark.parametrize('text', [
    'thanks, looking', "shouldn\u02bct we check class 3 first", 'approvers please look',
    '', '   ', 'class 8 looks fine to me', 'the relationship between class 3 and 5',
])
def test_discussion_is_neither_an_answer_nor_flagged(text):
  assert slack_grammar.read_reply(text) == slack_grammar.Reply()


@pytest.mark.parametrize('text', [
    'approve', 'Approve', 'APPROVE.', '  approve  ', 'approve.',
    '\uff41\uff50\uff50\uff52\uff4f\uff56\uff45',  # full-width letters: NFKC reads "approve"
])
def test_replies_that_approve(text):
  assert slack_grammar.parse_reply(text) == ('approved', '')


@pytest.mark.parametrize('text, reason', [
    ('reject: class 3 is noisy', 'class 3 is noisy'),
    ('*Rejected* - see the report', 'see the report'),
    ('_reject_', ''),  # italic
    ('~reject~', ''),
    ('`reject`: labels', 'labels'),
    ('stop', ''),
    ('no - wait for the class 3 fix', 'wait for the class 3 fix'),
    ('not approved', 'approved'),
    ("don't ship", 'ship'),
    ('Don\u2019t ship this one', 'ship this one'),
    ('\uff32\uff25\uff2a\uff25\uff23\uff34: class 8', 'class 8'),  # full-width REJECT
    ('<@U0GATE> reject: labels swapped', 'labels swapped'),
    (':x: reject', ''),
    ('Nope.', ''),
    ('veto, class 3 is half wrong', 'class 3 is half wrong'),
    # A negation or a condition in a rejection's reason still rejects: that fails closed.
    ('reject - do not ship until class 3 is fixed', 'do not ship until class 3 is fixed'),
])
def test_replies_that_reject_carry_their_reason(text, reason):
  assert slack_grammar.parse_reply(text) == ('rejected', reason)


def test_unclear_replies_from_an_approver_are_ignored_logged_and_answered_in_the_thread(
    tmp_path, slack, logs):
  texts = ['approve - nah', 'approve - ok\uff1f', 'ship it', 'LGTM once labels are fixed',
           'approve - \uff4e\uff4f\uff54']
  slack.auto_replies = [(ALICE, text) for text in texts] + [(ALICE, 'thanks, looking')]
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.5),
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  ignored = [r.getMessage() for r in logs.records
             if r.getMessage().startswith(f'Ignoring a reply by {ALICE}')]
  assert len(ignored) == len(texts), ignored  # once each, not once per read
  notices = [c['params'] for c in slack.calls_to('chat.postMessage')
             if c['params'].get('thread_ts')]
  assert len(notices) == len(texts)  # one thread reply per unclear answer, none for discussion
  assert all(n['text'].startswith(f'<@{ALICE}>, your reply does not count: to approve, reply '
                                  'with exactly "approve"') for n in notices)
  assert {n['metadata']['event_payload']['kind'] for n in notices} == {'not_an_answer'}


def test_an_italic_rejection_stops_a_later_approval(tmp_path, slack):
  """`_reject_` is a rejection, so Bob's approval after it does not ship the model."""
  slack.auto_replies = [(ALICE, '_reject_ class 3 labels are swapped'), (BOB, 'approve')]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  assert (review['review_decision'], review['reviewer'], review['review_comment']) == (
      'rejected', ALICE, 'class 3 labels are swapped')


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
