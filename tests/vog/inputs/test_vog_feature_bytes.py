"""vog_feature_suffixes: the byte-level batch encoder of the VoG fields reads back, once
appended to a record, as the same example with_vog_features gives."""

from typing import Any, Mapping, Optional

import numpy as np
import pytest
import tensorflow as tf

from components.vog.inputs import examples_io
from components.vog import vocabulary as vocab

ID_KEY = 'example_id'
FLOAT_SIGNALS = tuple(k for k in vocab.SIGNAL_FIELDS if k not in vocab.INT_SIGNALS)
SPECIAL_FLOATS = [0.0, -0.0, float('nan'), float('inf'), float('-inf'), 1e39, -1e39,
                  1e-50, 3.4028235e38, 1.0000000596046448, 0.1, -123.456,
                  # -NaN, and a NaN with a payload float32 keeps (0x7fc00001).
                  *np.array([0xfff8 << 48, 0x7ff8_0000_2000_0000], dtype=np.uint64)
                  .view(np.float64).tolist()]
SPECIAL_INTS = [0, -1, 1, 127, 128, -128, 2**31, -2**31 - 1, 2**62, -2**62,
                2**63 - 1, -2**63]
ODD_IDS = ['', 'ünïcødé-例-🙂', 'x' * 300]


def _record(i, has_id=True, earlier_audit=False):
  """A serialized input example; optionally with features of an earlier audit."""
  example = tf.train.Example()
  feature = example.features.feature
  feature['pixels'].float_list.value.extend([0.25 * i, -1.0, 2.5])
  feature['label'].int64_list.value.append(i % 3)
  if has_id:
    feature[ID_KEY].bytes_list.value.append(f'had-{i}'.encode())
  if earlier_audit:
    feature[vocab.VOG_BUCKET].bytes_list.value.extend([b'stale', b'two values'])
    feature[vocab.VOG_SCORE].int64_list.value.extend([7, 8, 9])  # Another kind, even.
    feature[vocab.VOG_DECILE].int64_list.value.append(99)
    feature['audit_forgetting'].float_list.value.append(0.5)
  return example.SerializeToString()


def _columns(rng, n, with_signals=True):
  """One batch of VoG columns, special values first, then random ones."""
  def floats():
    values = rng.normal(scale=1e3, size=n)
    values[rng.random(n) < 0.2] = 0.0
    k = min(n, len(SPECIAL_FLOATS))
    values[:k] = rng.permutation(SPECIAL_FLOATS)[:k]
    return values

  def ints():
    values = rng.integers(-2**62, 2**62, size=n, endpoint=True)
    values[rng.random(n) < 0.3] = 0
    small = rng.random(n) < 0.3
    values[small] = rng.integers(-300, 300, size=small.sum())
    k = min(n, len(SPECIAL_INTS))
    values[:k] = rng.permutation(np.array(SPECIAL_INTS, dtype=np.int64))[:k]
    return values

  columns = {k: floats() for k in vocab.FLOAT_FIELDS}
  columns.update({k: ints() for k in vocab.INT_FIELDS})
  columns[vocab.VOG_BUCKET] = rng.permutation(np.arange(n) % len(vocab.BUCKETS))
  if with_signals:
    columns.update({k: floats() for k in FLOAT_SIGNALS})
    columns.update({k: ints() for k in vocab.INT_SIGNALS})
  return columns


def with_vog_features(serialized: bytes, example_id_key: str, example_id: str,
                      fields: Mapping[str, Any], has_example_id: bool,
                      signal_values: Optional[Mapping[str, float]] = None) -> bytes:
  """The example with the VoG fields added (and its id when it had none), one
  tf.train.Example per record: the oracle the byte encoder is checked against.

  `fields` maps every vocabulary.VOG_FIELDS name to its value; `signal_values` the
  label-error signals (signals.py) by field name, counts (audit_forgetting) as integers.

  Appends a serialized Example holding only the new features: protobuf merges the
  two on parsing, so the original bytes stay as they were and a feature of the same
  name (from an earlier audit) is replaced.
  """
  extra = tf.train.Example()
  feature = extra.features.feature
  if not has_example_id:
    feature[example_id_key].bytes_list.value.append(example_id.encode('utf-8'))
  for key in vocab.FLOAT_FIELDS:
    feature[key].float_list.value.append(float(fields[key]))
  for key in vocab.INT_FIELDS:
    feature[key].int64_list.value.append(int(fields[key]))
  for key in vocab.BYTES_FIELDS:
    feature[key].bytes_list.value.append(str(fields[key]).encode('utf-8'))
  for key, value in (signal_values or {}).items():
    if key in vocab.INT_SIGNALS:
      feature[key].int64_list.value.append(int(value))
    else:
      feature[key].float_list.value.append(float(value))
  return serialized + extra.SerializeToString()


