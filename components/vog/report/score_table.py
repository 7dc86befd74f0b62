"""The DifficultyReport's score table: one Parquet row per scored example, for analysts.

This module is the one owner of the table's layout and columns. The audit writes it
through `write_shard`, and everything that reads it back reads through `read_split` and
`read_table`. Under a difficulty report folder the table is

    score_table/split=<split>/part-SSSSS-of-NNNNN.parquet

The folders are Hive partitions, so pandas, DuckDB, BigQuery and `pyarrow.dataset` read
the split as a column of its own:

    pyarrow.dataset.dataset(table_dir(report), format='parquet', partitioning='hive')
    SELECT * FROM read_parquet('<report>/score_table/*/*.parquet', hive_partitioning = 1)

(Hive readers guess the split's type from the folder names: name it a string, e.g.
`partitioning=ds.partitioning(pa.schema([('split', pa.string())]), flavor='hive')`,
where a split may be named by digits alone.)

A split name is letters, digits, '_', '.' and '-', not starting with '.'; any other name
is refused (ValueError), so a split can never name a folder outside the table.

Every shard holds exactly the columns of `schema()`:

    example_id        string
    file_index        int32     the example is record `record_index` of the split's
    record_index      int64     `file_index`-th input file
    label             int32     null when the example has no label (label_mode='predicted')
    vog_target_class  int32     the class whose gradients were scored
    predicted_class   int32
    vog_raw           float32
    vog_score         float32
    rank_value        float64   the value that ranked the example (`ranked_by`)
    vog_percentile    float32
    vog_decile        int8      1..10
    vog_bucket        dictionary<int8, string>: easy, medium or hard
    vog_flagged       int8      1 when flagged for review, else 0
    review_rank       int32     0 when not flagged, else its review rank (1 first)
    audit_*           the label-error signals of signals.REGISTRY, in its order:
                      float32, a count (audit_forgetting) int32; in label_mode='label'
                      only

Only `label` holds nulls. A table has all the signal columns or none of them.

A shard is written whole: to a temporary name in its folder that starts with '.', which
no `part-*` glob, Hive reader or Spark job takes for data, then renamed into place.
Files are read and written through `tf.io.gfile`, so gs:// and the other file systems
TensorFlow knows work as local paths do. Importing this module does not import
TensorFlow; only reading or writing a shard does.
"""

import os
import re
import uuid
from typing import Any, Dict, Iterable, List, Mapping, NoReturn, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.vog import vocabulary as vocab
from components.vog.compute import signals
from components.vog.report.json_checks import ReportFormatError

TABLE_DIR = 'score_table'
SPLIT = 'split'  # the Hive partition key, and the column read_table adds
SPLIT_DIR_PREFIX = SPLIT + '='
SHARD_PREFIX = 'part'
SHARD_SUFFIX = '.parquet'
SHARD_GLOB = SHARD_PREFIX + '-*-of-*' + SHARD_SUFFIX
# The most bytes one shard may hold; a reader refuses a bigger one unread.
MAX_SHARD_BYTES = 2 << 30
COMPRESSIONS = ('zstd', 'snappy', 'gzip', 'none')

EXAMPLE_ID = 'example_id'
FILE_INDEX = 'file_index'
RECORD_INDEX = 'record_index'
LABEL = 'label'
PREDICTED_CLASS = 'predicted_class'
RANK_VALUE = 'rank_value'
REVIEW_RANK = 'review_rank'
NO_LABEL = -1  # in the `label` array given to write_shard: the example has no label

BUCKET_TYPE = pa.dictionary(pa.int8(), pa.string())
_REQUIRED_TYPES = (
    (EXAMPLE_ID, pa.string()),
    (FILE_INDEX, pa.int32()),
    (RECORD_INDEX, pa.int64()),
    (LABEL, pa.int32()),
    (vocab.VOG_TARGET_CLASS, pa.int32()),
    (PREDICTED_CLASS, pa.int32()),
    (vocab.VOG_RAW, pa.float32()),
    (vocab.VOG_SCORE, pa.float32()),
    (RANK_VALUE, pa.float64()),
    (vocab.VOG_PERCENTILE, pa.float32()),
    (vocab.VOG_DECILE, pa.int8()),
    (vocab.VOG_BUCKET, BUCKET_TYPE),
    (vocab.VOG_FLAGGED, pa.int8()),
    (REVIEW_RANK, pa.int32()),
)
# Every shard has these columns, and the signal columns all or none.
REQUIRED_COLUMNS = tuple(name for name, _ in _REQUIRED_TYPES)
NULLABLE_COLUMNS = (LABEL,)
_BUCKET_VALUES = pa.array(vocab.BUCKETS, pa.string())
_ORDER = [(FILE_INDEX, 'ascending'), (RECORD_INDEX, 'ascending')]

