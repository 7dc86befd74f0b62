"""From serialized tf.Examples to model inputs, and back with the VoG fields added.

Pure Python + TensorFlow protos + NumPy; runs inside Beam workers and in the driver.
Each example either becomes a `ScorableExample` or a `Quarantined` record with the
reason it cannot be scored. Nothing is dropped silently.

Model inputs come in three kinds, by the dtype `input_specs_of` names: float inputs
(float_list values, cast to the input's float dtype), integer inputs (`int8` to
`uint64`: int64_list values, or whole-number floats, never cast through float) and
text inputs (`string`: bytes_list values, e.g. for a TextVectorization layer, kept as
NumPy object arrays of bytes).
"""

import hashlib
from typing import (Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import tensorflow as tf

from components.vog import vocabulary as vocab
from components.vog.compute import signals

InputsFn = Callable[[Dict[str, np.ndarray]], Mapping[str, Any]]

STRING = 'string'
_INT_DTYPES = ('int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64')
# Dtypes no example feature holds. ('object' is how text inputs were once named.)
_UNREADABLE_DTYPES = ('bool', 'bool_', 'complex64', 'complex128')


class InputSpec(NamedTuple):
  """One model input: its name, per-example shape and dtype name: a NumPy dtype name
  (`float32`, `int64`, ...) or `string` for text."""
  name: str
  shape: Tuple[int, ...]
  dtype: str

  @property
  def size(self) -> int:
    return int(np.prod(self.shape)) if self.shape else 1

  @property
  def kind(self) -> str:
    """`float`, `int` or `string`: how the input's values are read."""
    if self.dtype in (STRING, 'object'):
      return STRING
    if self.dtype in _INT_DTYPES:
      return 'int'
    return 'float'

  @property
  def numpy_dtype(self) -> Any:
    """The dtype of the input's NumPy arrays (object, holding bytes, for text)."""
    return object if self.kind == STRING else np.dtype(self.dtype)


def input_specs_of(model: tf.keras.Model) -> List[InputSpec]:
  """The per-example input specs of a Keras model (batch axis dropped).

  Dtype names are NumPy's (`float32`, `int32`, `int64`, ...), and `string` for a
  `tf.string` input.
  """
  specs = []
  for name, tensor in zip(model.input_names, model.inputs):
    shape = tuple(tensor.shape.as_list()[1:])
    dtype = STRING if tensor.dtype == tf.string else tensor.dtype.as_numpy_dtype.__name__
    specs.append(InputSpec(name, shape, dtype))
  return specs


class InputRecord(NamedTuple):
  """One serialized example and where it was read: the `record_index`-th record of the
  stream of the split's `file_index`-th work unit (beam_audit.WorkUnit: its files read
  one after another; a unit of one file is that file). The position is its identity:
  copies of one record are different examples."""
  split: str
  file_index: int
  record_index: int
  serialized: bytes


class ScorableExample(NamedTuple):
  split: str
  example_id: str
  serialized: bytes
  inputs: Dict[str, np.ndarray]
  label: Optional[int]
  has_example_id: bool = True


class Quarantined(NamedTuple):
  """An example that cannot be scored: `kind` is a short category, `detail` says why."""
  split: str
  example_id: str
  kind: str
  detail: str
  serialized: bytes
  file_index: int = -1
  record_index: int = -1

  @property
  def reason(self) -> str:
    return f'{self.kind}: {self.detail}'


class ScorableBatch(NamedTuple):
  """Parsed records ready for the scorer: row i of every array belongs to records[i]."""
  records: List[InputRecord]
  example_ids: List[str]
  has_example_ids: List[bool]
  inputs: Dict[str, np.ndarray]
  labels: List[Optional[int]]


def fingerprint(serialized: bytes) -> str:
  """A deterministic id for an example that has none: its content hash."""
  return hashlib.sha256(serialized).hexdigest()[:20]


def feature_values(feature: tf.train.Feature) -> Union[List[Any], None]:
  """The values of one tf.train.Feature as a list; None when no kind is set."""
  kind = feature.WhichOneof('kind')
  if kind is None:
    return None
  return list(getattr(feature, kind).value)


def float_values(float_list: tf.train.FloatList) -> np.ndarray:
  """A FloatList's values as float32, read straight from its packed wire bytes.

  This avoids converting the repeated field element by element, which is much slower for
  an image and stays the fallback for any other encoding; for measured costs, see the
  README's "Speed and memory (`make bench`)".
  """
  count = len(float_list.value)
  raw = float_list.SerializeToString()
  # Packed encoding: tag 0x0a, varint byte length, then little-endian float32s.
  header = len(raw) - 4 * count
  if count and raw[:1] == b'\x0a' and 2 <= header <= 11:
    return np.frombuffer(raw, dtype='<f4', offset=header).astype(np.float32)
  return np.fromiter(float_list.value, dtype=np.float32, count=count)


def example_features(example: tf.train.Example) -> Dict[str, np.ndarray]:
  """Every feature of an example as a 1-D NumPy array (bytes features as object)."""
  out = {}
  for key, feature in example.features.feature.items():
    kind = feature.WhichOneof('kind')
    if kind == 'float_list':
      out[key] = float_values(feature.float_list)
    elif kind == 'int64_list':
      out[key] = np.fromiter(feature.int64_list.value, dtype=np.int64,
                             count=len(feature.int64_list.value))
    elif kind == 'bytes_list':
      out[key] = np.asarray(list(feature.bytes_list.value), dtype=object)
  return out


def example_id_of(example: tf.train.Example, serialized: bytes,
                  example_id_key: Optional[str]) -> Tuple[str, bool]:
  """(id, whether the example carries it); a content fingerprint when it does not."""
  if example_id_key and example_id_key in example.features.feature:
    values = feature_values(example.features.feature[example_id_key])
    if values:
      value = values[0]
      text = value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)
      return text, True
  return fingerprint(serialized), False


