"""Pending reviews on disk: written before anyone is asked, so a retried gate resumes.

One JSON file per review under `<pipeline_root>/reviews/` (or the gate's `reviews_dir`), each a
`review_record.ReviewRecord` (see that module for the fields and the schema). `status` is what
the approvers answered; `closed` is set once a gate execution has written its output, after
which a new execution with the same inputs opens a new review.

What the folder holds is input, not truth: whoever can write the folder can write a record, so
every read checks the record against the schema, and each backend re-checks what a decision
rests on (Slack reads its thread again; the local backend checks answers against the gate's
own approvers). Files that are not records this version wrote (damaged JSON, other tools'
files, a record under the wrong name, an unknown field) are skipped with a warning instead of
stopping the gate or `vog-audit review`.

Every change is a read-modify-write under an exclusive `flock` on `<reviews_dir>/.lock`; the
new version is written to a temporary file, fsynced, and renamed over the old one (then the
folder is fsynced), so readers never see half a file and need no lock, and an answer survives
a crash. Taking the lock needs only read access to `.lock`, so a reviewer who can only read it
can still hold it: every wait for the lock is bounded (by the gate's deadline, see
`wait_until`, or LOCK_WAIT_SECONDS for the command line) and ends in ReviewLockTimeout.
Records are created 0660 less the umask, so a reviewer in the same group can read them and,
with a group-writable folder, answer. The folder must be on a local or network POSIX file
system that honours `flock` and atomic `rename` (a local disk, NFSv4): object stores and their
FUSE mounts provide neither reliably, so do not put reviews there. The lock, the atomic write
and the bounded read are module functions (`lock_folder`, `write_json`, `read_json`), which the
analysts' verdicts (verdicts.py) keep their own folder with too.
"""

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from typing import Any, Callable, Iterator, List, Mapping, Optional, Tuple

from absl import logging

from components.review_gate import decision as decision_lib
from components.review_gate import review_record
from components.review_gate.review_record import PENDING
from components.review_gate.review_record import REVIEW_ID_EXAMPLE
from components.review_gate.review_record import REVIEW_ID_PATTERN
from components.review_gate.review_record import ReviewRecord

FORMAT_VERSION = review_record.FORMAT_VERSION
RECORD_SUFFIX = '.json'
RECORD_MODE = 0o660  # less the umask
MAX_RECORD_BYTES = 1 << 20
# The command line waits this long for the lock; the gate waits until its own deadline.
LOCK_WAIT_SECONDS = 10.0
# Past the gate's deadline it still waits this long, to close a review decided at the deadline.
LOCK_GRACE_SECONDS = 2.0
_LOCK_POLL_SECONDS = 0.05
_LOCK_FILE = '.lock'
_TMP_PREFIX = '.tmp-'


class ReviewStoreError(ValueError):
  """A review that does not exist, a folder that cannot be used, or an answer the review
  cannot take; the message says which and what to do."""


class ReviewLockTimeout(ReviewStoreError):
  """Another process held the reviews folder's lock for longer than this one may wait."""


def check_review_id(review_id) -> str:
  """Returns `review_id` when it is an ID the store hands out; refuses anything else.

  Refused with ReviewStoreError: non-strings, NUL bytes, path separators, dots, spaces, upper
  case, anything longer than a counter of six digits - none of it can name a record.
  """
  if not isinstance(review_id, str) or not REVIEW_ID_PATTERN.fullmatch(review_id):
    raise ReviewStoreError(
        f'{review_id!r} is not a review ID (IDs look like {REVIEW_ID_EXAMPLE}); '
        '`vog-audit review list` shows them')
  return review_id


def declared_state_fields(backend: str) -> Optional[Mapping[str, review_record.Field]]:
  """The state fields `backend` declares, or None for a backend this version does not have."""
  # Imported here: the backends import this module to keep their records.
  from components.review_gate import backends  # pylint: disable=g-import-not-at-top
  return backends.state_fields(backend)


