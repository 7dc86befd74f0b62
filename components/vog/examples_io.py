"""From serialized tf.Examples to model inputs, and back with the VoG fields added.

Pure Python + TensorFlow protos + NumPy; runs inside Beam workers and in the driver.
Each example either becomes a `ScorableExample` or a `Quarantined` record with the
reason it cannot be scored. Nothing is dropped silently.
"""

import base64
import hashlib
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

InputsFn = Callable[[Dict[str, np.ndarray]], Mapping[str, Any]]


class InputSpec(NamedTuple):
  """One model input: its name, per-example shape and NumPy dtype name."""
  name: str
  shape: Tuple[int, ...]
  dtype: str

  @property
  def size(self) -> int:
    return int(np.prod(self.shape)) if self.shape else 1


def input_specs_of(model: tf.keras.Model) -> List[InputSpec]:
  """The per-example input specs of a Keras model (batch axis dropped)."""
  specs = []
  for name, tensor in zip(model.input_names, model.inputs):
    shape = tuple(tensor.shape.as_list()[1:])
    specs.append(InputSpec(name, shape, tensor.dtype.as_numpy_dtype.__name__))
  return specs


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

  @property
  def reason(self) -> str:
    return f'{self.kind}: {self.detail}'

  def to_json(self) -> Dict[str, Any]:
    return {'split': self.split, 'example_id': self.example_id, 'kind': self.kind,
            'reason': self.reason,
            'record_base64': base64.b64encode(self.serialized).decode('ascii')}


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

  Element-wise conversion of a repeated field costs ~100x more for an image.
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


class ExampleParser:
  """Turns one serialized example into a ScorableExample or a Quarantined record.

  Args:
    input_specs: the model's inputs.
    label_key: the int label feature; required per example when `label_required`.
    num_classes: labels must lie in [0, num_classes).
    example_id_key: feature holding the example's id, if the data has one.
    inputs_fn: optional user function from an example's features to model inputs.
  """

  def __init__(self, input_specs: List[InputSpec], label_key: Optional[str],
               label_required: bool, num_classes: int, example_id_key: Optional[str],
               inputs_fn: Optional[InputsFn] = None):
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
      try:
        values = np.asarray(raw_inputs[spec.name],
                            dtype=np.float32 if spec.dtype == 'float32' else np.float64)
      except (TypeError, ValueError):
        return quarantine('not numeric', f'feature {spec.name!r}')
      if values.size != spec.size:
        return quarantine('wrong shape', f'feature {spec.name!r} has {values.size} '
                          f'values; model input {spec.name!r} takes {spec.size} '
                          f'(shape {spec.shape})')
      if not np.all(np.isfinite(values)):
        return quarantine('non-finite value', f'feature {spec.name!r}')
      inputs[spec.name] = values.reshape(spec.shape).astype(spec.dtype)
    return ScorableExample(split, example_id, serialized, inputs, label, has_example_id)

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


def with_vog_features(serialized: bytes, example_id_key: str, example_id: str,
                      fields: Mapping[str, Any], has_example_id: bool) -> bytes:
  """The example with the VoG fields added (and its id when it had none).

  Appends a serialized Example holding only the new features: protobuf merges the
  two on parsing, so the original bytes stay as they were and a feature of the same
  name (from an earlier audit) is replaced.
  """
  extra = tf.train.Example()
  feature = extra.features.feature
  if not has_example_id:
    feature[example_id_key].bytes_list.value.append(example_id.encode('utf-8'))
  for key in ('vog_score', 'vog_raw', 'vog_percentile'):
    feature[key].float_list.value.append(float(fields[key]))
  for key in ('vog_decile', 'vog_flagged'):
    feature[key].int64_list.value.append(int(fields[key]))
  feature['vog_target_class'].int64_list.value.append(int(fields['target_class']))
  feature['vog_bucket'].bytes_list.value.append(fields['vog_bucket'].encode('utf-8'))
  return serialized + extra.SerializeToString()