_SPLIT_NAME = re.compile(r'[A-Za-z0-9_.-]+')
_SHARD_NAME = re.compile(re.escape(SHARD_PREFIX) + r'-(\d+)-of-(\d+)'
                         + re.escape(SHARD_SUFFIX))
_RERUN = 're-run the VarianceOfGradients audit to write the score table again'


def _signal_types() -> Tuple[Tuple[str, pa.DataType], ...]:
  """(column, type) of each signal of signals.REGISTRY, in its order: int32 for a count,
  float32 for the others."""
  return tuple((s.field, pa.int32() if s.kind == signals.COUNT else pa.float32())
               for s in signals.REGISTRY)


def signal_column_names() -> Tuple[str, ...]:
  """The signal columns, in order: a table has all of them or none."""
  return tuple(name for name, _ in _signal_types())


def column_names() -> Tuple[str, ...]:
  """Every column a table may have, in order: REQUIRED_COLUMNS, then the signals'."""
  return REQUIRED_COLUMNS + signal_column_names()


def _type_of(name: str) -> pa.DataType:
  return dict(_REQUIRED_TYPES + _signal_types())[name]


def schema(with_signals: bool) -> pa.Schema:
  """The score table's columns, in order; the signal columns only `with_signals`."""
  pairs = _REQUIRED_TYPES + (_signal_types() if with_signals else ())
  return pa.schema([pa.field(name, type_, nullable=name in NULLABLE_COLUMNS)
                    for name, type_ in pairs])


def _fail(where: str, problem: str, fix: str = _RERUN) -> NoReturn:
  raise ReportFormatError(f'{where}: {problem} - {fix}')


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def check_split(split: str) -> str:
  """`split` when it can name a partition folder; else a ValueError naming it."""
  if (not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split)
      or split.startswith('.')):
    raise ValueError(f'split name {split!r} cannot name a score table folder; a split name '
                     "is letters, digits, '_', '.' and '-', and does not start with '.'")
  return split


def table_dir(report_dir: str) -> str:
  """The score table's folder in the difficulty report folder `report_dir`."""
  return os.path.join(report_dir, TABLE_DIR)


def split_dir(report_dir: str, split: str) -> str:
  """The partition folder `score_table/split=<split>`; refuses a bad split name."""
  return os.path.join(table_dir(report_dir), SPLIT_DIR_PREFIX + check_split(split))


def shard_name(shard: int, num_shards: int) -> str:
  """`part-00003-of-00008.parquet` for shard 3 of 8; refuses a shard outside 0..n-1."""
  if not 0 <= shard < num_shards:
    raise ValueError(f'shard {shard} of {num_shards}: a shard number is 0 to num_shards - 1')
  return f'{SHARD_PREFIX}-{shard:05d}-of-{num_shards:05d}{SHARD_SUFFIX}'


def shard_path(report_dir: str, split: str, shard: int, num_shards: int) -> str:
  """Where shard `shard` of `num_shards` of a split's rows is written."""
  return os.path.join(split_dir(report_dir, split), shard_name(shard, num_shards))


# Writing.


def _values(name: str, values: Any, where: str) -> np.ndarray:
  array = np.asarray(values)
  if array.ndim != 1:
    raise ValueError(f'{where}: column {name!r} has shape {array.shape}; give one value per '
                     'example (a 1-D array or a list)')
  return array


def _numbers(name: str, values: Any, where: str) -> pa.Array:
  """A numeric column as its declared type; refuses values that do not fit it."""
  array = _values(name, values, where)
  if array.dtype.kind not in 'biuf' and len(array):
    raise ValueError(f'{where}: column {name!r} holds {array.dtype} values; give numbers')
  try:
    return pa.array(array).cast(_type_of(name))
  except pa.ArrowInvalid as e:
    raise ValueError(f'{where}: column {name!r} does not fit {_type_of(name)} ({e})') from None


