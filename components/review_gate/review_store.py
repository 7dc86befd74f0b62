"""Pending reviews on disk: written before anyone is asked, so a retried gate resumes.

One JSON file per review under `<pipeline_root>/reviews/` (or the gate's `reviews_dir`):

    {"format_version": 1, "review_id": "3fa9c21b-1", "fingerprint": "<sha256 of the inputs>",
     "status": "pending" | "approved" | "rejected", "closed": false, "backend": "slack",
     "created_at": "...", "deadline_at": <epoch seconds>, "timeout_seconds": 14400.0,
     "pipeline": "...", "node_id": "...", "model_uri": "...", "report_uri": "...",
     "approvers": [...], "headline": {...}, "slack_channel": "...", "slack_thread_ts": "...",
     "decision": null | {...}}

`status` is what a person answered; `closed` is set once a gate execution has written its
output, after which a new execution with the same inputs opens a new review. `deadline_at` is
fixed when the review is opened; a resumed execution keeps it.

What the folder holds is input, not truth: whoever can write the folder can write a record, so
the gate verifies a decision before it counts (see `verified_decision`), and files that are not
records this version wrote (damaged JSON, other tools' files, a record under the wrong name)
are skipped with a warning instead of stopping the gate or `vog-audit review`.

Every change is a read-modify-write under an exclusive `flock` on `<reviews_dir>/.lock`; the
new version is written to a temporary file, fsynced, and renamed over the old one (then the
folder is fsynced), so the command line and a waiting gate never see half a file and an
answer survives a crash. Records are created 0660 less the umask, so a reviewer in the same
group can read them and, with a group-writable folder, answer. The folder must be on a local
or network POSIX file system that honours `flock` and atomic `rename` (a local disk, NFSv4):
object stores and their FUSE mounts provide neither reliably, so do not put reviews there.
"""

import contextlib
import fcntl
import json
import os
import re
import secrets
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from absl import logging

from components.review_gate import decision as decision_lib

FORMAT_VERSION = 1
PENDING = 'pending'
ANSWERED = (decision_lib.APPROVED, decision_lib.REJECTED)
STATUSES = (PENDING,) + ANSWERED
RECORD_SUFFIX = '.json'
RECORD_MODE = 0o660  # less the umask
# What `open_review` hands out: 8 hex digits of the fingerprint, a dash, a counter.
REVIEW_ID_PATTERN = re.compile(r'[0-9a-f]{8}-[1-9][0-9]{0,5}')
REVIEW_ID_EXAMPLE = '3fa9c21b-1'
_LOCK_FILE = '.lock'
_TMP_PREFIX = '.tmp-'
# Field -> the types a record this version wrote holds there.
_FIELD_TYPES = {
    'review_id': (str,), 'fingerprint': (str,), 'status': (str,), 'closed': (bool,),
    'backend': (str,), 'created_at': (str,), 'approvers': (list,),
    'decision': (dict, type(None)),
}


class ReviewStoreError(ValueError):
  """A review that does not exist, or an answer the review cannot take."""


def check_review_id(review_id: Any) -> str:
  """Returns `review_id` when it is an ID the store hands out; refuses anything else.

  Refused with ReviewStoreError: non-strings, NUL bytes, path separators, dots, spaces, upper
  case, anything longer than a counter of six digits - none of it can name a record.
  """
  if not isinstance(review_id, str) or not REVIEW_ID_PATTERN.fullmatch(review_id):
    raise ReviewStoreError(
        f'{review_id!r} is not a review ID (IDs look like {REVIEW_ID_EXAMPLE}); '
        '`vog-audit review list` shows them')
  return review_id


