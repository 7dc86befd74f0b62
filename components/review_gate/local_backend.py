"""The `local` backend: the review waits on disk for `vog-audit review approve|reject`.

The record is opened by `RecordedBackend.review`; this module watches it. A person answers from
any shell that sees the pipeline root:

    vog-audit review list --pipeline-root demo_output/pipeline
    vog-audit review approve 3fa9c21b-1 --by alice --comment "class 3 labels checked"

Each answer is appended to the record's `answers` (one per approver). The gate decides by
`decision_rule.tally` over the answers given by its own approvers - not the record's list,
which anyone who can write the folder can change - and only until the record's deadline
(never later than a fresh review's). Names are not authenticated: whoever can write the
reviews folder can write an answer under any name, so use this backend where write access to
the folder is itself the list of approvers.
"""

import calendar
import time
from typing import Any, Dict, List, Sequence, Tuple

from absl import logging

from components.review_gate import backend_api
from components.review_gate import decision as decision_lib
from components.review_gate import decision_rule
from components.review_gate import review_record
from components.review_gate import review_store

BACKEND = 'local'
HOW = 'vog-audit review'
MAX_NAME = 200


def _answers_problem(answers: List[Any]) -> str:
  """Why `answers` is not the list `answer` writes, or ''."""
  fields = {'by': str, 'verdict': str, 'comment': str, 'answered_at': str}
  for i, item in enumerate(answers, 1):
    if not isinstance(item, dict) or set(item) != set(fields):
      return f'holds answer {i} that is not an object with {", ".join(fields)}'
    for name, kind in fields.items():
      if not isinstance(item[name], kind):
        kind_name = type(item[name]).__name__
        return (f'holds answer {i} with {"an" if kind_name[0] in "aeiou" else "a"} '
                f'{kind_name} for {name}')
    if item['verdict'] not in decision_rule.VERDICTS:
      return f'holds answer {i} with verdict {item["verdict"]!r}'
    if not item['by'] or len(item['by']) > MAX_NAME:
      return f'holds answer {i} whose name is empty or longer than {MAX_NAME} characters'
    if not review_record.ISO_TIME_PATTERN.fullmatch(item['answered_at']):
      return f'holds answer {i} whose answered_at is not an ISO-8601 UTC time'
    if len(item['comment']) > review_record.MAX_TEXT:
      return f'holds answer {i} with a comment longer than {review_record.MAX_TEXT} characters'
  if len({a['by'] for a in answers}) != len(answers):
    return 'holds two answers by the same name'
  return ''


class LocalBackend(backend_api.RecordedBackend):
  """Waits for `vog-audit review` answers written to the review record."""

  NAME = BACKEND
  DECIDES = ('`quorum` of the gate\'s approvers approve with `vog-audit review approve` before '
             'the deadline and none rejects with `vog-audit review reject`')
  APPROVERS_HINT = 'the names they pass to --by'
  STATE_FIELDS = {
      'deadline_at': review_record.number(positive=True),
      'answers': review_record.Field((list,), _answers_problem),
  }

  @classmethod
  def where_to_answer(cls, record: review_record.ReviewRecord) -> str:
    answered = ', '.join(f'{a["by"]} {a["verdict"]}' for a in record.state['answers'])
    line = (f'approvers: {", ".join(record.approvers)} ({record.quorum} needed)'
            + (f'; answered: {answered}' if answered else ''))
    if not record.closed:
      line += f'; answer by {decision_lib.iso_time(record.state["deadline_at"])}'
    return line

  def initial_state(self, request: backend_api.ReviewRequest) -> Dict[str, Any]:
    return {'deadline_at': time.time() + self.settings.timeout_seconds, 'answers': []}

  def wait(self, store, record, request, resumed) -> decision_lib.Decision:
    settings = self.settings
    review_id = record.review_id
    # A resumed review keeps its deadline, but never gets more time than a fresh one.
    deadline_at = min(record.state['deadline_at'], time.time() + settings.timeout_seconds)
    store.wait_until(time.monotonic() + (deadline_at - time.time()))
    logging.info('Waiting until %s for an answer to local review %s: run `vog-audit review '
                 'approve %s --by NAME --reviews-dir %s` (or reject)',
                 decision_lib.iso_time(deadline_at), review_id, review_id, store.reviews_dir)
    noted = set()
    while True:
      read_at = time.time()
      try:
        answers, ignored = verified_answers(store.get(review_id), settings.approvers)
      except review_store.ReviewStoreError as e:
        answers, ignored = [], [f'the record cannot be read ({e})']
      for why in ignored:
        if why not in noted:  # once per reason, not once per poll
          noted.add(why)
          logging.warning('Ignoring an answer stored in review %s: %s', review_id, why)
      result = decision_rule.tally(answers, settings.approvers, settings.quorum)
      if result.verdict == decision_lib.REJECTED or (
          result.verdict == decision_lib.APPROVED and read_at <= deadline_at):
        logging.info('Local review %s %s', review_id, decision_rule.describe(result))
        return _decision(result, review_id)
      remaining = deadline_at - time.time()
      if remaining <= 0:
        logging.warning('Local review %s timed out after %gs (%s)', review_id,
                        settings.timeout_seconds, decision_rule.describe(result))
        return decision_lib.Decision(
            decision=decision_lib.TIMEOUT, backend=BACKEND,
            reason=f'no answer to local review {review_id} within '
                   f'{settings.timeout_seconds:g}s' + (
                       f' ({decision_rule.describe(result)})' if settings.quorum > 1 else ''))
      time.sleep(min(settings.poll_interval_seconds, remaining))


