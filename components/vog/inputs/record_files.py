"""TFRecord files: read in order with every record's framing and checksums verified,
and written whole under their final name.

TensorFlow's own record iterator ends quietly at a record cut short at the end of a
file, which would lose examples without a word. This reader names the damage instead:
the file, the record where reading stopped and its byte offset (in the uncompressed
stream for GZIP files). Files are read through `tf.io.gfile`, so gs:// and other file
systems work as local paths do.

A record on disk is: uint64 length, uint32 masked crc32c of the length, the data,
uint32 masked crc32c of the data (all little-endian). A record longer than the limit the
caller gives is not read into memory: its bytes are checked in bounded pieces and it
comes back as an `OversizedRecord`, so one huge record in a small gzip file cannot take
the worker's memory.

The other files an audit reads from outside (manifests, report summaries, a baseline's
history) go through `file_problem` and `read_json_file` first: only regular files within
a size limit are opened (a folder or a FIFO in their place is named, never read or
waited on), and JSON is parsed only when it nests within a depth limit.
"""

import gzip
import json
import os
import re
import stat
import struct
import uuid
import zlib
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Tuple, Union

import numpy as np

import google_crc32c
import tensorflow as tf

from components.vog.inputs import storage

GZIP_MAGIC = b'\x1f\x8b'
_HEADER = struct.Struct('<QI')
_FOOTER = struct.Struct('<I')
# A length past this is damage, not data: no tf.Example of this size is scored.
MAX_RECORD_BYTES = 1 << 31


class DamagedRecordFile(IOError):
  """A TFRecord file whose framing or checksums are wrong; says where reading stopped."""

  def __init__(self, path: str, record_index: int, offset: int, problem: str,
               compressed: bool = False):
    self.path, self.record_index, self.offset, self.problem = (path, record_index, offset,
                                                                problem)
    where = 'of the uncompressed stream' if compressed else 'of the file'
    super().__init__(f'{path} is damaged at record {record_index} (byte offset {offset} '
                     f'{where}): {problem}')


def _mask(crc: int) -> int:
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


def _masked_crc(data: bytes) -> int:
  return _mask(google_crc32c.value(data))


class OversizedRecord(NamedTuple):
  """A record that `read_records` checked but did not keep: `length` bytes, above
  the `limit` it was given."""
  length: int
  limit: int

  @property
  def detail(self) -> str:
    return (f'the record is {self.length:,} bytes, above the limit of {self.limit:,} '
            '(max_record_bytes); it was checked but not read into memory')


def compression_of(path: str) -> str:
  """GZIP when the file starts with the gzip magic bytes, else UNCOMPRESSED."""
  with tf.io.gfile.GFile(path, 'rb') as f:
    return 'GZIP' if f.read(2) == GZIP_MAGIC else 'UNCOMPRESSED'


# The reader takes the stream in blocks of this many (uncompressed) bytes and cuts the
# records out of each block: one stream read per block instead of three per record.
READ_BLOCK_BYTES = 1 << 20


