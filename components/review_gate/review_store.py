"""Pending reviews on disk: written before anyone is asked, so a retried gate resumes.

One JSON file per review under `<pipeline_root>/reviews/` (or the gate's `reviews_dir`):

    {"format_version": 1, "review_id": "3fa9c21b-1", "fingerprint": "<sha256 of the inputs>",
     "status": "pending" | "approved" | "rejected", "closed": false, "backend": "slack",
     "created_at": "...", "pipeline": "...", "node_id": "...", "model_uri": "...",
     "report_uri": "...", "approvers": [...], "headline": {...},
     "slack_channel": "...", "slack_thread_ts": "...", "decision": null | {...}}

`status` is what a person answered; `closed` is set once a gate execution has written its
output, after which a new execution with the same inputs opens a new review. Every change is
a read-modify-write under an exclusive `flock` on `<reviews_dir>/.lock` and lands with an
atomic rename, so the command line and a waiting gate never see half a file. The folder must
be a local or mounted (e.g. GCS FUSE) path: object stores offer neither locks nor renames.
"""

import contextlib
import fcntl
import json
import os
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from components.review_gate import decision as decision_lib

FORMAT_VERSION = 1
PENDING = 'pending'
RECORD_SUFFIX = '.json'
_LOCK_FILE = '.lock'


class ReviewStoreError(ValueError):
  """A review that does not exist, or an answer the review cannot take."""


