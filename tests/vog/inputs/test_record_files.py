"""The TFRecord reader: the same records TensorFlow wrote, and damage named, never skipped."""

import gzip
import os
import re
import tracemalloc

import pytest
import tensorflow as tf

from components.vog.inputs import record_files
import fixtures

RECORDS = [b'first', b'', b'x' * 3000, b'last']


@pytest.mark.parametrize('gzipped', [True, False])
def test_reads_what_tensorflow_wrote(tmp_path, gzipped):
  path = fixtures.write_records(str(tmp_path / 'data'), RECORDS, gzip=gzipped)
  assert record_files.compression_of(path) == ('GZIP' if gzipped else 'UNCOMPRESSED')
  got = list(record_files.read_records(path, record_files.compression_of(path)))
  assert got == list(enumerate(RECORDS))



@pytest.mark.parametrize('block', [1, 7, 4096, 1 << 20])
@pytest.mark.parametrize('gzipped', [True, False])
def test_records_across_read_blocks_are_read_whole(tmp_path, monkeypatch, gzipped, block):
  # Blocks smaller than a header, than a record, and larger than the file: each record
  # comes back whole, one of 3 MB included, wherever the block boundaries fall.
  records = [bytes([i % 251]) * (i % 37) for i in range(2000)] + [b'y' * (3 << 20), b'z']
  if block == 1:
    records = records[:200] + records[-2:]
  path = fixtures.write_records(str(tmp_path / 'data'), records, gzip=gzipped)
  monkeypatch.setattr(record_files, 'READ_BLOCK_BYTES', block)
  got = list(record_files.read_records(path, record_files.compression_of(path)))
  assert got == list(enumerate(records))


def _damaged(path, compression, **limit):
  got = []
  with pytest.raises(record_files.DamagedRecordFile) as caught:
    for item in record_files.read_records(path, compression, **limit):
      got.append(item)
  return got, caught.value


def test_a_record_cut_short_at_the_end_is_damage(tmp_path):
  path = fixtures.write_records(str(tmp_path / 'data'), RECORDS, gzip=False)
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:-2])
  got, error = _damaged(path, 'UNCOMPRESSED')
  assert [r for _, r in got] == RECORDS[:3]
  assert (error.record_index, error.offset) == (3, 3 * 16 + 5 + 0 + 3000)
  assert 'ends inside a record' in str(error) and path in str(error)


def test_flipped_bytes_fail_the_checksum(tmp_path):
  path = fixtures.write_records(str(tmp_path / 'data'), RECORDS, gzip=False)
  data = bytearray(open(path, 'rb').read())
  data[16 + 5 + 16 + 16 + 100] ^= 0xFF  # inside the third record's data
  open(path, 'wb').write(bytes(data))
  got, error = _damaged(path, 'UNCOMPRESSED')
  assert len(got) == 2 and error.record_index == 2
  assert 'fails its checksum' in str(error)


