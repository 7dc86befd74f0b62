"""The score table: what is written reads back the same, by us and by Hive readers, and a
damaged or foreign table is refused with the file named."""

import fnmatch
import os
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from components.vog import vocabulary as vocab
from components.vog.report import score_table
from components.vog.report.json_checks import ReportFormatError


def _columns(n, file_index=0, signals=True, seed=0):
  """One shard's columns: the records 0..n-1 of input file `file_index`."""
  rng = np.random.default_rng(seed + file_index)
  flagged = rng.random(n) < 0.3
  labels = rng.integers(0, 3, n)
  labels[::4] = -1
  columns = {
      'example_id': [f'f{file_index}-r{i}' for i in range(n)],
      'file_index': np.full(n, file_index),
      'record_index': np.arange(n),
      'label': labels,
      vocab.VOG_TARGET_CLASS: rng.integers(0, 3, n),
      'predicted_class': rng.integers(0, 3, n),
      vocab.VOG_RAW: rng.random(n),
      vocab.VOG_SCORE: rng.normal(size=n),
      'rank_value': rng.normal(size=n),
      vocab.VOG_PERCENTILE: rng.random(n) * 100,
      vocab.VOG_DECILE: rng.integers(1, 11, n),
      vocab.VOG_BUCKET: rng.choice(vocab.BUCKETS, n),
      vocab.VOG_FLAGGED: flagged,
      'review_rank': np.where(flagged, np.cumsum(flagged), 0),
  }
  if signals:
    for name in vocab.SIGNAL_FIELDS:
      columns[name] = (rng.integers(0, 5, n) if name in vocab.INT_SIGNALS
                       else rng.random(n))
  return columns


def _write(report, split, shards, **kwargs):
  """Writes `shards` (a list of column dicts) as the split's shard set."""
  return [score_table.write_shard(score_table.shard_path(report, split, i, len(shards)),
                                  columns, **kwargs)
          for i, columns in enumerate(shards)]


def _assert_holds(table, columns):
  """The table's rows hold `columns` (given in the table's row order), as declared."""
  assert table.num_rows == len(columns['example_id'])
  for name, given in columns.items():
    got = table.column(name).to_pylist()
    if name == 'label':
      assert got == [None if v == -1 else v for v in given]
    elif name == vocab.VOG_BUCKET:
      assert got == [vocab.BUCKETS[v] if isinstance(v, (int, np.integer)) else v
                     for v in given]
    elif table.schema.field(name).type == pa.float32():
      np.testing.assert_array_equal(got, np.asarray(given, np.float32))
    else:
      assert got == list(np.asarray(given).tolist()), name


def test_round_trip_with_signals_orders_rows_by_file_and_record(tmp_path):
  report = str(tmp_path)
  second, first = _columns(5, file_index=1), _columns(4, file_index=0)
  # Shard 0 holds input file 1, and shard 1 holds input file 0 back to front.
  first_reversed = {k: v[::-1] for k, v in first.items()}
  _write(report, 'train', [second, first_reversed])
  table = score_table.read_split(report, 'train')
  assert table.schema == score_table.schema(with_signals=True)
  assert table.schema.field('label').nullable
  assert not table.schema.field('vog_score').nullable
  assert table.schema.field('audit_forgetting').type == pa.int32()
  assert table.schema.field('audit_el2n').type == pa.float32()
  expected = {k: list(first[k]) + list(second[k]) for k in first}
  _assert_holds(table, expected)
  assert table.column('label').null_count == 1 + 2  # every fourth label was -1
  assert table.column('example_id').to_pylist()[:2] == ['f0-r0', 'f0-r1']


def test_round_trip_without_signals_or_labels_and_bucket_codes(tmp_path):
  report = str(tmp_path)
  columns = _columns(6, signals=False)
  columns['label'] = None
  columns[vocab.VOG_BUCKET] = np.array([0, 1, 2, 2, 1, 0], np.int64)
  _write(report, 'unlabeled', [columns])
  table = score_table.read_split(report, 'unlabeled')
  assert table.schema == score_table.schema(with_signals=False)
  assert not set(vocab.SIGNAL_FIELDS) & set(table.column_names)
  assert table.column('label').null_count == 6
  assert table.column(vocab.VOG_BUCKET).to_pylist() == [
      'easy', 'medium', 'hard', 'hard', 'medium', 'easy']
  # The bucket's codes index vocabulary.BUCKETS, whatever the file's dictionary.
  assert table.column(vocab.VOG_BUCKET).chunk(0).indices.to_pylist() == [0, 1, 2, 2, 1, 0]
  columns.pop('label')
  _assert_holds(table, columns)


def test_bucket_names_may_be_bytes_as_in_tf_examples(tmp_path):
  columns = _columns(3, signals=False)
  columns[vocab.VOG_BUCKET] = [b'hard', b'easy', b'hard']
  _write(str(tmp_path), 'train', [columns])
  assert score_table.read_split(str(tmp_path), 'train').column(
      vocab.VOG_BUCKET).to_pylist() == ['hard', 'easy', 'hard']