def _labels(values: Any, num_rows: int, where: str) -> pa.Array:
  """`label` from ints with NO_LABEL for none, or from None (no example has one)."""
  if values is None:
    return pa.nulls(num_rows, pa.int32())
  array = _values(LABEL, values, where)
  if array.dtype.kind not in 'iu' and len(array):
    raise ValueError(f'{where}: column {LABEL!r} holds {array.dtype} values; give class ids '
                     f'as integers, {NO_LABEL} for an example without a label')
  if len(array) and array.min() < NO_LABEL:
    raise ValueError(f'{where}: column {LABEL!r} holds {array.min()}; a label is a class id '
                     f'>= 0, or {NO_LABEL} for an example without one')
  try:
    return pa.array(array, mask=array == NO_LABEL).cast(pa.int32())
  except pa.ArrowInvalid as e:
    raise ValueError(f'{where}: column {LABEL!r} does not fit int32 ({e})') from None


def _buckets(values: Any, where: str) -> pa.DictionaryArray:
  """`vog_bucket` from bucket names (str or bytes) or from codes into BUCKETS."""
  array = _values(vocab.VOG_BUCKET, values, where)
  if array.dtype.kind in 'iu':
    bad = array[(array < 0) | (array >= len(vocab.BUCKETS))]
    if len(bad):
      raise ValueError(f'{where}: column {vocab.VOG_BUCKET!r} holds code {bad[0]}; a code is '
                       f'0 to {len(vocab.BUCKETS) - 1} ({", ".join(vocab.BUCKETS)})')
    codes = array.astype(np.int8)
  elif array.dtype.kind in 'USO' or not len(array):
    code_of = {name: code for code, name in enumerate(vocab.BUCKETS)}
    names = [v.decode('utf-8', 'replace') if isinstance(v, bytes) else v
             for v in array.tolist()]
    bad = [v for v in names if v not in code_of]
    if bad:
      raise ValueError(f'{where}: column {vocab.VOG_BUCKET!r} holds {bad[0]!r}; a bucket is '
                       f'one of {", ".join(vocab.BUCKETS)}')
    codes = np.array([code_of[v] for v in names], dtype=np.int8)
  else:
    raise ValueError(f'{where}: column {vocab.VOG_BUCKET!r} holds {array.dtype} values; give '
                     f'bucket names ({", ".join(vocab.BUCKETS)}) or their codes 0..'
                     f'{len(vocab.BUCKETS) - 1}')
  return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), _BUCKET_VALUES)


def _example_ids(values: Any, where: str) -> pa.Array:
  if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
    raise ValueError(f'{where}: column {EXAMPLE_ID!r} is not one string per example; give '
                     'a list or 1-D array of str')
  try:
    return pa.array(values if isinstance(values, np.ndarray) else list(values), pa.string())
  except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
    raise ValueError(f'{where}: column {EXAMPLE_ID!r} holds values that are not strings '
                     f'({e})') from None


def _table(columns: Mapping[str, Any], where: str) -> pa.Table:
  """The columns as a pyarrow Table of exactly `schema()`; see write_shard."""
  known = column_names()
  unknown = [name for name in columns if name not in known]
  if unknown:
    raise ValueError(f'{where}: unknown column {unknown[0]!r}; the score table has '
                     f'{", ".join(known)}')
  missing = [name for name in REQUIRED_COLUMNS if name not in columns]
  if missing:
    raise ValueError(f'{where}: no column {missing[0]!r}; give every one of '
                     f'{", ".join(REQUIRED_COLUMNS)}')
  signal_columns = signal_column_names()
  given = [name for name in signal_columns if name in columns]
  if given and len(given) != len(signal_columns):
    absent = [name for name in signal_columns if name not in columns]
    raise ValueError(f'{where}: has signal column(s) {", ".join(given)} but not '
                     f'{", ".join(absent)}; give all of the signal columns (label_mode='
                     "'label') or none")
  none = [name for name, values in columns.items() if values is None and name != LABEL]
  if none:
    raise ValueError(f'{where}: column {none[0]!r} is None; only {LABEL!r} may be None '
                     '(no example has a label)')
  arrays: Dict[str, pa.Array] = {EXAMPLE_ID: _example_ids(columns[EXAMPLE_ID], where)}
  for name in columns:
    if name == vocab.VOG_BUCKET:
      arrays[name] = _buckets(columns[name], where)
    elif name not in (EXAMPLE_ID, LABEL):
      arrays[name] = _numbers(name, columns[name], where)
  num_rows = len(arrays[EXAMPLE_ID])
  arrays[LABEL] = _labels(columns[LABEL], num_rows, where)
  for name, array in arrays.items():
    if len(array) != num_rows:
      raise ValueError(f'{where}: column {name!r} has {len(array)} values but '
                       f'{EXAMPLE_ID!r} has {num_rows}; give every column one value per '
                       'example')
    if array.null_count and name not in NULLABLE_COLUMNS:
      raise ValueError(f'{where}: column {name!r} holds {array.null_count} null value(s); '
                       'every example has one')
  target = schema(bool(given))
  return pa.Table.from_arrays([arrays[field.name] for field in target], schema=target)


