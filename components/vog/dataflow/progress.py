"""How far a VoG audit has got: counted by Beam workers, drawn by `vog-audit score`.

Workers count into a `ProgressSink`; each process keeps its own totals and writes them
to its own small JSON file in the sink's local folder (atomic replace, a few times a
second at most). The command line polls that folder with a `ProgressBar` and draws one
line on the terminal: examples scored of the total, rate and time left.

    sink = ProgressSink(folder)                 # in the driver; pickled to workers
    sink.add(READ, records_in_file)             # in a DoFn, any thread or process
    sink.flush()                                # from finish_bundle / teardown

Kinds: READ (records read, once per finished input file), FILES (input files
finished) and SCORED (examples scored or quarantined). Progress is best effort:
failing to write it never fails the audit.
"""

import atexit
import collections
import gzip
import io
import json
import logging
import os
import shutil
import socket
import threading
import time
from typing import Callable, Deque, Dict, IO, Optional, Sequence, Tuple

READ = 'read'
FILES = 'files'
SCORED = 'scored'
KINDS = (READ, FILES, SCORED)

FILE_PREFIX = 'progress-'
FILE_SUFFIX = '.json'
# The gzip magic bytes, as TFRecord files compressed with GZIP begin.

_log = logging.getLogger(__name__)


class _ProcessCounts:
  """One process's counts for one sink folder, shared by every copy of the sink there."""

  def __init__(self, directory: str):
    self.pid = os.getpid()
    self.path = os.path.join(
        directory, f'{FILE_PREFIX}{socket.gethostname()}-{self.pid}{FILE_SUFFIX}')
    self.lock = threading.Lock()
    self.counts: Dict[str, int] = {}
    self.dirty = False
    self.last_write = float('-inf')
    self.failed = False

  def add(self, kind: str, n: int, min_interval_s: float) -> None:
    with self.lock:
      self.counts[kind] = self.counts.get(kind, 0) + n
      self.dirty = True
      if time.monotonic() - self.last_write >= min_interval_s:
        self._write()

  def flush(self) -> None:
    with self.lock:
      if self.dirty:
        self._write()

  def _write(self) -> None:
    """Replaces this process's file with the current counts; the lock is held."""
    self.last_write = time.monotonic()
    text = json.dumps({'host': socket.gethostname(), 'pid': self.pid,
                       'time': time.time(), 'counts': self.counts})
    temporary = f'{self.path}.tmp'
    try:
      with open(temporary, 'w') as f:
        f.write(text)
      os.replace(temporary, self.path)
      self.dirty = False
    except Exception as e:  # pylint: disable=broad-except
      if not self.failed:
        self.failed = True
        _log.debug('VoG progress cannot be written to %s (%s); the audit goes on '
                   'without it', self.path, e)


_registry: Dict[str, _ProcessCounts] = {}
_registry_lock = threading.Lock()


def _counts_for(directory: str) -> _ProcessCounts:
  with _registry_lock:
    counts = _registry.get(directory)
    if counts is None or counts.pid != os.getpid():
      counts = _registry[directory] = _ProcessCounts(directory)
    return counts


def _forget_after_fork() -> None:
  # A forked child starts its own counts (and file); its parent's stay with the parent.
  global _registry_lock
  _registry.clear()
  _registry_lock = threading.Lock()


def _flush_all() -> None:
  for counts in list(_registry.values()):
    if counts.pid == os.getpid():
      counts.flush()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(_flush_all)


class ProgressSink:
  """Where Beam workers on this machine count the audit's progress.

  Built in the driver from a local folder (created if missing) and pickled to the
  workers; it holds only the folder's path. Every copy in one process adds to that
  process's totals, which go to `progress-<host>-<pid>.json` in the folder at most
  every `min_interval_s` seconds, and on `flush()`. Never raises for a folder that
  cannot be written (that is logged once, at debug level).
  """

  def __init__(self, directory: str, min_interval_s: float = 0.25):
    self.directory = os.path.abspath(directory)
    self.min_interval_s = float(min_interval_s)
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as e:
      _log.debug('VoG progress folder %s cannot be created (%s)', self.directory, e)

  def add(self, kind: str, n: int = 1) -> None:
    """Counts `n` more of `kind` (READ, FILES or SCORED) for this process."""
    if n:
      _counts_for(self.directory).add(kind, int(n), self.min_interval_s)

  def flush(self) -> None:
    """Writes this process's counts now, if any changed since the last write."""
    _counts_for(self.directory).flush()

  def totals(self) -> Dict[str, int]:
    """Every process's counts, summed per kind (see `read_totals`)."""
    return read_totals(self.directory)

  def __repr__(self) -> str:
    return f'ProgressSink({self.directory!r})'


def read_totals(directory: str) -> Dict[str, int]:
  """{kind: count} summed over the progress files in `directory`; {} when there are none.

  A file that cannot be read or parsed is skipped (it is replaced whole, never
  half-written, so this only happens while the folder is being removed).
  """
  totals: Dict[str, int] = {}
  try:
    names = os.listdir(directory)
  except OSError:
    return totals
  for name in names:
    if not (name.startswith(FILE_PREFIX) and name.endswith(FILE_SUFFIX)):
      continue
    try:
      with open(os.path.join(directory, name)) as f:
        counts = json.load(f)['counts']
      for kind, n in counts.items():
        totals[kind] = totals.get(kind, 0) + int(n)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
      continue
  return totals