def _integer_values(spec: InputSpec, raw: Any
                    ) -> Tuple[Optional[np.ndarray], Optional[Tuple[str, str]]]:
  """(values, None) for an integer input, or (None, (kind, detail))."""
  try:
    values = np.asarray(raw)
  except (TypeError, ValueError):
    values = None
  if values is None or values.dtype.kind not in 'iuf':
    return None, ('not an integer', f'feature {spec.name!r} holds no numbers; model input '
                  f'{spec.name!r} takes {spec.dtype} ids (an int64_list)')
  if values.dtype.kind == 'f':
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
      bad = values.reshape(-1)[np.flatnonzero(~whole.reshape(-1))[0]]
      return None, ('not an integer', f'feature {spec.name!r} holds {float(bad)!r}; model '
                    f'input {spec.name!r} takes {spec.dtype} ids (an int64_list)')
  if values.size != spec.size:
    return None, _wrong_shape(spec, values.size)
  problem = _out_of_range(spec, values)
  if problem:
    return None, problem
  return values.astype(spec.dtype).reshape(spec.shape), None


def _out_of_range(spec: InputSpec, values: np.ndarray) -> Optional[Tuple[str, str]]:
  """('integer out of range', detail) when `values` do not fit the input's dtype."""
  info = np.iinfo(spec.dtype)
  if values.size and (values.min() < info.min or values.max() > info.max):
    bad = values.min() if values.min() < info.min else values.max()
    return ('integer out of range', f'feature {spec.name!r} holds {int(bad)}, outside the '
            f'{spec.dtype} range of model input {spec.name!r}')
  return None


def _text_values(spec: InputSpec, raw: Any
                 ) -> Tuple[Optional[np.ndarray], Optional[Tuple[str, str]]]:
  """(object array of bytes, None) for a text input, or (None, (kind, detail))."""
  if isinstance(raw, (bytes, str)):
    raw = [raw]
  try:
    flat = np.asarray(raw, dtype=object).reshape(-1)
  except (TypeError, ValueError):
    flat = np.asarray([raw], dtype=object)
  items = []
  for value in flat:
    if isinstance(value, str):
      value = value.encode('utf-8')
    if not isinstance(value, bytes):
      return None, ('not text', f'feature {spec.name!r} holds {value!r}; model input '
                    f'{spec.name!r} takes text (a bytes_list)')
    items.append(value)
  if len(items) != spec.size:
    return None, _wrong_shape(spec, len(items))
  values = np.empty(len(items), dtype=object)
  values[:] = items
  return values.reshape(spec.shape), None


def _wrong_shape(spec: InputSpec, size: int) -> Tuple[str, str]:
  return ('wrong shape', f'feature {spec.name!r} has {size} values; model input '
          f'{spec.name!r} takes {spec.size} (shape {spec.shape})')