def test_a_truncated_gzip_stream_is_damage(tmp_path):
  path = fixtures.write_records(str(tmp_path / 'data.gz'), RECORDS * 50, gzip=True)
  data = open(path, 'rb').read()
  open(path, 'wb').write(data[:len(data) // 2])
  got, error = _damaged(path, 'GZIP')
  assert len(got) < len(RECORDS) * 50
  assert error.record_index == len(got)
  assert 'uncompressed stream' in str(error)


def test_a_file_that_is_not_a_tfrecord_is_damage(tmp_path):
  path = str(tmp_path / 'notes.txt')
  open(path, 'w').write('these are not records, just text that goes on for a while\n')
  got, error = _damaged(path, 'UNCOMPRESSED')
  assert got == [] and error.record_index == 0


def test_gzip_of_garbage_is_damage(tmp_path):
  path = str(tmp_path / 'garbage.gz')
  with gzip.open(path, 'wb') as f:
    f.write(b'\x01' * 40)
  _, error = _damaged(path, 'GZIP')
  assert error.record_index == 0


def test_atomic_file_writes_whole_files_even_empty_ones(tmp_path):
  path = str(tmp_path / 'sub' / 'out.gz')
  with record_files.AtomicFile(path, gzip_level=1) as out:
    for r in RECORDS:
      out.write(record_files.frame(r))
  assert list(record_files.read_records(path, 'GZIP')) == list(enumerate(RECORDS))
  assert [r.numpy() for r in tf.data.TFRecordDataset(path, 'GZIP')] == RECORDS
  empty = str(tmp_path / 'empty.jsonl')
  with record_files.AtomicFile(empty):
    pass
  assert open(empty, 'rb').read() == b''
  with pytest.raises(RuntimeError):
    with record_files.AtomicFile(str(tmp_path / 'never')) as out:
      out.write(b'half')
      raise RuntimeError('the writer dies')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['empty.jsonl', 'sub']


# Records above the caller's limit, and the files read from outside.

def _one_huge_record(tmp_path, size, gzipped=True):
  """A file of three records, the middle one `size` bytes of zeros: a few KB gzipped."""
  records = [b'before', b'\0' * size, b'after']
  return fixtures.write_records(str(tmp_path / 'huge'), records, gzip=gzipped), records


@pytest.mark.parametrize('gzipped', [True, False])
def test_a_record_above_the_limit_is_passed_over_unread(tmp_path, gzipped):
  path, records = _one_huge_record(tmp_path, 24 << 20, gzipped)
  tracemalloc.start()
  try:
    got = list(record_files.read_records(path, 'GZIP' if gzipped else 'UNCOMPRESSED',
                                         max_record_bytes=1 << 20))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert got == [(0, b'before'), (1, record_files.OversizedRecord(24 << 20, 1 << 20)),
                 (2, b'after')]
  # Read a block at a time: never the 24 MB record whole.
  assert peak < 8 << 20, peak
  assert got[1][1].detail == ('the record is 25,165,824 bytes, above the limit of 1,048,576 '
                              '(max_record_bytes); it was checked but not read into memory')
  # Without a limit it is read as before.
  assert [r for _, r in record_files.read_records(path, record_files.compression_of(path))
          ] == records


@pytest.mark.parametrize('block', [1, 7, 4096])
def test_records_above_the_limit_across_read_blocks(tmp_path, monkeypatch, block):
  records = [bytes([i]) * (i * 37 % 500) for i in range(60)]
  path = fixtures.write_records(str(tmp_path / 'data'), records, gzip=True)
  monkeypatch.setattr(record_files, 'READ_BLOCK_BYTES', block)
  got = list(record_files.read_records(path, 'GZIP', max_record_bytes=300))
  assert got == [(i, r if len(r) <= 300 else record_files.OversizedRecord(len(r), 300))
                 for i, r in enumerate(records)]
  assert sum(isinstance(r, record_files.OversizedRecord) for _, r in got) == 22


def test_a_record_passed_over_still_has_its_checksum_and_length_checked(tmp_path):
  path, _ = _one_huge_record(tmp_path, 3 << 20, gzipped=False)
  data = bytearray(open(path, 'rb').read())
  data[16 + 6 + 4 + 12 + (2 << 20)] ^= 0xFF  # inside the huge record's data
  open(path, 'wb').write(bytes(data))
  got, error = _damaged(path, 'UNCOMPRESSED', max_record_bytes=1 << 20)
  assert got == [(0, b'before')] and error.record_index == 1
  assert 'the record data fails its checksum' in str(error)
  open(path, 'wb').write(bytes(data[:(2 << 20)]))  # cut inside it
  got, error = _damaged(path, 'UNCOMPRESSED', max_record_bytes=1 << 20)
  assert got == [(0, b'before')] and 'the file ends inside a record' in str(error)


def test_only_regular_files_within_their_limits_are_read(tmp_path):
  good = tmp_path / 'good.json'
  good.write_text('{"a": [1, {"b": "[[[[ in a string ]]]]"}]}')
  assert record_files.file_problem(str(good)) is None
  assert record_files.file_problem(f'file://{good}') is None
  assert record_files.read_json_file(str(good), 1000, 3) == {
      'a': [1, {'b': '[[[[ in a string ]]]]'}]}
  (tmp_path / 'folder').mkdir()
  fifo = str(tmp_path / 'fifo')
  os.mkfifo(fifo)
  deep = tmp_path / 'deep.json'
  deep.write_text('[' * 100_000 + ']' * 100_000)
  for path, max_depth, problem in [
      (str(tmp_path / 'folder'), 8, 'folder is a folder, not a file'),
      (fifo, 8, 'fifo is not a regular file (a FIFO, socket or device is never read)'),
      (str(good), 2, 'good.json nests 3 levels deep, more than the 2 this file ever has'),
      (str(deep), 8, 'deep.json nests 100000 levels deep'),
      (str(tmp_path / 'absent'), 8, 'absent cannot be read (No such file or directory)')]:
    with pytest.raises(record_files.UnreadableFile, match=re.escape(problem)):
      record_files.read_json_file(path, 1 << 20, max_depth)
  # A file:// URI names this machine's disk: its FIFO would block a reader just the same.
  assert record_files.file_problem(f'file://{fifo}') == (
      f'file://{fifo} is not a regular file (a FIFO, socket or device is never read)')
  with pytest.raises(record_files.UnreadableFile,
                     match=r'good.json is 42 bytes, above the limit of 40 for this file'):
    record_files.read_json_file(str(good), 40, 8)