def estimate_records(files: Sequence[str], compression: Optional[str] = None,
                     sample_records: int = 1000) -> Optional[int]:
  """About how many TFRecords `files` hold, from their sizes and the first records.

  The mean record size is measured on the first records of the first file (read
  whole when it is small). `compression` is GZIP or UNCOMPRESSED; None sniffs the gzip
  magic bytes of the first file. Returns None when there are no files or they cannot
  be read; never raises for unreadable input.
  """
  if not files:
    return None
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
    sizes = [tf.io.gfile.stat(f).length for f in files]
    compression = compression or record_files.compression_of(files[0])
    dataset = tf.data.TFRecordDataset(files[0], compression_type=compression)
    records = [r.numpy() for r in dataset.take(sample_records)]
  except Exception as e:  # pylint: disable=broad-except
    _log.debug('cannot estimate the records of %s: %s', files[0], e)
    return None
  if not records:
    return 0 if sum(sizes) == 0 else None
  if len(records) < sample_records:  # The whole first file: its own bytes per record.
    bytes_per_record = sizes[0] / len(records)
  elif compression == 'GZIP':
    # 16 bytes of framing per record (length and checksums), which hardly compress.
    bytes_per_record = (len(gzip.compress(b''.join(records))) + 12 * len(records)) / len(
        records)
  else:
    bytes_per_record = sum(len(r) + 16 for r in records) / len(records)
  return max(len(records), int(round(sum(sizes) / bytes_per_record)))


def _duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}' if hours else f'{minutes}:{seconds:02d}'


def _rate(rate: float) -> str:
  return f'{rate:.1f}/s' if rate < 10 else f'{rate:.0f}/s'


class ProgressBar:
  """Draws an audit's progress on one terminal line while the audit runs.

  Polls the sink folder every `interval_s` seconds in a background thread and
  rewrites the line with `\\r`:

      scoring [#######-----------------]  2150/~7300 examples  412/s  0:12 left  files 1/4

  The total is the records read once all `num_files` input files are finished, and
  until then `estimated_total` (shown with `~`; see `estimate_records`), never less
  than what was already read or scored. The rate is taken over the last
  `window_s` seconds. Use as a context manager, or call start() and stop(); stop()
  draws the last line and ends it, also when the audit raised.
  """

  def __init__(self, directory: str, num_files: int, estimated_total: Optional[int] = None,
               stream: Optional[IO[str]] = None, interval_s: float = 0.5,
               window_s: float = 10.0, width: Optional[int] = None,
               clock: Callable[[], float] = time.monotonic):
    self.directory = directory
    self.num_files = int(num_files)
    self.estimated_total = estimated_total
    self.stream = stream
    self.interval_s = interval_s
    self.window_s = window_s
    self.width = width
    self._clock = clock
    self._samples: Deque[Tuple[float, int]] = collections.deque()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self._last_length = 0
    self._broken = False

  def _columns(self) -> int:
    if self.width:
      return self.width
    try:
      columns = os.get_terminal_size(self.stream.fileno()).columns
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
      columns = 0
    # A terminal that reports no size (a fresh pseudo-terminal) gets COLUMNS or 100.
    return columns or shutil.get_terminal_size(fallback=(100, 24)).columns

  def render(self, totals: Optional[Dict[str, int]] = None) -> str:
    """The line for `totals` (read from the folder when None), fitted to the width."""
    totals = read_totals(self.directory) if totals is None else totals
    read, files, scored = (totals.get(k, 0) for k in (READ, FILES, SCORED))
    exact = self.num_files > 0 and files >= self.num_files
    total = read if exact else max(self.estimated_total or 0, read, scored)

    now = self._clock()
    self._samples.append((now, scored))
    while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
      self._samples.popleft()
    first_time, first_scored = self._samples[0]
    rate = (scored - first_scored) / (now - first_time) if now > first_time else 0.0

    parts = ['scoring']
    if total:
      filled = int(24 * min(1.0, scored / total))
      parts[0] += f' [{"#" * filled}{"-" * (24 - filled)}]'
    parts.append(f'{scored}/{"" if exact else "~"}{total or "?"} examples')
    parts.append(_rate(rate) if scored and len(self._samples) > 1 else '-/s')
    if rate > 0 and total >= scored:
      parts.append(f'{_duration((total - scored) / rate)} left')
    parts.append(f'files {files}/{self.num_files}')
    line = '  '.join(parts)
    return line[:max(10, self._columns() - 1)]

  def draw(self, totals: Optional[Dict[str, int]] = None) -> None:
    """Rewrites the terminal line; a stream that fails stops the drawing, not the audit."""
    if self._broken or self.stream is None:
      return
    line = self.render(totals)
    try:
      self.stream.write('\r' + line + ' ' * max(0, self._last_length - len(line)))
      self.stream.flush()
    except (OSError, ValueError):
      self._broken = True
    self._last_length = len(line)

  def _run(self) -> None:
    while not self._stop.wait(self.interval_s):
      self.draw()

  def start(self) -> 'ProgressBar':
    self.draw()
    self._thread = threading.Thread(target=self._run, name='vog-progress', daemon=True)
    self._thread.start()
    return self

  def stop(self) -> None:
    """Stops polling, draws the final line and ends it with a newline. Idempotent."""
    if self._thread is None:
      return
    self._stop.set()
    self._thread.join()
    self._thread = None
    self.draw()
    if not self._broken and self.stream is not None:
      try:
        self.stream.write('\n')
        self.stream.flush()
      except (OSError, ValueError):
        pass

  def __enter__(self) -> 'ProgressBar':
    return self.start()

  def __exit__(self, *unused_exc_info) -> None:
    self.stop()