class ExampleParser:
  """Turns one serialized example into a ScorableExample or a Quarantined record.

  Args:
    input_specs: the model's inputs: float, integer or `string` (text) dtypes.
    label_key: the int label feature; required per example when `label_required`.
    num_classes: labels must lie in [0, num_classes).
    example_id_key: feature holding the example's id, if the data has one.
    inputs_fn: optional user function from an example's features to model inputs.

  Refuses an input of another dtype (bool, complex), naming it. Per example, an input
  that is missing, has the wrong number of values, or values of the wrong kind
  (`not numeric` for floats, `not an integer`, `not text`), non-finite floats, or
  integers outside the input's dtype is quarantined with the reason.
  """

  def __init__(self, input_specs: List[InputSpec], label_key: Optional[str],
               label_required: bool, num_classes: int, example_id_key: Optional[str],
               inputs_fn: Optional[InputsFn] = None):
    unsupported = [f'{s.name!r} ({s.dtype})' for s in input_specs
                   if s.dtype in _UNREADABLE_DTYPES]
    if unsupported:
      raise ValueError(f'model input(s) {", ".join(unsupported)} have a dtype VoG cannot '
                       'read from examples; give float, integer or string inputs')
    self.input_specs = input_specs
    self.label_key = label_key
    self.label_required = label_required
    self.num_classes = num_classes
    self.example_id_key = example_id_key
    self.inputs_fn = inputs_fn

  def parse(self, split: str, serialized: bytes) -> Union[ScorableExample, Quarantined]:
    try:
      example = tf.train.Example.FromString(serialized)
    except Exception as e:  # protobuf raises DecodeError or RuntimeWarning-like errors.
      return Quarantined(split, fingerprint(serialized), 'unparsable record',
                         f'not a tf.Example ({type(e).__name__})', serialized)
    if serialized and example.ByteSize() == 0:  # Bytes the parser skipped as nothing.
      return Quarantined(split, fingerprint(serialized), 'unparsable record',
                         'not a tf.Example (no field could be read)', serialized)
    example_id, has_example_id = example_id_of(example, serialized, self.example_id_key)

    def quarantine(kind: str, detail: str) -> Quarantined:
      return Quarantined(split, example_id, kind, detail, serialized)

    label, problem = self._label(example)
    if problem:
      return quarantine(*problem)
    features = example_features(example)
    if self.inputs_fn is not None:
      try:
        raw_inputs = dict(self.inputs_fn(features))
      except Exception as e:  # A user function may fail on any one example.
        return quarantine('vog_inputs_fn failed', f'{type(e).__name__}: {e}')
    else:
      raw_inputs = features
    inputs = {}
    for spec in self.input_specs:
      if spec.name not in raw_inputs:
        return quarantine('missing feature', f'{spec.name!r} (a model input)')
      if spec.kind != 'float':
        read = _text_values if spec.kind == STRING else _integer_values
        values, problem = read(spec, raw_inputs[spec.name])
        if problem:
          return quarantine(*problem)
        inputs[spec.name] = values
        continue
      try:
        values = np.asarray(raw_inputs[spec.name],
                            dtype=np.float32 if spec.dtype == 'float32' else np.float64)
      except (TypeError, ValueError):
        return quarantine('not numeric', f'feature {spec.name!r}')
      if values.size != spec.size:
        return quarantine(*_wrong_shape(spec, values.size))
      if not np.all(np.isfinite(values)):
        return quarantine('non-finite value', f'feature {spec.name!r}')
      inputs[spec.name] = values.reshape(spec.shape).astype(spec.dtype)
    return ScorableExample(split, example_id, serialized, inputs, label, has_example_id)

  def parse_batch(self, records: Sequence[InputRecord]
                  ) -> Tuple['ScorableBatch', List[Quarantined]]:
    """Parses records together; each one is scorable or quarantined, in input order.

    Without a `vog_inputs_fn` the batch goes through one `tf.io.parse_example` call;
    a batch that call cannot take as a whole (a record with a missing feature, the
    wrong size or type, or bytes that are no tf.Example) is parsed record by record,
    which gives each record its own verdict. Both paths give the same results.
    """
    if self.inputs_fn is None and records:
      parsed = self._parse_together(records)
      if parsed is not None:
        return parsed
    good: List[Tuple[InputRecord, ScorableExample]] = []
    bad: List[Quarantined] = []
    for record in records:
      result = self.parse(record.split, record.serialized)
      if isinstance(result, Quarantined):
        bad.append(result._replace(file_index=record.file_index,
                                   record_index=record.record_index))
      else:
        good.append((record, result))
    inputs = {s.name: np.stack([e.inputs[s.name] for _, e in good]) if good else
              np.zeros((0,) + tuple(s.shape), dtype=s.numpy_dtype)
              for s in self.input_specs}
    return ScorableBatch([r for r, _ in good], [e.example_id for _, e in good],
                         [e.has_example_id for _, e in good], inputs,
                         [e.label for _, e in good]), bad

  def _feature_spec(self) -> Dict[str, Any]:
    kinds = {'float': tf.float32, 'int': tf.int64, STRING: tf.string}
    spec = {s.name: tf.io.FixedLenFeature([s.size], kinds[s.kind])
            for s in self.input_specs}
    if self.label_required:
      spec[self.label_key] = tf.io.FixedLenFeature([], tf.int64)
    elif self.label_key:
      spec[self.label_key] = tf.io.VarLenFeature(tf.int64)
    if self.example_id_key:
      spec[self.example_id_key] = tf.io.VarLenFeature(tf.string)
    return spec

  def _parse_together(self, records: Sequence[InputRecord]
                      ) -> Optional[Tuple['ScorableBatch', List[Quarantined]]]:
    """The one-call path; None when the batch needs record-by-record parsing."""
    if any(s.kind == 'float' and s.dtype not in ('float32', 'float64')
           for s in self.input_specs):
      return None
    try:
      parsed = tf.io.parse_example([r.serialized for r in records], self._feature_spec())
    except (tf.errors.InvalidArgumentError, ValueError):
      return None
    n = len(records)
    texts, has_ids = [None] * n, [False] * n
    if self.example_id_key:
      ids = parsed[self.example_id_key]
      for (row, position), value in zip(ids.indices.numpy(), ids.values.numpy()):
        if position == 0:  # The first value is the id, as in example_id_of.
          texts[row], has_ids[row] = value.decode('utf-8', 'replace'), True
    for i, record in enumerate(records):
      if texts[i] is None:
        texts[i] = fingerprint(record.serialized)
    verdict: List[Optional[Tuple[str, str]]] = [None] * n
    labels: List[Optional[int]] = [None] * n
    if self.label_required:
      values = parsed[self.label_key].numpy()
      labels = [int(v) for v in values]
      for i in np.flatnonzero((values < 0) | (values >= self.num_classes)):
        verdict[i] = ('label out of range',
                      f'{int(values[i])} is outside [0, {self.num_classes}) for this model')
    elif self.label_key:  # Optional labels: used where present and in range.
      found = parsed[self.label_key]
      rows = found.indices.numpy()[:, 0]
      if len(rows) != len(set(rows.tolist())):
        return None  # A record with several labels is quarantined record by record.
      for row, value in zip(rows, found.values.numpy()):
        if 0 <= value < self.num_classes:
          labels[row] = int(value)
    inputs = {}
    for spec in self.input_specs:
      values = parsed[spec.name].numpy()
      if spec.kind == 'float':
        for i in np.flatnonzero(~np.isfinite(values).all(axis=1)):
          if verdict[i] is None:
            verdict[i] = ('non-finite value', f'feature {spec.name!r}')
      elif spec.kind == 'int' and spec.dtype != 'int64':  # Parsed as int64.
        info = np.iinfo(spec.dtype)
        for i in np.flatnonzero(((values < info.min) | (values > info.max)).any(axis=1)):
          if verdict[i] is None:
            verdict[i] = _out_of_range(spec, values[i])
      inputs[spec.name] = values.reshape((n,) + tuple(spec.shape)).astype(spec.numpy_dtype)
    keep = [i for i in range(n) if verdict[i] is None]
    bad = [Quarantined(r.split, texts[i], verdict[i][0], verdict[i][1], r.serialized,
                       r.file_index, r.record_index)
           for i, r in enumerate(records) if verdict[i] is not None]
    batch = ScorableBatch([records[i] for i in keep], [texts[i] for i in keep],
                          [has_ids[i] for i in keep], {k: v[keep] for k, v in inputs.items()},
                          [labels[i] for i in keep])
    return batch, bad

  def _label(self, example: tf.train.Example
             ) -> Tuple[Optional[int], Optional[Tuple[str, str]]]:
    """(label, None) or (None, (kind, detail)); no label is fine when not required."""
    feature = example.features.feature.get(self.label_key) if self.label_key else None
    values = feature_values(feature) if feature is not None else None
    if not values:
      if not self.label_required:
        return None, None
      return None, ('missing label', f'no value for {self.label_key!r}')
    if len(values) != 1:
      return None, ('bad label', f'{self.label_key!r} has {len(values)} values; expected 1')
    value = values[0]
    if isinstance(value, bytes) or not np.isfinite(value) or float(value) != int(value):
      return None, ('bad label', f'{self.label_key!r} is {value!r}, not an integer class')
    label = int(value)
    if not 0 <= label < self.num_classes:
      if not self.label_required:
        return None, None
      return None, ('label out of range',
                    f'{label} is outside [0, {self.num_classes}) for this model')
    return label, None