class ReviewStore:
  """Reads and changes the review records in one folder.

  `skipped` lists (path, why) for every file the last listing passed over; each is also logged
  as a warning, once per file and reason.
  """

  def __init__(self, reviews_dir: str, *, lock_wait_seconds: Optional[float] = None):
    if '://' in reviews_dir:
      raise ReviewStoreError(
          f'reviews folder {reviews_dir} is not a local path; pending reviews need file locks '
          'and atomic renames, which object stores lack - set reviews_dir to a folder on a '
          'local disk or a POSIX network file system that every reviewer can reach')
    self.reviews_dir = reviews_dir
    self.skipped: List[Tuple[str, str]] = []
    self._warned = set()
    self._lock_wait_seconds = (LOCK_WAIT_SECONDS if lock_wait_seconds is None
                               else lock_wait_seconds)
    self._lock_deadline: Optional[float] = None

  def wait_until(self, monotonic_deadline: float) -> None:
    """Bounds every later wait for the lock by `monotonic_deadline` (`time.monotonic()` clock):
    the gate passes its review deadline, so nobody holding the lock can keep it past that
    (LOCK_GRACE_SECONDS excepted, to close a review decided at the deadline)."""
    self._lock_deadline = monotonic_deadline

  def _lock_limit(self) -> float:
    now = time.monotonic()
    if self._lock_deadline is None:
      return now + self._lock_wait_seconds
    return max(self._lock_deadline, now + LOCK_GRACE_SECONDS)

  def _locked(self):
    return lock_folder(self.reviews_dir, self._lock_limit())

  def _path(self, review_id: str) -> str:
    return os.path.join(self.reviews_dir, check_review_id(review_id) + RECORD_SUFFIX)

  def _write(self, record: ReviewRecord) -> None:
    """Writes `record` to a new file, fsyncs it, renames it into place and fsyncs the folder."""
    write_json(self.reviews_dir, self._path(record.review_id), record.to_json(),
               what=f'review {record.review_id}')

  def _skip(self, path: str, why: str) -> None:
    self.skipped.append((path, why))
    if (path, why) not in self._warned:  # once per file and reason, not once per poll
      self._warned.add((path, why))
      logging.warning('Review store: skipped %r: %s', path, why)

  def _read_all(self) -> List[ReviewRecord]:
    self.skipped = []
    try:
      names = sorted(os.listdir(self.reviews_dir))
    except FileNotFoundError:
      return []
    except OSError as e:
      raise ReviewStoreError(f'cannot list the reviews folder {self.reviews_dir} '
                             f'({os_reason(e)}); {_ACCESS_HINT}') from None
    records = []
    for name in names:
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

  def _read(self, review_id: str) -> ReviewRecord:
    """The checked record of `review_id`; ReviewStoreError naming the file when it is not one."""
    path = self._path(review_id)
    try:
      data = read_json(path)
    except FileNotFoundError:
      raise ReviewStoreError(
          f'no review {review_id!r} in {self.reviews_dir}; `vog-audit review list` shows the '
          'pending ones') from None
    try:
      return ReviewRecord.from_json(data, declared_state_fields, review_id)
    except review_record.RecordError as e:
      raise ReviewStoreError(f'review file {path} {e}') from None

  def get(self, review_id: str) -> ReviewRecord:
    """Returns the record of `review_id`; refuses a malformed or unknown ID and a bad file.

    Needs no lock: records are replaced by rename, so a read sees one whole version.
    """
    return self._read(check_review_id(review_id))

  def list(self, include_closed: bool = False) -> List[ReviewRecord]:
    """Returns the records, oldest first; closed ones only when asked for; bad files skipped."""
    records = [r for r in self._read_all() if include_closed or not r.closed]
    return sorted(records, key=lambda r: (r.created_at, r.review_id))

  def open_review(self, template: ReviewRecord) -> Tuple[ReviewRecord, bool]:
    """Finds the open review of the same question, or writes `template` as a new one.

    Args:
      template: the record to write when there is none: its fingerprint and backend identify
        the question; its review ID and creation time are set here.

    Returns:
      (record, resumed): `resumed` is True when an earlier execution had already opened it.
    """
    with self._locked():
      records = self._read_all()
      same = [r for r in records if r.fingerprint == template.fingerprint
              and r.backend == template.backend]
      for record in same:
        if not record.closed:
          return record, True
      taken = {r.review_id for r in records} | {
          os.path.basename(p)[:-len(RECORD_SUFFIX)] for p, _ in self.skipped}
      number = len(same) + 1
      while f'{template.fingerprint[:8]}-{number}' in taken:
        number += 1
      record = template.replace(review_id=f'{template.fingerprint[:8]}-{number}',
                                created_at=decision_lib.utc_now(), status=PENDING,
                                closed=False, decision=None)
      self._write(record)
      return record, False

  def update(self, review_id: str,
             change: Callable[[ReviewRecord], ReviewRecord]) -> ReviewRecord:
    """Replaces the record of `review_id` by `change(record)` under the lock."""
    check_review_id(review_id)
    with self._locked():
      record = change(self._read(review_id))
      if record.review_id != review_id:
        raise ValueError(f'a change may not rename review {review_id}')
      self._write(record)
      return record


_ACCESS_HINT = ('the gate and everyone who answers local reviews need read and write access to '
                'the reviews folder')


def os_reason(error: OSError) -> str:
  """What the OS said went wrong, for a one-line message."""
  return error.strerror or str(error) or type(error).__name__


@contextlib.contextmanager
def lock_folder(folder: str, limit: float, *, noun: str = 'reviews folder',
                hint: str = _ACCESS_HINT) -> Iterator[None]:
  """Holds the exclusive `flock` on `<folder>/.lock` (making both when missing).

  Waits for it until `limit` (a `time.monotonic()` time) at most, then raises
  ReviewLockTimeout; other failures are ReviewStoreError naming `noun` and adding `hint`.
  """
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise ReviewStoreError(f'cannot create the {noun} {folder} ({os_reason(e)}); {hint}'
                           ) from None
  path = os.path.join(folder, _LOCK_FILE)
  try:
    # Read-only is enough for flock, so a reviewer who may only read the lock file can lock.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, RECORD_MODE)
  except OSError as e:
    raise ReviewStoreError(f'cannot open the lock file {path} ({os_reason(e)}); {hint}'
                           ) from None
  try:
    _acquire(fd, path, limit, noun)
    yield
  finally:
    os.close(fd)  # releases the lock