def write_shard(path: str, columns: Mapping[str, Any], compression: str = 'zstd',
                temp_dir: Optional[str] = None) -> int:
  """Writes one shard of the score table whole under `path`; returns its size in bytes.

  `columns` maps every name of REQUIRED_COLUMNS, and either all of
  `signal_column_names()` or none, to one value per example: NumPy arrays or lists, cast
  to the column's type. `example_id` holds str; `label` holds class ids with NO_LABEL
  (-1) for an example without a label, or is None when no example has one; `vog_bucket`
  holds bucket names (str or bytes) or their codes into vocabulary.BUCKETS. Use
  `shard_path` for where a shard of the table goes.

  The shard is written to a temporary name in `temp_dir` (by default one starting with
  '.' in the same folder; the audit gives a folder outside the table, where no reader of
  the table looks) and then renamed onto `path` (replacing a shard a failed attempt
  left); the temporary file is removed when writing fails. `compression` is one of
  COMPRESSIONS.

  Refuses (ValueError naming the column) an unknown or missing column, some of the
  signal columns without the others, columns of different lengths, values that do not
  fit their column's type, a null where the column takes none, and an unknown bucket.
  """
  if compression not in COMPRESSIONS:
    raise ValueError(f'compression {compression!r}; give one of {", ".join(COMPRESSIONS)}')
  table = _table(columns, path)
  buffer = pa.BufferOutputStream()
  # Scores barely repeat: a dictionary page costs a float column about 5.3 bytes a row
  # where plain encoding costs 4, so only the id, the labels and codes keep one.
  pq.write_table(table, buffer, compression='NONE' if compression == 'none' else compression,
                 use_dictionary=[f.name for f in table.schema
                                 if not pa.types.is_floating(f.type)])
  data = buffer.getvalue().to_pybytes()
  gfile = _gfile()
  folder, name = os.path.split(path)
  if folder:
    gfile.makedirs(folder)
  if temp_dir is not None:
    gfile.makedirs(temp_dir)
  temp = os.path.join(folder if temp_dir is None else temp_dir,
                      f'.{name}.tmp-{uuid.uuid4().hex[:12]}')
  try:
    with gfile.GFile(temp, 'wb') as f:
      f.write(data)
    gfile.rename(temp, path, overwrite=True)
  except BaseException:
    _remove_quietly(temp)
    raise
  return len(data)


def _remove_quietly(path: str) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except tf.errors.OpError:
    pass  # The write's own error is the one to report.


# Reading.


def splits(report_dir: str) -> List[str]:
  """The splits of the score table of `report_dir`, sorted by name.

  Entries whose names start with '.' or '_' are skipped, as Hive readers skip them.
  Refuses (ReportFormatError) a report without a score table and any other entry that
  is not a `split=<split>` folder.
  """
  gfile = _gfile()
  root = table_dir(report_dir)
  if not gfile.isdir(root):
    _fail(root, 'does not exist; the report has no score table',
          're-run the VarianceOfGradients audit with this release to write one')
  found = []
  for entry in sorted(gfile.listdir(root)):
    name = entry.rstrip('/')
    if name.startswith(('.', '_')):
      continue
    path = os.path.join(root, name)
    split = name[len(SPLIT_DIR_PREFIX):]
    if (not name.startswith(SPLIT_DIR_PREFIX) or not _SPLIT_NAME.fullmatch(split)
        or split.startswith('.') or not gfile.isdir(path)):
      _fail(path, f'is not a split folder like {SPLIT_DIR_PREFIX}train')
    found.append(split)
  return found