class ReviewStore:
  """Reads and changes the review records in one folder.

  `skipped` lists (path, why) for every file the last read passed over; each is also logged
  as a warning.
  """

  def __init__(self, reviews_dir: str):
    if '://' in reviews_dir:
      raise ReviewStoreError(
          f'reviews folder {reviews_dir} is not a local path; pending reviews need file locks '
          'and atomic renames, which object stores lack - set reviews_dir to a folder on a '
          'local disk or a POSIX network file system that every reviewer can reach')
    self.reviews_dir = reviews_dir
    self.skipped: List[Tuple[str, str]] = []
    self._warned = set()

  @contextlib.contextmanager
  def _locked(self) -> Iterator[None]:
    os.makedirs(self.reviews_dir, exist_ok=True)
    # Read-only is enough for flock, so a reviewer who may only read the lock file can lock.
    fd = os.open(os.path.join(self.reviews_dir, _LOCK_FILE), os.O_RDONLY | os.O_CREAT,
                 RECORD_MODE)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX)
      yield
    finally:
      os.close(fd)  # releases the lock

  def _path(self, review_id: str) -> str:
    return os.path.join(self.reviews_dir, check_review_id(review_id) + RECORD_SUFFIX)

  def _write(self, record: Dict) -> None:
    """Writes `record` to a new file, fsyncs it, renames it into place and fsyncs the folder."""
    path = self._path(record['review_id'])
    tmp = os.path.join(self.reviews_dir, f'{_TMP_PREFIX}{secrets.token_hex(8)}{RECORD_SUFFIX}')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, RECORD_MODE)
    try:
      with os.fdopen(fd, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
      raise
    folder = os.open(self.reviews_dir, os.O_RDONLY)
    try:
      os.fsync(folder)
    finally:
      os.close(folder)

  def _skip(self, path: str, why: str) -> None:
    self.skipped.append((path, why))
    if (path, why) not in self._warned:  # once per file and reason, not once per poll
      self._warned.add((path, why))
      logging.warning('Review store: skipped %s: %s', path, why)

  def _read_all(self) -> List[Dict]:
    self.skipped = []
    if not os.path.isdir(self.reviews_dir):
      return []
    records = []
    for name in sorted(os.listdir(self.reviews_dir)):
      if not name.endswith(RECORD_SUFFIX) or name.startswith('.'):
        continue
      path = os.path.join(self.reviews_dir, name)
      review_id = name[:-len(RECORD_SUFFIX)]
      if not REVIEW_ID_PATTERN.fullmatch(review_id):
        self._skip(path, f'its name is not a review ID (like {REVIEW_ID_EXAMPLE}.json)')
        continue
      try:
        records.append(self._read(review_id))
      except ReviewStoreError as e:
        self._skip(path, _why(e, path))
    return records

  def _read(self, review_id: str) -> Dict:
    """The checked record of `review_id`; ReviewStoreError naming the file when it is not one."""
    path = self._path(review_id)
    try:
      with open(path, encoding='utf-8') as f:
        record = json.load(f)
    except FileNotFoundError:
      raise ReviewStoreError(
          f'no review {review_id!r} in {self.reviews_dir}; `vog-audit review list` shows the '
          'pending ones') from None
    except json.JSONDecodeError as e:
      raise ReviewStoreError(
          f'review file {path} is not valid JSON ({e}); move it out of the reviews folder'
      ) from None
    except (UnicodeDecodeError, OSError) as e:
      reason = 'is not UTF-8 text' if isinstance(e, UnicodeDecodeError) else (
          f'cannot be read ({e.strerror or e})')
      raise ReviewStoreError(
          f'review file {path} {reason}; move it out of the reviews folder') from None
    problem = _record_problem(record, review_id)
    if problem:
      raise ReviewStoreError(f'review file {path} {problem}')
    return record

  def get(self, review_id: str) -> Dict:
    """Returns the record of `review_id`; refuses a malformed or unknown ID and a bad file."""
    check_review_id(review_id)
    with self._locked():
      return self._read(review_id)

  def list(self, include_closed: bool = False) -> List[Dict]:
    """Returns the records, oldest first; closed ones only when asked for; bad files skipped."""
    if not os.path.isdir(self.reviews_dir):
      return []  # looking must not create the folder
    with self._locked():
      records = self._read_all()
    records = [r for r in records if include_closed or not r.get('closed')]
    return sorted(records, key=lambda r: (r['created_at'], r['review_id']))

  def open_review(self, fingerprint: str, fields: Dict,
                  timeout_seconds: Optional[float] = None) -> Tuple[Dict, bool]:
    """Finds the open review for these inputs, or writes a new pending one.

    Args:
      fingerprint: identifies the question (pipeline, gate node and input artifacts).
      fields: what a new record holds besides the bookkeeping (backend, model, headline...).
      timeout_seconds: how long the review may take; a new record's `deadline_at` is now plus
        this, and a resumed record keeps its own deadline.

    Returns:
      (record, resumed): `resumed` is True when an earlier execution had already opened it.
    """
    with self._locked():
      records = self._read_all()
      same = [r for r in records if r.get('fingerprint') == fingerprint]
      for record in same:
        if not record.get('closed'):
          return record, True
      taken = {r['review_id'] for r in records} | {
          os.path.basename(p)[:-len(RECORD_SUFFIX)] for p, _ in self.skipped}
      number = len(same) + 1
      while f'{fingerprint[:8]}-{number}' in taken:
        number += 1
      now = time.time()
      record = dict(fields)
      record.update({
          'format_version': FORMAT_VERSION,
          'review_id': f'{fingerprint[:8]}-{number}',
          'fingerprint': fingerprint,
          'status': PENDING,
          'closed': False,
          'created_at': decision_lib.utc_now(),
          'slack_channel': fields.get('slack_channel', ''),
          'slack_thread_ts': '',
          'decision': None,
      })
      if timeout_seconds is not None:
        record['timeout_seconds'] = float(timeout_seconds)
        record['deadline_at'] = now + float(timeout_seconds)
      self._write(record)
      return record, False

  def update(self, review_id: str, change: Callable[[Dict], None]) -> Dict:
    """Applies `change` to the record in place under the lock and writes it back."""
    check_review_id(review_id)
    with self._locked():
      record = self._read(review_id)
      change(record)
      self._write(record)
      return record

  def answer(self, review_id: str, approve: bool, by: str, comment: str = '') -> Dict:
    """Records a person's answer to a pending local review.

    Refuses: a malformed or unknown ID; a review already answered or closed; a Slack review
    (answered in its thread); a reviewer who is not among the review's approvers; an answer
    after the review's deadline. The gate checks the answer again against its own approvers.
    """
    by = (by or '').strip()
    if not by:
      raise ReviewStoreError('say who decides: pass --by NAME (one of the review\'s approvers)')
    check_review_id(review_id)

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
      deadline = deadline_of(record)
      if deadline is not None and time.time() > deadline:
        raise ReviewStoreError(
            f'review {rid} ran out of time at {decision_lib.iso_time(deadline)}; the gate does '
            'not bless on it - run the pipeline again to open a new review')
      verdict = decision_lib.APPROVED if approve else decision_lib.REJECTED
      record['status'] = verdict
      record['decision'] = decision_lib.Decision(
          decision=verdict, backend='local', reviewer=by, comment=comment or '',
          reason=f'{verdict} by {by} with vog-audit review').to_json()

    return self.update(review_id, change)


def deadline_of(record: Dict) -> Optional[float]:
  """The record's `deadline_at` in epoch seconds, or None when it has none (or a bad one)."""
  value = record.get('deadline_at')
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value)