def _old(record, columns, i, example_id, with_signals):
  """with_vog_features for example i of `columns`; example_id None: it has its id."""
  fields = {k: float(columns[k][i]) for k in vocab.FLOAT_FIELDS}
  fields.update({k: int(columns[k][i]) for k in vocab.INT_FIELDS})
  fields[vocab.VOG_BUCKET] = vocab.BUCKETS[int(columns[vocab.VOG_BUCKET][i])]
  signals = None
  if with_signals:
    signals = {k: (int(columns[k][i]) if k in vocab.INT_SIGNALS else float(columns[k][i]))
               for k in vocab.SIGNAL_FIELDS}
  has_id = example_id is None
  return with_vog_features(record, ID_KEY, 'unused' if has_id else example_id, fields,
                           has_id, signals)


def _features(serialized):
  """{name: (kind, values)} of a parsed record; floats as their float32 bits, so NaN
  compares (and -0.0 differs from 0.0)."""
  out = {}
  for name, feature in tf.train.Example.FromString(serialized).features.feature.items():
    kind = feature.WhichOneof('kind')
    values = list(getattr(feature, kind).value) if kind else []
    if kind == 'float_list':
      values = np.array(values, dtype=np.float32).view(np.uint32).tolist()
    out[name] = (kind, values)
  return out


def _float32_bits(value):
  with np.errstate(over='ignore'):
    return int(np.array([value], dtype=np.float64).astype(np.float32).view(np.uint32)[0])


@pytest.mark.parametrize('with_signals', [True, False])
@pytest.mark.parametrize('ids_missing', [False, True])
def test_record_plus_suffix_reads_as_with_vog_features(with_signals, ids_missing):
  rng = np.random.default_rng(7 + 2 * with_signals + ids_missing)
  n = 60
  columns = _columns(rng, n, with_signals)
  example_ids = None
  if ids_missing:
    example_ids = [None if i % 3 == 0 else f'new-{i}' for i in range(n)]
    example_ids[1:1 + len(ODD_IDS)] = ODD_IDS
  records = [_record(i, has_id=example_ids is None or example_ids[i] is None,
                     earlier_audit=i % 4 == 1) for i in range(n)]
  suffixes = examples_io.vog_feature_suffixes(columns, ID_KEY, example_ids, with_signals)
  assert len(suffixes) == n
  for i, (record, suffix) in enumerate(zip(records, suffixes)):
    example_id = None if example_ids is None else example_ids[i]
    got = _features(record + suffix)
    assert got == _features(_old(record, columns, i, example_id, with_signals)), i
    # And what a reader sees, against the columns themselves.
    assert got[vocab.VOG_BUCKET] == ('bytes_list',
                                   [vocab.BUCKETS[columns[vocab.VOG_BUCKET][i]].encode()])
    assert got[vocab.VOG_DECILE] == ('int64_list', [int(columns[vocab.VOG_DECILE][i])])
    assert got[vocab.VOG_SCORE] == ('float_list', [_float32_bits(columns[vocab.VOG_SCORE][i])])
    if example_id is not None:
      assert got[ID_KEY] == ('bytes_list', [example_id.encode('utf-8')])
    else:
      assert got[ID_KEY] == ('bytes_list', [f'had-{i}'.encode()])
    assert ('audit_el2n' in got) == with_signals