def shard_files(report_dir: str, split: str) -> List[str]:
  """The shards of a split in order: the files `part-SSSSS-of-NNNNN.parquet`.

  Other names in the split's folder are not the table's and are skipped. Refuses
  (ReportFormatError) a missing split, a `part-*` name that does not parse, a folder
  where a shard should be, shards of different counts (of different runs), a number
  beyond the count and a missing shard.
  """
  gfile = _gfile()
  folder = split_dir(report_dir, split)
  if not gfile.isdir(folder):
    root = table_dir(report_dir)
    known = splits(report_dir) if gfile.isdir(root) else []
    _fail(folder, f'does not exist; the score table has no split {split!r} '
                  f'(it has {", ".join(known) or "none"})',
          'give a split the audit scored, or ' + _RERUN)
  shards: Dict[Tuple[int, int], str] = {}
  for entry in gfile.listdir(folder):
    name = entry.rstrip('/')
    if not name.startswith(SHARD_PREFIX + '-'):
      continue
    path = os.path.join(folder, name)
    match = _SHARD_NAME.fullmatch(name)
    if not match:
      _fail(path, f'is not a shard name like {shard_name(0, 1)}')
    if entry.endswith('/') or gfile.isdir(path):
      _fail(path, 'is a folder where a shard file should be')
    shards[(int(match.group(2)), int(match.group(1)))] = path
  totals = sorted({total for total, _ in shards})
  if not totals:
    _fail(folder, f'holds no shards ({SHARD_GLOB})')
  if len(totals) > 1:
    _fail(folder, f'mixes shards of different runs (of {totals} shards)')
  total = totals[0]
  beyond = sorted(path for (_, index), path in shards.items() if index >= total)
  if beyond:
    _fail(beyond[0], f'numbers a shard beyond its count of {total}')
  missing = [shard_name(i, total) for i in range(total) if (total, i) not in shards]
  if missing:
    _fail(folder, f'the shard set is incomplete: lacks {", ".join(missing[:5])}'
                  + (f' and {len(missing) - 5} more' if len(missing) > 5 else ''))
  return [shards[(total, i)] for i in range(total)]


def _projection(columns: Optional[Iterable[str]], extra: Tuple[str, ...] = ()
                ) -> Optional[List[str]]:
  """The column names asked for, checked; None for all of them."""
  if columns is None:
    return None
  if isinstance(columns, str):
    raise ValueError(f'columns={columns!r}; give a list of column names')
  names = list(columns)
  known = column_names() + extra
  unknown = [name for name in names if name not in known]
  if unknown:
    raise ValueError(f'unknown column {unknown[0]!r}; the score table has '
                     f'{", ".join(known)}')
  if len(set(names)) != len(names):
    raise ValueError(f'columns={names} names a column twice')
  return names


def _check_schema(found: pa.Schema, path: str) -> bool:
  """Whether the shard has the signal columns; refuses a missing or mistyped column."""
  names = found.names
  for name in column_names():
    count = names.count(name)
    if count > 1:
      _fail(path, f'has column {name!r} {count} times')
    if not count:
      continue
    got = found.field(name).type
    if name == vocab.VOG_BUCKET:
      fits = (pa.types.is_dictionary(got) and pa.types.is_integer(got.index_type)
              and got.value_type == pa.string())
    else:
      fits = got == _type_of(name)
    if not fits:
      _fail(path, f'has column {name!r} of type {got}; the score table\'s is '
                  f'{_type_of(name)}')
  missing = [name for name in REQUIRED_COLUMNS if name not in names]
  if missing:
    _fail(path, f'has no column {missing[0]!r}')
  signal_columns = signal_column_names()
  found_signals = [name for name in signal_columns if name in names]
  if found_signals and len(found_signals) != len(signal_columns):
    absent = [name for name in signal_columns if name not in names]
    _fail(path, f'has signal column(s) {", ".join(found_signals)} but not '
                f'{", ".join(absent)}')
  return bool(found_signals)


def _canonical_buckets(column: pa.ChunkedArray, path: str) -> pa.ChunkedArray:
  """`vog_bucket` re-coded so that its codes index vocabulary.BUCKETS."""
  chunks = []
  for chunk in column.chunks:
    code_of = pc.index_in(chunk.dictionary, value_set=_BUCKET_VALUES)
    if code_of.null_count:
      bad = [v for v, c in zip(chunk.dictionary.to_pylist(), code_of.to_pylist())
             if c is None]
      _fail(path, f'has {vocab.VOG_BUCKET!r} value {bad[0]!r}; a bucket is one of '
                  f'{", ".join(vocab.BUCKETS)}')
    codes = code_of.take(chunk.indices).cast(pa.int8())
    chunks.append(pa.DictionaryArray.from_arrays(codes, _BUCKET_VALUES))
  return pa.chunked_array(chunks, BUCKET_TYPE)