def read_records(path: str, compression: Optional[str],
                 max_record_bytes: Optional[int] = None
                 ) -> Iterator[Tuple[int, Union[bytes, OversizedRecord]]]:
  """(record index, bytes) of one TFRecord file, in order.

  `compression` is GZIP or UNCOMPRESSED; None finds it from the file's first bytes in
  the same open (no second round trip to the storage). Raises DamagedRecordFile where the file's
  framing, a checksum or the gzip stream is broken; the records before it are yielded.
  The stream is read ahead by at most one block (READ_BLOCK_BYTES) beyond the record
  being yielded. A record longer than `max_record_bytes` (None: no limit below
  MAX_RECORD_BYTES) is passed over a block at a time, its checksum verified, and
  yielded as an OversizedRecord instead of its bytes.
  """
  compressed = compression == 'GZIP'
  index = offset = 0

  def damaged(problem: str) -> DamagedRecordFile:
    return DamagedRecordFile(path, index, offset, problem, compressed)

  with tf.io.gfile.GFile(path, 'rb') as raw:
    if compression is None:
      compressed = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
      raw.seek(0)
    stream = gzip.GzipFile(fileobj=raw, mode='rb') if compressed else raw
    buf, pos = b'', 0
    broken: Optional[BaseException] = None
    ended = False

    def have(need: int) -> bool:
      """Whether `need` bytes from `pos` are in `buf`, reading blocks until they are
      or the stream ends (or breaks: `broken`)."""
      nonlocal buf, pos, broken, ended
      if len(buf) - pos >= need:
        return True
      pieces, held = [buf[pos:]], len(buf) - pos
      while held < need and not ended:
        try:
          block = stream.read(max(READ_BLOCK_BYTES, need - held))
        except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
          broken, ended = e, True
          break
        if not block:
          ended = True
          break
        pieces.append(block)
        held += len(block)
      buf, pos = b''.join(pieces), 0
      return held >= need

    while True:
      if not have(_HEADER.size):
        if broken is not None:
          raise damaged(f'the gzip stream is broken ({broken})')
        if len(buf) == pos:
          return
        raise damaged('the file ends inside a record header')
      length, length_crc = _HEADER.unpack_from(buf, pos)
      if _masked_crc(buf[pos:pos + 8]) != length_crc:
        raise damaged('the record length fails its checksum')
      if length > MAX_RECORD_BYTES:
        raise damaged(f'a record claims {length} bytes')
      size = _HEADER.size + length + _FOOTER.size
      if max_record_bytes is not None and length > max_record_bytes:
        # Passed over a block at a time: never more than a block of it is held.
        pos += _HEADER.size
        crc, left = 0, length
        while left:
          if pos == len(buf) and not have(1):
            if broken is not None:
              raise damaged(f'the gzip stream is broken ({broken})')
            raise damaged('the file ends inside a record')
          piece = buf[pos:pos + left]
          crc = google_crc32c.extend(crc, piece)
          pos += len(piece)
          left -= len(piece)
        if not have(_FOOTER.size):
          if broken is not None:
            raise damaged(f'the gzip stream is broken ({broken})')
          raise damaged('the file ends inside a record')
        if _mask(crc) != _FOOTER.unpack_from(buf, pos)[0]:
          raise damaged('the record data fails its checksum')
        pos += _FOOTER.size
        yield index, OversizedRecord(length, max_record_bytes)
        index += 1
        offset += size
        continue
      if not have(size):
        if broken is not None:
          raise damaged(f'the gzip stream is broken ({broken})')
        raise damaged('the file ends inside a record')
      start = pos + _HEADER.size
      data = buf[start:start + length]
      if _masked_crc(data) != _FOOTER.unpack_from(buf, start + length)[0]:
        raise damaged('the record data fails its checksum')
      pos += size
      yield index, data
      index += 1
      offset += size


def frame(data: bytes) -> bytes:
  """One record as it is stored: length, its checksum, the data, its checksum."""
  length = struct.pack('<Q', len(data))
  return (length + struct.pack('<I', _masked_crc(length)) + data +
          struct.pack('<I', _masked_crc(data)))


# The folder, under the root of what an audit writes, that holds its files while they
# are written. No output pattern matches it (`Split-*/*`, `quarantine-*.jsonl`,
# `score_table/*/*`), so a file a killed worker left there is never read as output; the
# audit removes the folder once it has published.
TEMP_FOLDER = '.writing'


def temp_folder(root: str) -> str:
  """Where the files written under `root` are written before they are renamed."""
  return os.path.join(root, TEMP_FOLDER)


class AtomicFile:
  """A file written under a temporary name and renamed into place on `commit()`.

  A writer that dies leaves only a temporary file behind, never a half-written file
  under the final name; a retry that writes the same path replaces it whole.
  `gzip_level` (1-9) compresses what is written, as a GZIP TFRecord file is.
  `temp_dir` is where the temporary file is written (temp_folder of the output's root,
  outside every pattern that reads the output); by default beside `path`.
  """

  def __init__(self, path: str, gzip_level: Optional[int] = None,
               temp_dir: Optional[str] = None):
    self.path = path
    name = f'{os.path.basename(path)}.tmp-{uuid.uuid4().hex[:12]}'
    if temp_dir is None:
      self._temp = os.path.join(os.path.dirname(path), name)
    else:
      self._temp = os.path.join(temp_dir, name)
      tf.io.gfile.makedirs(temp_dir)
    tf.io.gfile.makedirs(os.path.dirname(path) or '.')
    self._raw = tf.io.gfile.GFile(self._temp, 'wb')
    self._raw.write(b'')  # GFile creates the file only once something is written.
    self._stream = (gzip.GzipFile(fileobj=self._raw, mode='wb', compresslevel=gzip_level,
                                  mtime=0)
                    if gzip_level else self._raw)

  def write(self, data: bytes) -> None:
    self._stream.write(data)

  def commit(self) -> None:
    if self._stream is not self._raw:
      self._stream.close()
    self._raw.close()
    tf.io.gfile.rename(self._temp, self.path, overwrite=True)

  def abandon(self) -> None:
    for handle in (self._stream, self._raw):
      try:
        handle.close()
      except Exception:  # pylint: disable=broad-except
        pass
    if tf.io.gfile.exists(self._temp):
      tf.io.gfile.remove(self._temp)

  def __enter__(self) -> 'AtomicFile':
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.commit()
    else:
      self.abandon()