def test_special_values_read_back_exactly():
  rng = np.random.default_rng(1)
  n = max(len(SPECIAL_INTS), len(SPECIAL_FLOATS))
  ints = (SPECIAL_INTS * 2)[:n]
  columns = _columns(rng, n)
  columns[vocab.VOG_RAW] = np.array((SPECIAL_FLOATS * 2)[:n])
  columns[vocab.VOG_TARGET_CLASS] = np.array(ints, dtype=np.int64)
  suffixes = examples_io.vog_feature_suffixes(columns, ID_KEY)
  for i, suffix in enumerate(suffixes):
    got = tf.train.Example.FromString(_record(i) + suffix).features.feature
    assert got[vocab.VOG_TARGET_CLASS].int64_list.value == [ints[i]]
    raw = np.array(got[vocab.VOG_RAW].float_list.value, dtype=np.float32)
    assert raw.view(np.uint32).tolist() == [_float32_bits(columns[vocab.VOG_RAW][i])]
  inf_at = SPECIAL_FLOATS.index(1e39)  # Beyond float32: inf, as float_list stores it.
  got = tf.train.Example.FromString(suffixes[inf_at]).features.feature
  assert got[vocab.VOG_RAW].float_list.value == [float('inf')]
  payload_at = len(SPECIAL_FLOATS) - 1
  got = tf.train.Example.FromString(suffixes[payload_at]).features.feature
  bits = np.array(got[vocab.VOG_RAW].float_list.value, dtype=np.float32).view(np.uint32)
  assert bits.tolist() == [0x7fc00001]


def test_earlier_audit_features_are_replaced():
  columns = {k: np.array([1.5]) for k in vocab.FLOAT_FIELDS + FLOAT_SIGNALS}
  columns.update({k: np.array([3]) for k in vocab.INT_FIELDS + vocab.INT_SIGNALS})
  columns[vocab.VOG_BUCKET] = np.array([0])
  record = _record(5, earlier_audit=True)
  (suffix,) = examples_io.vog_feature_suffixes(columns, ID_KEY)
  got = tf.train.Example.FromString(record + suffix).features.feature
  assert got[vocab.VOG_BUCKET].bytes_list.value == [b'easy']
  assert got[vocab.VOG_SCORE].WhichOneof('kind') == 'float_list'
  assert got[vocab.VOG_SCORE].float_list.value == [1.5]
  assert got[vocab.VOG_DECILE].int64_list.value == [3]
  assert got['audit_forgetting'].WhichOneof('kind') == 'int64_list'
  assert got['audit_forgetting'].int64_list.value == [3]
  assert got['pixels'].float_list.value == [1.25, -1.0, 2.5]  # The record's own, kept.
  assert _features(record + suffix) == _features(_old(record, columns, 0, None, True))


@pytest.mark.parametrize('with_signals', [True, False])
def test_suffix_alone_is_an_example_of_just_the_new_features(with_signals):
  columns = _columns(np.random.default_rng(3), 6, with_signals)
  example_ids = [None, 'a', None, '', 'ü', None]
  suffixes = examples_io.vog_feature_suffixes(columns, ID_KEY, example_ids, with_signals)
  for i, suffix in enumerate(suffixes):
    expected = set(vocab.VOG_FIELDS) | (set(vocab.SIGNAL_FIELDS) if with_signals else set())
    if example_ids[i] is not None:
      expected.add(ID_KEY)
    got = _features(suffix)
    assert set(got) == expected
    assert all(len(values) == 1 for _, values in got.values())
    kinds = {k: kind for k, (kind, _) in got.items()}
    assert {k for k, kind in kinds.items() if kind == 'float_list'} == (
        set(vocab.FLOAT_FIELDS) | (set(FLOAT_SIGNALS) if with_signals else set()))
    assert {k for k, kind in kinds.items() if kind == 'bytes_list'} == (
        expected & {vocab.VOG_BUCKET, ID_KEY})