def vog_feature_suffixes(columns: Mapping[str, Any], example_id_key: str,
                         example_ids: Optional[Sequence[Optional[str]]] = None,
                         with_signals: bool = True) -> List[bytes]:
  """Per example of a batch, the bytes that add its VoG fields to its serialized record.

  `record + suffix` parses as the example with the VoG fields added (and its id when
  it had none), a feature of the same name (from an earlier audit) replaced: protobuf
  merges the two on parsing, so the original bytes stay as they were. Each suffix is
  the wire encoding of a tf.train.Example holding only the new features, built by
  joining pieces encoded once per batch (floats through NumPy), not through a Python
  tf.train.Example per record; for the cost per record, see the README's "Speed and
  memory (`make bench`)".

  Args:
    columns: one batch of n examples, as 1-D columns of length n by field name: every
      report_format.FLOAT_FIELDS (floats), INT_FIELDS (integers or bools) and
      BYTES_FIELDS (vog_bucket, as int codes into vocabulary.BUCKETS); with
      `with_signals`, the field of every signal of signals.REGISTRY too (floats;
      counts as integers). Other keys are ignored.
    example_id_key: the feature that holds an example's id.
    example_ids: None when every example carries its id already; else one entry per
      example: None when it carries its id, or the id (str, or bytes) to add to it as
      `example_id_key`.
    with_signals: whether to add the label-error signals.

  Returns:
    n byte strings, in the order of the columns, to append each to its record.
    Floats are stored as float_list stores them (float32, NaN and inf kept bit for
    bit); integers exactly, as int64.

  Raises:
    ValueError: a column is missing or not of length n, an integer column holds
      non-integers or values outside int64, a bucket code is outside BUCKETS, or
      `example_ids` is not of length n.
  """
  registry = signals.REGISTRY if with_signals else ()
  float_keys = vocab.FLOAT_FIELDS + tuple(s.field for s in registry
                                        if s.kind != signals.COUNT)
  int_keys = vocab.INT_FIELDS + tuple(s.field for s in registry if s.kind == signals.COUNT)
  (bucket_key,) = vocab.BYTES_FIELDS
  needed = float_keys + int_keys + (bucket_key,)
  missing = [k for k in needed if k not in columns]
  if missing:
    raise ValueError(f'the VoG columns lack {", ".join(map(repr, missing))}')
  n = np.asarray(columns[vocab.VOG_SCORE]).size
  arrays = {}
  for key in needed:
    arrays[key] = np.asarray(columns[key]).reshape(-1)
    if arrays[key].size != n:
      raise ValueError(f'column {key!r} has {arrays[key].size} values; '
                       f'{vocab.VOG_SCORE!r} has {n}')
  if example_ids is not None and len(example_ids) != n:
    raise ValueError(f'example_ids has {len(example_ids)} entries for {n} examples')
  if n == 0:
    return []

  pieces = [_float_entries(float_keys, arrays)]
  for key in int_keys:
    values = _int64_column(key, arrays[key]).tolist()
    table = {v: _int_entry(key, v) for v in set(values)}
    pieces.append(list(map(table.__getitem__, values)))
  codes = arrays[bucket_key]
  if codes.dtype.kind not in 'iu' or (codes < 0).any() or (codes >= len(vocab.BUCKETS)).any():
    raise ValueError(f'column {bucket_key!r} holds {codes[:8].tolist()}...; expected int '
                     f'codes 0..{len(vocab.BUCKETS) - 1} into {vocab.BUCKETS}')
  bucket_entries = [_bytes_entry(bucket_key, b.encode('utf-8')) for b in vocab.BUCKETS]
  pieces.append(list(map(bucket_entries.__getitem__, codes.tolist())))
  if example_ids is not None:
    pieces.append(_id_entries(example_id_key, example_ids))

  bodies = list(map(b''.join, zip(*pieces)))
  # Example.features (field 1), length-delimited; one header per distinct length.
  headers = {size: b'\x0a' + _varint(size) for size in set(map(len, bodies))}
  return [headers[len(body)] + body for body in bodies]