def _decision(result: decision_rule.Tally, review_id: str) -> decision_lib.Decision:
  return decision_lib.Decision(
      decision=result.verdict, backend=BACKEND, reviewer=result.reviewers,
      comment=result.comment, reviewed_at=decision_lib.iso_time(result.decided_at),
      reason=f'{decision_rule.describe(result)} with vog-audit review (review {review_id})')


def verified_answers(record: review_record.ReviewRecord, approvers: Sequence[str]
                     ) -> Tuple[List[decision_rule.Answer], List[str]]:
  """The record's answers the gate can take, and why each other one does not count.

  An answer counts when the record is a local review and the name is in `approvers`, the
  gate's own list (not the record's).
  """
  if record.backend != BACKEND:
    return [], [f'the record is a {record.backend} review and the gate asks {BACKEND}']
  answers, ignored = [], []
  for i, item in enumerate(record.state['answers']):
    if item['by'] not in approvers:
      ignored.append(f'{item["by"]!r} is not one of the gate\'s approvers '
                     f'({", ".join(approvers)})')
      continue
    answers.append(decision_rule.Answer(
        user=item['by'], verdict=item['verdict'], at=_epoch(item['answered_at']), how=HOW,
        comment=item['comment'], key=f'{item["by"]}/{i}'))
  return answers, ignored


def _epoch(iso: str) -> float:
  return float(calendar.timegm(time.strptime(iso[:19], '%Y-%m-%dT%H:%M:%S')))


def answer(store: review_store.ReviewStore, review_id: str, *, approve: bool, by: str,
           comment: str = '') -> review_record.ReviewRecord:
  """Records one approver's answer to a pending local review; returns the updated record.

  Refuses (ReviewStoreError): a malformed or unknown ID; a review of another backend; a closed
  or decided review; a name that is not among the review's approvers; an approver who already
  answered; an answer after the deadline; a comment over review_record.MAX_TEXT characters.
  The gate checks the answer again against its own approvers.
  """
  by = (by or '').strip()
  if not by:
    raise review_store.ReviewStoreError(
        'say who decides: pass --by NAME (one of the review\'s approvers)')
  if len(comment or '') > review_record.MAX_TEXT:
    raise review_store.ReviewStoreError(
        f'the comment is {len(comment)} characters; keep it under {review_record.MAX_TEXT}')
  review_store.check_review_id(review_id)
  verdict = decision_lib.APPROVED if approve else decision_lib.REJECTED

  def change(record: review_record.ReviewRecord) -> review_record.ReviewRecord:
    rid = record.review_id
    if record.backend != BACKEND:
      # Imported here: the list of backends imports this module.
      from components.review_gate import backends  # pylint: disable=g-import-not-at-top
      raise review_store.ReviewStoreError(
          f'review {rid} is a {record.backend} review, not a local one; it is '
          + backends.get(record.backend).where_to_answer(record))
    if record.closed:
      closed_as = record.decision.decision if record.decision else record.status
      raise review_store.ReviewStoreError(
          f'review {rid} is closed ({closed_as}); the pipeline has moved on - run it again to '
          'open a new review')
    given = record.state['answers']
    if record.status != review_record.PENDING:
      who = ', '.join(f'{a["by"]} at {a["answered_at"]}' for a in given)
      raise review_store.ReviewStoreError(f'review {rid} was already {record.status} ({who})')
    if by not in record.approvers:
      raise review_store.ReviewStoreError(
          f'{by!r} is not an approver of review {rid}; approvers are: '
          f'{", ".join(record.approvers)}')
    deadline = record.state['deadline_at']
    if time.time() > deadline:
      raise review_store.ReviewStoreError(
          f'review {rid} ran out of time at {decision_lib.iso_time(deadline)}; the gate does '
          'not bless on it - run the pipeline again to open a new review')
    for prior in given:
      if prior['by'] == by:
        raise review_store.ReviewStoreError(
            f'{by} already answered review {rid} ({prior["verdict"]} at '
            f'{prior["answered_at"]}); each approver answers once')
    answers = list(given) + [{'by': by, 'verdict': verdict, 'comment': comment or '',
                              'answered_at': decision_lib.utc_now()}]
    counted, _ = verified_answers(record.with_state(answers=answers), record.approvers)
    result = decision_rule.tally(counted, record.approvers, record.quorum)
    return record.replace(status=result.verdict or review_record.PENDING).with_state(
        answers=answers)

  return store.update(review_id, change)