def test_tf_parse_single_example_reads_the_appended_features():
  columns = _columns(np.random.default_rng(5), 3)
  columns[vocab.VOG_SCORE] = np.array([0.1, -2.5, 1e6])
  columns[vocab.VOG_BUCKET] = np.array([2, 0, 1])
  records = [_record(0, earlier_audit=True), _record(1, has_id=False), _record(2)]
  suffixes = examples_io.vog_feature_suffixes(columns, ID_KEY, [None, 'fresh-1', None])
  spec = {vocab.VOG_BUCKET: tf.io.FixedLenFeature([], tf.string),
          vocab.VOG_SCORE: tf.io.FixedLenFeature([], tf.float32),
          vocab.VOG_DECILE: tf.io.FixedLenFeature([], tf.int64),
          ID_KEY: tf.io.FixedLenFeature([], tf.string),
          'pixels': tf.io.FixedLenFeature([3], tf.float32)}
  for i, (record, suffix) in enumerate(zip(records, suffixes)):
    parsed = tf.io.parse_single_example(record + suffix, spec)
    assert parsed[vocab.VOG_BUCKET].numpy() == vocab.BUCKETS[columns[vocab.VOG_BUCKET][i]].encode()
    assert parsed[vocab.VOG_SCORE].numpy() == np.float32(columns[vocab.VOG_SCORE][i])
    assert parsed[vocab.VOG_DECILE].numpy() == columns[vocab.VOG_DECILE][i]
    assert parsed[ID_KEY].numpy() == (b'fresh-1' if i == 1 else f'had-{i}'.encode())
  batch = tf.io.parse_example([r + s for r, s in zip(records, suffixes)], spec)
  assert batch[vocab.VOG_BUCKET].numpy().tolist() == [b'hard', b'easy', b'medium']


def test_takes_columns_of_other_dtypes():
  n = 4
  columns = {vocab.VOG_SCORE: np.array([0.5, np.nan, -1.0, 2.0], dtype=np.float32),
             vocab.VOG_RAW: [1, 2, 3, 2**53 + 1],  # A list of Python ints, even.
             vocab.VOG_PERCENTILE: np.array([10.0, 20.0, 30.0, 40.0], dtype='>f8'),
             vocab.VOG_DECILE: np.array([1, 2, 3, 9], dtype=np.int32),
             vocab.VOG_FLAGGED: np.array([True, False, True, False]),
             vocab.VOG_TARGET_CLASS: np.array([0, 255, 7, 1], dtype=np.uint8),
             vocab.VOG_BUCKET: np.array([0, 1, 2, 1], dtype=np.uint8),
             'unrelated': np.zeros(n)}
  suffixes = examples_io.vog_feature_suffixes(columns, ID_KEY, with_signals=False)
  for i, suffix in enumerate(suffixes):
    record = _record(i)
    assert _features(record + suffix) == _features(_old(record, columns, i, None, False))
  got = tf.train.Example.FromString(suffixes[0]).features.feature
  assert got[vocab.VOG_FLAGGED].int64_list.value == [1]


def test_refuses_columns_it_cannot_encode():
  good = _columns(np.random.default_rng(0), 3, with_signals=False)
  assert examples_io.vog_feature_suffixes(
      {k: v[:0] for k, v in good.items()}, ID_KEY, with_signals=False) == []
  with pytest.raises(ValueError, match='audit_el2n'):
    examples_io.vog_feature_suffixes(good, ID_KEY)  # Signals asked for, not given.
  with pytest.raises(ValueError, match=vocab.VOG_BUCKET):
    examples_io.vog_feature_suffixes(dict(good, vog_bucket=np.array([0, 3, 1])), ID_KEY,
                                     with_signals=False)
  with pytest.raises(ValueError, match=vocab.VOG_DECILE):
    examples_io.vog_feature_suffixes(dict(good, vog_decile=np.array([1.5, 2.0, 3.0])),
                                     ID_KEY, with_signals=False)
  with pytest.raises(ValueError, match=vocab.VOG_RAW):
    examples_io.vog_feature_suffixes(dict(good, vog_raw=np.zeros(2)), ID_KEY,
                                     with_signals=False)
  with pytest.raises(ValueError, match='example_ids'):
    examples_io.vog_feature_suffixes(good, ID_KEY, ['a'], with_signals=False)