_UINT64_MASK = (1 << 64) - 1
# Per int feature, the map entries of values seen before (0 <= value < _CACHED_INTS).
_INT_ENTRIES: Dict[str, Dict[int, bytes]] = {}
_CACHED_INTS = 1 << 12
_FLOAT_PREFIXES: Dict[str, bytes] = {}


def _varint(value: int) -> bytes:
  """The protobuf varint of a non-negative int (< 2**64)."""
  out = bytearray()
  while value > 0x7f:
    out.append((value & 0x7f) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _delimited(tag: int, payload: bytes) -> bytes:
  """A length-delimited field: its one-byte tag, the payload's length, the payload."""
  return bytes((tag,)) + _varint(len(payload)) + payload


def _map_entry(key: str, feature: bytes) -> bytes:
  """Features.feature's map entry (field 1): key (1) = `key`, value (2) = `feature`."""
  return _delimited(0x0a, _delimited(0x0a, key.encode('utf-8')) + _delimited(0x12, feature))


def _bytes_entry(key: str, value: bytes) -> bytes:
  """The map entry of a Feature with bytes_list (1) holding `value` (field 1)."""
  return _map_entry(key, _delimited(0x0a, _delimited(0x0a, value)))


def _id_entries(key: str, example_ids: Sequence[Optional[Union[str, bytes]]]
                ) -> List[bytes]:
  """Per example, the map entry of its id (b'' for None): a prefix by the id's length,
  encoded once per length, and the id's bytes."""
  prefixes: Dict[int, bytes] = {}
  entries = []
  for example_id in example_ids:
    if example_id is None:
      entries.append(b'')
      continue
    value = example_id if isinstance(example_id, bytes) else example_id.encode('utf-8')
    prefix = prefixes.get(len(value))
    if prefix is None:
      prefix = _bytes_entry(key, bytes(len(value)))[:-len(value) or None]
      prefixes[len(value)] = prefix
    entries.append(prefix + value)
  return entries


def _int_entry(key: str, value: int) -> bytes:
  """The map entry of a Feature with int64_list (3) holding `value`, packed (field 1)."""
  cache = _INT_ENTRIES.setdefault(key, {})
  entry = cache.get(value)
  if entry is None:
    entry = _map_entry(key, _delimited(0x1a, _delimited(0x0a, _varint(value & _UINT64_MASK))))
    if 0 <= value < _CACHED_INTS:
      cache[value] = entry
  return entry


def _float_prefix(key: str) -> bytes:
  """The map entry of a Feature with float_list (2) of one packed float, less its 4
  value bytes: the same for every value."""
  prefix = _FLOAT_PREFIXES.get(key)
  if prefix is None:
    prefix = _map_entry(key, _delimited(0x12, _delimited(0x0a, b'\0' * 4)))[:-4]
    _FLOAT_PREFIXES[key] = prefix
  return prefix


def _float_entries(keys: Sequence[str], arrays: Mapping[str, np.ndarray]) -> List[bytes]:
  """Per example, the map entries of the float features `keys`, as one byte string.

  The entries have a fixed size, so the batch's are one (n, width) byte array: the
  constant prefixes broadcast, each column's float32 bytes written in place.
  """
  prefixes = [_float_prefix(key) for key in keys]
  width = sum(len(p) + 4 for p in prefixes)
  n = arrays[keys[0]].size
  block = np.empty((n, width), dtype=np.uint8)
  offset = 0
  for key, prefix in zip(keys, prefixes):
    block[:, offset:offset + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    offset += len(prefix)
    values = arrays[key]
    if values.dtype != np.float32:  # Through float64, as float() then float_list round.
      with np.errstate(over='ignore'):  # Beyond float32's range is inf, as in float_list.
        values = np.asarray(values, dtype=np.float64).astype(np.float32)
    values = np.ascontiguousarray(values.astype('<f4', copy=False))
    block[:, offset:offset + 4] = values.view(np.uint8).reshape(n, 4)
    offset += 4
  return block.view(f'V{width}').reshape(n).tolist()


def _int64_column(key: str, values: np.ndarray) -> np.ndarray:
  """An integer (or bool) column as int64; refuses other kinds and values beyond int64."""
  if values.dtype.kind not in 'biu':
    raise ValueError(f'column {key!r} holds {values.dtype} values; expected integers')
  if values.dtype.kind == 'u' and values.size and values.max() > np.iinfo(np.int64).max:
    raise ValueError(f'column {key!r} holds {int(values.max())}, beyond int64')
  return values.astype(np.int64)
