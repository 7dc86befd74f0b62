"""The `local` backend: the review waits on disk for `vog-audit review approve|reject`.

The executor has already written the pending record; this module only watches it. A person
answers from any shell that sees the pipeline root:

    vog-audit review list --pipeline-root demo_output/pipeline
    vog-audit review approve 3fa9c21b-1 --by alice --comment "class 3 labels checked"
"""

import time
from typing import Callable

from absl import logging

from components.review_gate import decision as decision_lib
from components.review_gate import review_store

BACKEND = 'local'


def wait_for_answer(store: review_store.ReviewStore, review_id: str, *, timeout_seconds: float,
                    poll_interval_seconds: float,
                    sleep: Callable[[float], None] = time.sleep) -> decision_lib.Decision:
  """Polls the record of `review_id` until someone answers or `timeout_seconds` pass.

  Returns the recorded approval/rejection, or a `timeout` decision; never blesses on its own.
  """
  deadline = time.monotonic() + timeout_seconds
  logging.info('Waiting up to %gs for an answer to local review %s: run `vog-audit review '
               'approve %s --by NAME --reviews-dir %s` (or reject)', timeout_seconds, review_id,
               review_id, store.reviews_dir)
  while True:
    record = store.get(review_id)
    if record['status'] != review_store.PENDING and record.get('decision'):
      outcome = decision_lib.Decision.from_json(record['decision'])
      logging.info('Local review %s %s by %s', review_id, outcome.decision, outcome.reviewer)
      return outcome
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      logging.warning('Local review %s timed out after %gs', review_id, timeout_seconds)
      return decision_lib.Decision(
          decision=decision_lib.TIMEOUT, backend=BACKEND,
          reason=f'no answer to local review {review_id} within {timeout_seconds:g}s')
    sleep(min(poll_interval_seconds, remaining))
