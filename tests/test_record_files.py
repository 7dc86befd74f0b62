"""The TFRecord reader: the same records TensorFlow wrote, and damage named, never skipped."""

import gzip

import pytest
import tensorflow as tf

from components.vog import record_files
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


def _damaged(path, compression):
  got = []
  with pytest.raises(record_files.DamagedRecordFile) as caught:
    for item in record_files.read_records(path, compression):
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