def write_lines(path: str, lines: Iterable[str], gzip_level: Optional[int] = None,
                temp_dir: Optional[str] = None) -> None:
  """Writes text lines, one per line, whole under `path` (an AtomicFile written in
  `temp_dir`)."""
  with AtomicFile(path, gzip_level, temp_dir) as out:
    for line in lines:
      out.write(line.encode('utf-8') + b'\n')


class UnreadableFile(ValueError):
  """A file read from outside that is not a regular file within its limits, or whose
  JSON is invalid or nests too deep; the message names the file and the problem."""


def file_problem(path: str, max_bytes: Optional[int] = None) -> Optional[str]:
  """Why `path` cannot be read as a regular file of at most `max_bytes`, or None.

  Checked without opening it: a FIFO, socket or device would block or never end, and
  a folder fails in TensorFlow's file reader with a traceback. A remote path (gs://)
  is judged by its size and whether it is a folder.
  """
  try:
    if not storage.is_local(path):
      info = tf.io.gfile.stat(path)
      if info.is_directory:
        return f'{path} is a folder, not a file'
      size = info.length
    else:
      info = os.stat(storage.local_path(path))  # file:// too: a FIFO there blocks as well
      if stat.S_ISDIR(info.st_mode):
        return f'{path} is a folder, not a file'
      if not stat.S_ISREG(info.st_mode):
        return f'{path} is not a regular file (a FIFO, socket or device is never read)'
      size = info.st_size
  except (OSError, tf.errors.OpError) as e:
    message = getattr(e, 'strerror', None) or getattr(e, 'message', None) or str(e)
    return f'{path} cannot be read ({message})'
  if max_bytes is not None and size > max_bytes:
    return f'{path} is {size:,} bytes, above the limit of {max_bytes:,} for this file'
  return None


def read_bounded(path: str, max_bytes: int) -> bytes:
  """The bytes of the regular file `path`, of at most `max_bytes`; UnreadableFile
  naming the problem otherwise (never opening a FIFO or a folder)."""
  problem = file_problem(path, max_bytes)
  if problem is not None:
    raise UnreadableFile(problem)
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = f.read(max_bytes + 1)
  except (OSError, tf.errors.OpError) as e:
    message = getattr(e, 'strerror', None) or getattr(e, 'message', None) or str(e)
    raise UnreadableFile(f'{path} cannot be read ({message})') from None
  if len(data) > max_bytes:  # it grew since it was checked
    raise UnreadableFile(f'{path} is above the limit of {max_bytes:,} bytes for this file')
  return data


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def json_depth(data: bytes) -> int:
  """How deep the arrays and objects of JSON text nest (0 for a plain value), counted
  on the bytes without parsing them, so that text nested too deep for the parser can
  be refused before it is parsed. Brackets inside strings do not count."""
  codes = np.frombuffer(_JSON_STRING.sub(b'""', data), dtype=np.uint8)
  opens = (codes == ord('[')) | (codes == ord('{'))
  closes = (codes == ord(']')) | (codes == ord('}'))
  if not opens.any():
    return 0
  return int(np.cumsum(opens.astype(np.int64) - closes).max())


def read_json_file(path: str, max_bytes: int, max_depth: int) -> Any:
  """The parsed JSON of the regular file `path`, read within `max_bytes` and parsed
  only when it nests at most `max_depth` deep; UnreadableFile naming the problem
  otherwise (not a regular file, too large, too deep, not UTF-8 JSON)."""
  data = read_bounded(path, max_bytes)
  depth = json_depth(data)
  if depth > max_depth:
    raise UnreadableFile(f'{path} nests {depth} levels deep, more than the {max_depth} '
                         'this file ever has')
  try:
    return json.loads(data)
  except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError
    raise UnreadableFile(f'{path} is not valid JSON ({e})') from None