def test_read_table_adds_the_split_and_columns_pick_and_order(tmp_path):
  report = str(tmp_path)
  _write(report, 'train', [_columns(3), _columns(2, file_index=1)])
  _write(report, 'eval', [_columns(2, seed=7)])
  assert score_table.splits(report) == ['eval', 'train']
  table = score_table.read_table(report)
  assert table.column_names[-1] == 'split'
  assert table.column('split').to_pylist() == ['eval'] * 2 + ['train'] * 5
  assert table.schema.field('split').type == pa.string()
  picked = score_table.read_table(report, columns=['split', 'vog_score', 'example_id'])
  assert picked.column_names == ['split', 'vog_score', 'example_id']
  assert picked.column('example_id').to_pylist()[2:] == [
      'f0-r0', 'f0-r1', 'f0-r2', 'f1-r0', 'f1-r1']
  one = score_table.read_split(report, 'train', columns=['review_rank'])
  assert one.column_names == ['review_rank'] and one.num_rows == 5


def test_pandas_reads_the_split_as_a_hive_partition(tmp_path):
  report = str(tmp_path)
  _write(report, 'train', [_columns(3)])
  _write(report, 'eval', [_columns(2)])
  dataset = ds.dataset(score_table.table_dir(report), format='parquet', partitioning='hive')
  frame = dataset.to_table().to_pandas()
  assert sorted(frame['split'].value_counts().items()) == [('eval', 2), ('train', 3)]
  assert set(frame[vocab.VOG_BUCKET].astype(str)) <= set(vocab.BUCKETS)
  assert frame['label'].isna().sum() == 2  # record 0 of each split had label -1


def test_bytes_on_disk_is_what_was_written_and_compression_is_readable_either_way(tmp_path):
  columns = _columns(2000, signals=False)
  columns['example_id'] = ['same-prefix-for-every-example-%d' % (i % 10) for i in range(2000)]
  sizes = {}
  for compression in ('none', 'zstd'):
    report = str(tmp_path / compression)
    written = _write(report, 'train', [columns], compression=compression)
    assert score_table.bytes_on_disk(report) == sum(written)
    sizes[compression] = sum(written)
    _assert_holds(score_table.read_split(report, 'train'), columns)
  assert sizes['zstd'] < sizes['none']
  with pytest.raises(ValueError, match='compression'):
    _write(str(tmp_path / 'lz'), 'train', [columns], compression='lz4')


def test_writes_and_reads_on_tensorflows_ram_filesystem():
  report = f'ram://score-table-{uuid.uuid4().hex}/report'
  try:
    written = _write(report, 'train', [_columns(4), _columns(3, file_index=1)])
    table = score_table.read_split(report, 'train')
    assert table.num_rows == 7
    assert score_table.bytes_on_disk(report) == sum(written)
    assert score_table.read_table(report).column('split').to_pylist() == ['train'] * 7
  finally:
    tf.io.gfile.rmtree(os.path.dirname(report))


def test_the_temporary_file_is_hidden_and_gone_after_a_write(tmp_path, monkeypatch):
  renamed = []
  rename = tf.io.gfile.rename

  def recording_rename(src, dst, overwrite=False):
    renamed.append(os.path.basename(src))
    assert os.path.exists(src) and not os.path.exists(dst)
    rename(src, dst, overwrite)

  monkeypatch.setattr(tf.io.gfile, 'rename', recording_rename)
  path = score_table.shard_path(str(tmp_path), 'train', 0, 1)
  score_table.write_shard(path, _columns(3))
  (temp,) = renamed
  assert temp.startswith('.') and not fnmatch.fnmatch(temp, 'part-*')
  assert os.listdir(os.path.dirname(path)) == ['part-00000-of-00001.parquet']


def test_a_failed_write_leaves_no_file_and_a_hidden_leftover_is_skipped(tmp_path,
                                                                        monkeypatch):
  report = str(tmp_path)
  path = score_table.shard_path(report, 'train', 0, 1)

  def failing_rename(src, dst, overwrite=False):
    raise tf.errors.UnavailableError(None, None, 'the file system went away')

  monkeypatch.setattr(tf.io.gfile, 'rename', failing_rename)
  with pytest.raises(tf.errors.UnavailableError):
    score_table.write_shard(path, _columns(3))
  assert os.listdir(os.path.dirname(path)) == []
  monkeypatch.undo()
  # What a writer killed mid-write leaves behind is not read as data.
  open(os.path.join(os.path.dirname(path), '.part-00000-of-00001.parquet.tmp-dead'),
       'wb').write(b'half a shard')
  score_table.write_shard(path, _columns(3))
  assert score_table.read_split(report, 'train').num_rows == 3


def _refused(report, split='train'):
  with pytest.raises(ReportFormatError) as caught:
    score_table.read_split(report, split)
  assert 're-run' in str(caught.value)
  return str(caught.value)