class ReviewStore:
  """Reads and changes the review records in one folder."""

  def __init__(self, reviews_dir: str):
    if '://' in reviews_dir:
      raise ReviewStoreError(
          f'reviews folder {reviews_dir} is not a local path; pending reviews need file locks '
          'and atomic renames - set reviews_dir to a local or mounted (e.g. /gcs/...) folder')
    self.reviews_dir = reviews_dir

  @contextlib.contextmanager
  def _locked(self) -> Iterator[None]:
    os.makedirs(self.reviews_dir, exist_ok=True)
    with open(os.path.join(self.reviews_dir, _LOCK_FILE), 'a') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      try:
        yield
      finally:
        fcntl.flock(lock, fcntl.LOCK_UN)

  def _path(self, review_id: str) -> str:
    if not review_id or os.sep in review_id or review_id.startswith('.'):
      raise ReviewStoreError(f'{review_id!r} is not a review ID; `vog-audit review list` shows them')
    return os.path.join(self.reviews_dir, review_id + RECORD_SUFFIX)

  def _write(self, record: Dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=self.reviews_dir, prefix='.tmp-', suffix=RECORD_SUFFIX)
    with os.fdopen(fd, 'w') as f:
      json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, self._path(record['review_id']))

  def _read_all(self) -> List[Dict]:
    if not os.path.isdir(self.reviews_dir):
      return []
    records = []
    for name in sorted(os.listdir(self.reviews_dir)):
      if name.endswith(RECORD_SUFFIX) and not name.startswith('.'):
        records.append(self._read(name[:-len(RECORD_SUFFIX)]))
    return records

  def _read(self, review_id: str) -> Dict:
    path = self._path(review_id)
    try:
      with open(path) as f:
        record = json.load(f)
    except FileNotFoundError:
      raise ReviewStoreError(
          f'no review {review_id!r} in {self.reviews_dir}; `vog-audit review list` shows the '
          'pending ones') from None
    except json.JSONDecodeError as e:
      raise ReviewStoreError(f'review file {path} is not valid JSON ({e}); delete it') from None
    if record.get('format_version') != FORMAT_VERSION:
      raise ReviewStoreError(
          f'review file {path} has format_version {record.get("format_version")!r}; this '
          f'version of vog-audit reads {FORMAT_VERSION}')
    return record

  def get(self, review_id: str) -> Dict:
    """Returns the record of `review_id`; refuses an unknown ID."""
    with self._locked():
      return self._read(review_id)

  def list(self, include_closed: bool = False) -> List[Dict]:
    """Returns the records, oldest first; closed ones only when asked for."""
    if not os.path.isdir(self.reviews_dir):
      return []  # looking must not create the folder
    with self._locked():
      records = self._read_all()
    records = [r for r in records if include_closed or not r.get('closed')]
    return sorted(records, key=lambda r: (r.get('created_at', ''), r['review_id']))

  def open_review(self, fingerprint: str, fields: Dict) -> Tuple[Dict, bool]:
    """Finds the open review for these inputs, or writes a new pending one.

    Args:
      fingerprint: identifies the question (pipeline, gate node and input artifacts).
      fields: what a new record holds besides the bookkeeping (backend, model, headline...).

    Returns:
      (record, resumed): `resumed` is True when an earlier execution had already opened it.
    """
    with self._locked():
      records = self._read_all()
      same = [r for r in records if r.get('fingerprint') == fingerprint]
      for record in same:
        if not record.get('closed'):
          return record, True
      record = dict(fields)
      record.update({
          'format_version': FORMAT_VERSION,
          'review_id': f'{fingerprint[:8]}-{len(same) + 1}',
          'fingerprint': fingerprint,
          'status': PENDING,
          'closed': False,
          'created_at': decision_lib.utc_now(),
          'slack_channel': fields.get('slack_channel', ''),
          'slack_thread_ts': '',
          'decision': None,
      })
      self._write(record)
      return record, False

  def update(self, review_id: str, change: Callable[[Dict], None]) -> Dict:
    """Applies `change` to the record in place under the lock and writes it back."""
    with self._locked():
      record = self._read(review_id)
      change(record)
      self._write(record)
      return record

  def answer(self, review_id: str, approve: bool, by: str, comment: str = '') -> Dict:
    """Records a person's answer to a pending local review.

    Refuses: an unknown ID; a review already answered or closed; a Slack review (answered
    in its thread); a reviewer who is not among the review's approvers.
    """
    by = (by or '').strip()
    if not by:
      raise ReviewStoreError('say who decides: pass --by NAME (one of the review\'s approvers)')

    def change(record: Dict) -> None:
      rid = record['review_id']
      if record.get('backend') != 'local':
        raise ReviewStoreError(
            f'review {rid} is a {record.get("backend")} review; answer it in Slack channel '
            f'{record.get("slack_channel")} (thread {record.get("slack_thread_ts") or "not posted"})')
      if record.get('closed'):
        raise ReviewStoreError(
            f'review {rid} is closed ({_closed_as(record)}); the pipeline has moved on - '
            'run it again to open a new review')
      if record['status'] != PENDING:
        prior = record.get('decision') or {}
        raise ReviewStoreError(
            f'review {rid} was already {record["status"]} by {prior.get("reviewer")} at '
            f'{prior.get("reviewed_at")}')
      approvers = record.get('approvers') or []
      if by not in approvers:
        raise ReviewStoreError(
            f'{by!r} is not an approver of review {rid}; approvers are: {", ".join(approvers)}')
      verdict = decision_lib.APPROVED if approve else decision_lib.REJECTED
      record['status'] = verdict
      record['decision'] = decision_lib.Decision(
          decision=verdict, backend='local', reviewer=by, comment=comment or '',
          reason=f'{verdict} by {by} with vog-audit review').to_json()

    return self.update(review_id, change)


def _closed_as(record: Dict) -> str:
  prior = record.get('decision') or {}
  return prior.get('decision') or record.get('status', 'unknown')


def default_reviews_dir(pipeline_root: str) -> str:
  """Where reviews live for a pipeline root: `<pipeline_root>/reviews`."""
  return os.path.join(pipeline_root, 'reviews')


def close(store: ReviewStore, review_id: str, outcome: decision_lib.Decision,
          slack_thread_ts: Optional[str] = None) -> Dict:
  """Marks a review as consumed by a gate execution, with the decision it ended on."""

  def change(record: Dict) -> None:
    record['closed'] = True
    record['decision'] = outcome.to_json()
    if outcome.decision in (decision_lib.APPROVED, decision_lib.REJECTED):
      record['status'] = outcome.decision
    if slack_thread_ts:
      record['slack_thread_ts'] = slack_thread_ts

  return store.update(review_id, change)