def verified_decision(record: Dict, backend: str,
                      approvers: List[str]) -> Tuple[Optional[decision_lib.Decision], str]:
  """The record's answer if the gate can take it, else (None, why it does not count).

  A stored answer counts only when the record is a review of `backend`, the answer was given
  for `backend`, it is an approval or a rejection that matches the record's status, and the
  reviewer is in `approvers` - the gate's own list, not the one written in the record. A Slack
  answer never counts from the file: the gate reads it from the thread. (None, '') means
  nobody has answered yet.
  """
  stored = record.get('decision')
  if record.get('status') == PENDING and not stored:
    return None, ''
  if backend == 'slack':
    return None, 'Slack decisions are read from the Slack thread, not from the reviews folder'
  if record.get('backend') != backend:
    return None, f'the record is a {record.get("backend")} review and the gate asks {backend}'
  if not isinstance(stored, dict):
    return None, f'the record says {record.get("status")!r} but holds no decision'
  try:
    outcome = decision_lib.Decision.from_json(stored)
  except (TypeError, ValueError) as e:
    return None, f'its decision cannot be read ({e})'
  if outcome.backend != backend:
    return None, f'the decision was given for the {outcome.backend} backend, not {backend}'
  if outcome.decision not in ANSWERED or outcome.decision != record.get('status'):
    return None, (f'its decision {outcome.decision!r} does not match its status '
                  f'{record.get("status")!r}')
  if outcome.reviewer not in approvers:
    return None, (f'{outcome.reviewer!r} is not one of the gate\'s approvers '
                  f'({", ".join(approvers)})')
  return outcome, ''


def _record_problem(record: Any, review_id: str) -> str:
  """Why `record` (read from `<review_id>.json`) is not a record this version wrote; '' if it is."""
  if not isinstance(record, dict):
    return f'is not a JSON object but a {type(record).__name__}'
  if record.get('format_version') != FORMAT_VERSION:
    return (f'has format_version {record.get("format_version")!r}; this version of vog-audit '
            f'reads {FORMAT_VERSION}')
  if 'review_id' not in record:
    return 'has no review_id'
  if record['review_id'] != review_id:
    return f'holds review {record["review_id"]!r}, not the {review_id!r} its name says'
  for field, types in _FIELD_TYPES.items():
    if field not in record:
      return f'has no {field}'
    if not isinstance(record[field], types):
      return f'has a {type(record[field]).__name__} for {field}'
  if record['status'] not in STATUSES:
    return f'has status {record["status"]!r}, not one of {", ".join(STATUSES)}'
  return ''


def _why(error: ReviewStoreError, path: str) -> str:
  """The error's message without the leading 'review file <path> ', for 'skipped <path>: why'."""
  text = str(error)
  prefix = f'review file {path} '
  return text[len(prefix):] if text.startswith(prefix) else text


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
    if outcome.decision in ANSWERED:
      record['status'] = outcome.decision
    if slack_thread_ts:
      record['slack_thread_ts'] = slack_thread_ts

  return store.update(review_id, change)