def _read_shard(path: str, names: Optional[Sequence[str]]) -> Tuple[pa.Table, bool]:
  """(the shard's columns `names` (None: all) in the declared types, has signals)."""
  gfile = _gfile()
  size = gfile.stat(path).length
  if size > MAX_SHARD_BYTES:
    _fail(path, f'holds {size} bytes; a shard holds at most {MAX_SHARD_BYTES}')
  with gfile.GFile(path, 'rb') as f:
    data = f.read(MAX_SHARD_BYTES + 1)
  if len(data) > MAX_SHARD_BYTES:
    _fail(path, f'holds more than {MAX_SHARD_BYTES} bytes; a shard holds at most that')
  try:
    parquet = pq.ParquetFile(pa.BufferReader(data))
    with_signals = _check_schema(parquet.schema_arrow, path)
  except (pa.ArrowException, OSError) as e:
    _fail(path, f'is not a Parquet file ({e})')
  target = schema(with_signals)
  wanted = target.names if names is None else list(names)
  absent = [name for name in wanted if name not in target.names]
  if absent:
    raise ValueError(f'{path}: has no signal column {absent[0]!r}; an audit in '
                     "label_mode='predicted' writes none - leave the signal columns out")
  try:
    table = parquet.read(columns=wanted)
  except (pa.ArrowException, OSError) as e:
    _fail(path, f'is damaged: its columns cannot be read ({e})')
  for name in wanted:
    nulls = table.column(name).null_count
    if nulls and name not in NULLABLE_COLUMNS:
      _fail(path, f'holds {nulls} null value(s) in column {name!r}, which every example has')
  arrays = [_canonical_buckets(table.column(name), path) if name == vocab.VOG_BUCKET
            else table.column(name) for name in wanted]
  declared = pa.schema([target.field(name) for name in wanted])
  return pa.Table.from_arrays(arrays, schema=declared), with_signals


def _read_split(report_dir: str, split: str, names: Optional[List[str]]
                ) -> Tuple[pa.Table, bool]:
  order = [name for name, _ in _ORDER]
  read = None if names is None else names + [n for n in order if n not in names]
  tables, kinds = [], set()
  for path in shard_files(report_dir, split):
    table, with_signals = _read_shard(path, read)
    tables.append(table)
    kinds.add(with_signals)
  if len(kinds) > 1:
    _fail(split_dir(report_dir, split), 'mixes shards with and without signal columns')
  table = pa.concat_tables(tables).sort_by(_ORDER)
  return (table if names is None else table.select(names)), kinds.pop()


def read_split(report_dir: str, split: str,
               columns: Optional[Iterable[str]] = None) -> pa.Table:
  """The score table's rows of one split, in (file_index, record_index) order.

  `columns` (None: all the table has) picks and orders the columns. Every shard is read
  whole through tf.io.gfile after its size is checked against MAX_SHARD_BYTES.

  Refuses (ValueError) a bad split name, an unknown column, and a signal column of a
  table without them. Refuses (ReportFormatError naming the file) an incomplete or
  mixed shard set, a folder where a shard should be, a shard over MAX_SHARD_BYTES, a
  file that is not Parquet, a missing or mistyped column, some signal columns without
  the others, a null outside `label` and an unknown bucket.
  """
  return _read_split(report_dir, split, _projection(columns))[0]


def read_table(report_dir: str, columns: Optional[Iterable[str]] = None) -> pa.Table:
  """The score table's rows of every split, with a `split` string column added.

  Splits come in name order, the rows of each in (file_index, record_index) order.
  `columns` may name `split` too; without it `split` comes last, as a Hive reader puts
  it. Refuses what `read_split` refuses, a report without a score table, an entry of
  the table's folder that is not a split folder, and splits with and without signals.
  """
  names = _projection(columns, (SPLIT,))
  asked = None if names is None else [name for name in names if name != SPLIT]
  tables, kinds = [], set()
  for split in splits(report_dir):
    table, with_signals = _read_split(report_dir, split, asked)
    kinds.add(with_signals)
    if len(kinds) > 1:
      _fail(table_dir(report_dir), 'mixes splits with and without signal columns')
    tables.append(table.append_column(pa.field(SPLIT, pa.string(), nullable=False),
                                      pa.array([split] * table.num_rows, pa.string())))
  if not tables:
    _fail(table_dir(report_dir), 'holds no split folders')
  table = pa.concat_tables(tables)
  return table if names is None else table.select(names)


def bytes_on_disk(report_dir: str) -> int:
  """The total size in bytes of the score table's shards, over every split.

  Refuses what `splits` and `shard_files` refuse.
  """
  gfile = _gfile()
  return sum(gfile.stat(path).length
             for split in splits(report_dir) for path in shard_files(report_dir, split))
