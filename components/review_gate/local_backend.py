"""The `local` backend: the review waits on disk for `vog-audit review approve|reject`.

The executor has already written the pending record; this module only watches it. A person
answers from any shell that sees the pipeline root:

    vog-audit review list --pipeline-root demo_output/pipeline
    vog-audit review approve 3fa9c21b-1 --by alice --comment "class 3 labels checked"

The record is a file anyone who can write the reviews folder can write, so an answer counts
only after `review_store.verified_decision` checks it against the gate's own approvers and
backend; and only until the deadline fixed when the review was opened.
"""

import time
from typing import Callable, List, Optional

from absl import logging

from components.review_gate import decision as decision_lib
from components.review_gate import review_store

BACKEND = 'local'


def wait_for_answer(store: review_store.ReviewStore, review_id: str, *, approvers: List[str],
                    timeout_seconds: float, poll_interval_seconds: float,
                    deadline_at: Optional[float] = None,
                    sleep: Callable[[float], None] = time.sleep) -> decision_lib.Decision:
  """Polls the record of `review_id` until an approver answers or the deadline passes.

  Args:
    store: the reviews folder.
    review_id: the review to watch.
    approvers: the gate's own approvers; an answer by anyone else is ignored and logged, even
      when the record's list (which anyone who can write the folder can change) names them.
    timeout_seconds: the review's time in all, for the messages.
    poll_interval_seconds: how often the record is read.
    deadline_at: epoch seconds when the review ends; default now + timeout_seconds.
    sleep: waits between reads (tests pass a fake).

  Returns:
    The verified approval or rejection, or a `timeout` decision; never blesses on its own. A
    record that cannot be read or verified is logged and waited past, not trusted.
  """
  deadline_at = time.time() + timeout_seconds if deadline_at is None else deadline_at
  logging.info('Waiting until %s for an answer to local review %s: run `vog-audit review '
               'approve %s --by NAME --reviews-dir %s` (or reject)',
               decision_lib.iso_time(deadline_at), review_id, review_id, store.reviews_dir)
  noted = set()
  while True:
    try:
      outcome, why = review_store.verified_decision(store.get(review_id), BACKEND, approvers)
    except review_store.ReviewStoreError as e:
      outcome, why = None, f'the record cannot be read ({e})'
    if outcome is not None:
      logging.info('Local review %s %s by %s', review_id, outcome.decision, outcome.reviewer)
      return outcome
    if why and why not in noted:
      noted.add(why)
      logging.warning('Ignoring the decision stored in review %s: %s', review_id, why)
    remaining = deadline_at - time.time()
    if remaining <= 0:
      logging.warning('Local review %s timed out after %gs', review_id, timeout_seconds)
      return decision_lib.Decision(
          decision=decision_lib.TIMEOUT, backend=BACKEND,
          reason=f'no answer to local review {review_id} within {timeout_seconds:g}s')
    sleep(min(poll_interval_seconds, remaining))
