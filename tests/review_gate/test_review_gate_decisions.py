"""Which answers decide: the rule needs no ordering, and edited or deleted messages never count.

The model ships only when `quorum` approvers approved and no approver rejected before the
decision; any approver's rejection, at any time before the decision, stops it. These tests run
the gate against the Slack Web API stand-in on 127.0.0.1, with edits, deletions, late reads and
both orders of answers, and check the rule itself on every order of a set of answers.
"""

import itertools
import threading
import time

import pytest

import review_gate_support as support

from components.review_gate import decision_rule

ALICE, BOB, EVE = 'U0ALICE', 'U0BOB', 'U0EVE'


_props = support.slack_gate_properties
_review = support.review_fields


def _thread_posts(slack):
  """What the gate said in review threads: (kind of notice, text), oldest first."""
  return [((c['params'].get('metadata') or {}).get('event_payload', {}).get('kind'),
           c['params']['text'])
          for c in slack.calls_to('chat.postMessage') if c['ok'] and c['params'].get('thread_ts')]


@pytest.mark.parametrize('replies, edits, decision, reviewer', [
    # B's "thanks, looking" predates A's rejection; B edits it into "approve".
    ([(BOB, 'thanks, looking'), (ALICE, 'reject: class 3 labels are swapped')], [(0, 'approve')],
     'rejected', ALICE),
    # Without a rejection, the edited approval still does not count.
    ([(BOB, 'thanks, looking')], [(0, 'approve')], 'timeout', ''),
    # Nor does an edited rejection turned approval.
    ([(ALICE, 'reject')], [(0, 'approve')], 'timeout', ''),
], ids=['edit-outranks-rejection', 'edit-alone', 'rejection-edited'])
def test_an_edited_message_never_counts_and_the_thread_is_told(
    tmp_path, slack, replies, edits, decision, reviewer):
  slack.auto_replies = replies
  slack.auto_edits = edits
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.5),
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 0
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == (decision, reviewer)
  edited_author = replies[edits[0][0]][0]
  told = [text for kind, text in _thread_posts(slack) if kind == 'edited']
  assert told == [f'<@{edited_author}>, you edited a reply in this thread; edited replies never '
                  'count. Post a new reply: to approve, reply with exactly "approve"; to reject, '
                  'start a reply with "reject" (or no, not, stop, veto, block, decline) and give '
                  'the reason.']


@pytest.mark.parametrize('replies', [
    [(ALICE, 'approve'), (BOB, 'reject: class 3')],
    [(BOB, 'reject: class 3'), (ALICE, 'approve')],
    [(ALICE, 'approve'), (ALICE, 'reject: class 3 after all')],
], ids=['approve-then-reject', 'reject-then-approve', 'same-approver'])
def test_any_rejection_stops_the_model_in_either_order(tmp_path, slack, replies):
  slack.auto_replies = replies
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  [rejecter] = [user for user, text in replies if text.startswith('reject')]
  assert (review['review_decision'], review['reviewer']) == ('rejected', rejecter)
  [reply_ts] = [m['ts'] for m in slack.messages.values()
                if m.get('user') == rejecter and m['text'].startswith('reject')]
  assert review['reviewed_at'].startswith(time.strftime(
      '%Y-%m-%dT%H:%M:%S', time.gmtime(int(float(reply_ts)))))


def test_a_rejection_slack_shows_late_still_stops_the_approval(tmp_path, slack):
  """The first read shows only Alice's approval; the confirming read shows Bob's rejection."""
  slack.auto_replies = [(ALICE, 'approve'), (BOB, 'reject: class 3', {'hidden_reads': 1})]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('rejected', BOB)
  assert len(slack.calls_to('conversations.replies')) >= 2


def test_a_rejecting_reaction_stops_an_approving_reply(tmp_path, slack):
  slack.auto_replies = [(ALICE, 'approve')]
  slack.auto_reactions = [('x', BOB)]
  blessing = support.run_gate(str(tmp_path), _props(slack), with_montage=False)
  review = _review(blessing)
  assert (review['review_decision'], review['reviewer']) == ('rejected', BOB)
  assert 'reaction :x:' in review['review_reason']


def test_a_quorum_needs_that_many_distinct_approvers(tmp_path, slack):
  slack.auto_replies = [(ALICE, 'approve'), (ALICE, 'approve')]
  short = support.run_gate(str(tmp_path / 'a'), _props(slack, quorum=2, timeout_seconds=1.5),
                           with_montage=False)
  assert _review(short)['review_decision'] == 'timeout'
  assert '(1 of the 2 approval(s) needed so far, no rejection)' in _review(short)['review_reason']

  slack.auto_replies = [(ALICE, 'approve')]
  slack.auto_reactions = [('+1', BOB)]
  both = support.run_gate(str(tmp_path / 'b'), _props(slack, quorum=2), with_montage=False)
  review = _review(both)
  assert both.get_int_custom_property('blessed') == 1
  assert (review['review_decision'], review['reviewer']) == ('approved', f'{ALICE},{BOB}')
  assert review['review_reason'] == (f'approved by {ALICE},{BOB} (2 approvals, 2 needed) in Slack '
                                     '(thread reply, reaction :+1:)')
  assert ('decision', f'Approved by <@{ALICE}> and <@{BOB}>: the model is blessed for the '
          'Pusher.') in _thread_posts(slack)