def _acquire(fd: int, path: str, limit: float, noun: str) -> None:
  started = time.monotonic()
  while True:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise ReviewStoreError(f'cannot lock {path} ({os_reason(e)}); the {noun} must be on a '
                               'file system with flock (a local disk, NFSv4)') from None
    remaining = limit - time.monotonic()
    if remaining <= 0:
      raise ReviewLockTimeout(
          f'another process held the lock {path} for {time.monotonic() - started:.1f}s, '
          'as long as this one may wait; find who holds it (e.g. `fuser -v '
          f'{path}`) and try again')
    time.sleep(min(_LOCK_POLL_SECONDS, remaining))


def write_json(folder: str, path: str, data, *, what: str, hint: str = _ACCESS_HINT) -> None:
  """Writes `data` as JSON to a new file in `folder`, fsyncs it, renames it to `path` (in
  `folder`) and fsyncs the folder; a failure is ReviewStoreError 'cannot write <what> ...'.

  Call it holding `lock_folder`: the rename replaces whatever `path` was.
  """
  tmp = os.path.join(folder, f'{_TMP_PREFIX}{secrets.token_hex(8)}{RECORD_SUFFIX}')
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, RECORD_MODE)
  except OSError as e:
    raise ReviewStoreError(f'cannot write {what} in {folder} ({os_reason(e)}); {hint}'
                           ) from None
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      json.dump(data, f, indent=1, sort_keys=True, allow_nan=False)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(e, OSError):
      raise ReviewStoreError(f'cannot write {what} in {folder} ({os_reason(e)}); {hint}'
                             ) from None
    raise
  try:
    folder_fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(folder_fd)
    finally:
      os.close(folder_fd)
  except OSError as e:  # the record is in place; only its durability is in question
    logging.warning('Review store: could not fsync %s (%s)', folder, os_reason(e))


def read_json(path: str, *, what: str = 'review file', noun: str = 'reviews folder',
              max_bytes: int = MAX_RECORD_BYTES, follow_symlinks: bool = True) -> Any:
  """The parsed JSON of the file at `path`, read whole up to `max_bytes`.

  Raises FileNotFoundError for a missing file, and ReviewStoreError ('<what> <path> is ...;
  move it out of the <noun>') for one that cannot be read, is larger, is not UTF-8 or not
  JSON. With follow_symlinks=False a symbolic link or anything but a regular file (a FIFO
  would block the reader) is refused too.
  """
  move = f'move it out of the {noun}'
  flags = os.O_RDONLY if follow_symlinks else os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
  try:
    fd = os.open(path, flags)
  except FileNotFoundError:
    raise
  except OSError as e:
    why = ('is a symbolic link' if e.errno == errno.ELOOP and not follow_symlinks
           else f'cannot be read ({os_reason(e)})')
    raise ReviewStoreError(f'{what} {path} {why}; {move}') from None
  try:
    if not follow_symlinks and not stat.S_ISREG(os.fstat(fd).st_mode):
      raise ReviewStoreError(f'{what} {path} is not a regular file; {move}')
    with os.fdopen(fd, 'rb') as f:
      fd = -1
      raw = f.read(max_bytes + 1)
  except OSError as e:
    raise ReviewStoreError(f'{what} {path} cannot be read ({os_reason(e)}); {move}') from None
  finally:
    if fd >= 0:
      os.close(fd)
  if len(raw) > max_bytes:
    raise ReviewStoreError(f'{what} {path} is larger than {max_bytes} bytes; {move}')
  try:
    return json.loads(raw.decode('utf-8'))
  except UnicodeDecodeError:
    raise ReviewStoreError(f'{what} {path} is not UTF-8 text; {move}') from None
  except (ValueError, RecursionError) as e:
    raise ReviewStoreError(f'{what} {path} is not valid JSON ({e}); {move}') from None


def _why(error: ReviewStoreError, path: str) -> str:
  """The error's message without the leading 'review file <path> ', for 'skipped <path>: why'."""
  text = str(error)
  prefix = f'review file {path} '
  return text[len(prefix):] if text.startswith(prefix) else text


def default_reviews_dir(pipeline_root: str) -> str:
  """Where reviews live for a pipeline root: `<pipeline_root>/reviews`."""
  return os.path.join(pipeline_root, 'reviews')


def close(store: ReviewStore, review_id: str, outcome: decision_lib.Decision) -> ReviewRecord:
  """Marks a review as consumed by a gate execution, with the decision it ended on."""

  def change(record: ReviewRecord) -> ReviewRecord:
    status = outcome.decision if outcome.decision in review_record.ANSWERED else record.status
    return record.replace(closed=True, decision=outcome, status=status)

  return store.update(review_id, change)