def test_refuses_an_incomplete_or_mixed_shard_set(tmp_path):
  report = str(tmp_path)
  score_table.write_shard(score_table.shard_path(report, 'train', 0, 2), _columns(3))
  assert 'lacks part-00001-of-00002.parquet' in _refused(report)
  score_table.write_shard(score_table.shard_path(report, 'train', 0, 1), _columns(3))
  assert 'mixes shards of different runs' in _refused(report)


def test_refuses_a_column_of_the_wrong_type_or_a_missing_one(tmp_path):
  report = str(tmp_path)
  path = score_table.shard_path(report, 'train', 0, 1)
  score_table.write_shard(path, _columns(3))
  good = pq.read_table(path)
  wrong = good.set_column(good.schema.get_field_index('vog_score'), 'vog_score',
                          good.column('vog_score').cast(pa.float64()))
  pq.write_table(wrong, path)
  message = _refused(report)
  assert path in message and "'vog_score' of type double" in message
  pq.write_table(good.drop(['review_rank']), path)
  assert "has no column 'review_rank'" in _refused(report)
  pq.write_table(good.drop(['audit_el2n']), path)
  assert 'but not audit_el2n' in _refused(report)


def test_refuses_a_file_that_is_not_parquet_and_a_folder_as_shard(tmp_path):
  report = str(tmp_path)
  path = score_table.shard_path(report, 'train', 0, 1)
  os.makedirs(os.path.dirname(path))
  open(path, 'w').write('example_id,vog_score\nx,1.0\n')
  message = _refused(report)
  assert path in message and 'is not a Parquet file' in message
  os.remove(path)
  os.makedirs(path)
  assert 'is a folder where a shard file should be' in _refused(report)


def test_refuses_a_shard_over_the_size_bound_unread(tmp_path, monkeypatch):
  report = str(tmp_path)
  size = _write(report, 'train', [_columns(3)])[0]
  monkeypatch.setattr(score_table, 'MAX_SHARD_BYTES', size - 1)
  assert f'holds {size} bytes' in _refused(report)


def test_refuses_a_report_without_a_table_or_split(tmp_path):
  report = str(tmp_path)
  with pytest.raises(ReportFormatError, match='has no score table'):
    score_table.read_table(report)
  _write(report, 'train', [_columns(2)])
  with pytest.raises(ReportFormatError, match=r"no split 'test' \(it has train\)"):
    score_table.read_split(report, 'test')


@pytest.mark.parametrize('split', ['', '.hidden', '..', 'a/b', '../up', 'tr ain', 'e=1'])
def test_refuses_a_split_name_that_cannot_name_a_folder(tmp_path, split):
  with pytest.raises(ValueError, match='split name'):
    score_table.shard_path(str(tmp_path), split, 0, 1)
  with pytest.raises(ValueError, match='split name'):
    score_table.read_split(str(tmp_path), split)


def _drop(name):
  def change(columns):
    columns.pop(name)
  return change


def _set(name, value):
  def change(columns):
    columns[name] = value
  return change


@pytest.mark.parametrize('change, message', [
    (_set('vog_scroe', np.zeros(4)), "unknown column 'vog_scroe'"),
    (_set('vog_raw', np.zeros(3)), "column 'vog_raw' has 3 values but 'example_id' has 4"),
    (_set('example_id', ['a', 'b', 'c']), "'example_id' has 3"),
    (_drop('review_rank'), "no column 'review_rank'"),
    (_drop('audit_margin_mean'), 'but not audit_margin_mean'),
    (_set(vocab.VOG_BUCKET, ['easy', 'hard', 'hrad', 'easy']), "holds 'hrad'"),
    (_set(vocab.VOG_BUCKET, [0, 1, 3, 0]), 'holds code 3'),
    (_set('file_index', np.full(4, 2**40)), "'file_index' does not fit int32"),
    (_set('vog_decile', np.full(4, 1.5)), "'vog_decile' does not fit int8"),
    (_set('label', np.array([0, -2, 1, 1])), 'holds -2'),
    (_set('example_id', ['a', None, 'c', 'd']), "'example_id' holds 1 null"),
    (_set('vog_score', None), "'vog_score' is None"),
])
def test_write_refuses_columns_that_do_not_fit_the_table(tmp_path, change, message):
  columns = _columns(4)
  change(columns)
  path = score_table.shard_path(str(tmp_path), 'train', 0, 1)
  with pytest.raises(ValueError, match=message) as caught:
    score_table.write_shard(path, columns)
  assert path in str(caught.value)
  assert not os.path.exists(os.path.dirname(path))


def test_read_refuses_unknown_columns_and_signals_the_table_lacks(tmp_path):
  report = str(tmp_path)
  _write(report, 'train', [_columns(2, signals=False)])
  with pytest.raises(ValueError, match="unknown column 'score'"):
    score_table.read_split(report, 'train', columns=['score'])
  with pytest.raises(ValueError, match="no signal column 'audit_el2n'"):
    score_table.read_split(report, 'train', columns=['example_id', 'audit_el2n'])
  with pytest.raises(ValueError, match="unknown column 'split'"):
    score_table.read_split(report, 'train', columns=['split'])