def test_a_deleted_approval_does_not_count_and_the_thread_is_told(tmp_path, slack, logs):
  """Alice's approval is deleted after the first read; the confirming read finds it gone."""
  slack.auto_replies = [(ALICE, 'approve', {'deleted_after_reads': 1})]
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.5),
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 0
  assert _review(blessing)['review_decision'] == 'timeout'
  assert [text for kind, text in _thread_posts(slack) if kind == 'deleted'] == [
      f'<@{ALICE}>, your reply that approved the model was deleted; deleted replies do not count.']
  assert any('was deleted; it no longer counts' in r.getMessage() for r in logs.records)


def test_a_deleted_review_message_ends_the_review(tmp_path, slack):
  slack.auto_replies = [(EVE, 'looking at class 3')]

  def delete_once_read():
    deadline = time.monotonic() + 20
    while not slack.calls_to('conversations.replies') and time.monotonic() < deadline:
      time.sleep(0.01)
    slack.delete(slack.threads()[0])

  deleter = threading.Thread(target=delete_once_read)
  deleter.start()
  blessing = support.run_gate(str(tmp_path), _props(slack, timeout_seconds=10.0),
                              with_montage=False)
  deleter.join()
  review = _review(blessing)
  assert blessing.get_int_custom_property('blessed') == 0
  assert review['review_decision'] == 'error'
  assert 'was deleted; nothing in its thread counts' in review['review_reason']


def test_only_a_persons_reply_counts_a_broadcast_included(tmp_path, slack):
  """A reply also sent to the channel counts; a message with another subtype does not."""
  slack.auto_replies = [(BOB, 'approve', {'subtype': 'thread_broadcast'}),
                        (ALICE, 'approve', {'subtype': 'me_message'})]
  blessing = support.run_gate(str(tmp_path), _props(slack, quorum=2, timeout_seconds=1.5),
                              with_montage=False)
  assert _review(blessing)['review_decision'] == 'timeout'
  assert '(1 of the 2 approval(s) needed so far' in _review(blessing)['review_reason']


def test_a_resumed_review_does_not_repeat_what_it_told_the_thread(tmp_path, slack):
  """The notice carries metadata; a resumed gate reads it from Slack instead of the disk."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  slack.auto_replies = [(ALICE, 'approve - jk')]
  support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.0), with_montage=False)
  assert [kind for kind, _ in _thread_posts(slack)] == ['not_an_answer']
  [name] = [n for n in os.listdir(tmp_path / 'reviews') if n.endswith('.json')]
  path = tmp_path / 'reviews' / name
  record = json.loads(path.read_text())
  path.write_text(json.dumps(dict(record, closed=False, decision=None)))
  support.run_gate(str(tmp_path), _props(slack, timeout_seconds=1.0), with_montage=False,
                   execution_id=8)
  assert len(slack.top_level_posts()) == 1  # resumed, not asked again
  assert [kind for kind, _ in _thread_posts(slack)] == ['not_an_answer']


def _answer(user, verdict, at, how='thread reply'):
  return decision_rule.Answer(user=user, verdict=verdict, at=at, how=how, key=f'{user}/{at}')


@pytest.mark.parametrize('answers, quorum, verdict, reviewers', [
    ([('A', 'approved', 1), ('B', 'rejected', 2)], 1, 'rejected', 'B'),
    ([('A', 'approved', 3), ('B', 'rejected', 2), ('C', 'approved', 1)], 1, 'rejected', 'B'),
    ([('A', 'approved', 1), ('A', 'approved', 2), ('B', 'approved', 5)], 2, 'approved', 'A,B'),
    ([('A', 'approved', 1), ('A', 'approved', 2)], 2, None, ''),
    ([('A', 'approved', 1), ('X', 'rejected', 0)], 1, 'approved', 'A'),  # X is no approver
    ([('A', 'rejected', 4), ('B', 'rejected', 1), ('C', 'approved', 2)], 2, 'rejected', 'B,A'),
])
def test_the_rule_gives_the_same_outcome_for_every_order_of_the_answers(
    answers, quorum, verdict, reviewers):
  approvers = ['A', 'B', 'C']
  outcomes = {decision_rule.tally([_answer(*a) for a in order], approvers, quorum)
              for order in itertools.permutations(answers)}
  assert len(outcomes) == 1
  [outcome] = outcomes
  assert (outcome.verdict, outcome.reviewers) == (verdict, reviewers)


@pytest.mark.parametrize('quorum, approvers', [
    (0, ['A']), (2, ['A']), (2, ['A', 'A']), (True, ['A', 'B']), (1.5, ['A', 'B']), ('1', ['A'])])
def test_a_quorum_no_set_of_approvers_can_meet_is_refused(quorum, approvers):
  with pytest.raises(ValueError, match='quorum must be a whole number from 1 to the number of '
                                       r'distinct approvers \(\d\), got '):
    decision_rule.check_quorum(quorum, approvers)
