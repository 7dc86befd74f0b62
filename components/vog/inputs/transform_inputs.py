"""Model inputs from raw tf.Examples through a TFX Transform graph.

Where a pipeline puts `Transform` between ExampleGen and the Trainer, the model takes
transformed features. `TransformParser` has ExampleParser's interface: it reads the
raw serialized examples with the transform output's raw feature spec, applies
`TFTransformOutput.transform_features_layer()` to the whole batch, and hands the
transformed features the model takes to the scorer, converted to the model's input
dtypes. The label and the example id are read from the raw example as ExampleParser
reads them. A record whose raw features the transform cannot take is quarantined
with the feature named; nothing fails a batch. The scored examples keep the raw bytes.
"""

import threading
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from components.vog.inputs import examples_io
from components.vog.inputs.examples_io import (InputRecord, InputSpec, Quarantined,
                                        ScorableBatch, ScorableExample)

Problem = Tuple[str, str]  # (kind, detail) of a Quarantined record.

_FLOAT_DTYPES = ('float16', 'bfloat16', 'float32', 'float64')
_INT_DTYPES = ('int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64')
_STRING_DTYPES = ('string', 'object', 'bytes', 'bytes_', 'str')
_LIST_OF_DTYPE = {tf.float32: 'float_list', tf.int64: 'int64_list', tf.string: 'bytes_list'}


class _Graph(NamedTuple):
  """A transform graph as a worker uses it."""
  output: tft.TFTransformOutput
  layer: Any  # output.transform_features_layer()
  raw_spec: Dict[str, Any]  # output.raw_feature_spec()


# One loaded transform graph per folder and worker process, shared by every parser and
# thread of the process.
_LOADED: Dict[str, _Graph] = {}
_LOADING = threading.Lock()


class TransformGraphError(ValueError):
  """A transform graph that cannot be read, or that does not produce the model inputs."""


def value_kind(dtype: Union[str, tf.DType]) -> Optional[str]:
  """'float', 'int' or 'string' for a model input's or a feature's dtype; None if other."""
  name = dtype.name if isinstance(dtype, tf.DType) else str(dtype)
  if name in _FLOAT_DTYPES:
    return 'float'
  if name in _INT_DTYPES:
    return 'int'
  if name in _STRING_DTYPES:
    return 'string'
  return None


def _numpy_dtype(spec: InputSpec):
  return object if value_kind(spec.dtype) == 'string' else np.dtype(spec.dtype)


def load_transform_output(transform_graph_dir: str) -> tft.TFTransformOutput:
  """The TFTransformOutput of a TransformGraph folder, read now.

  Raises TransformGraphError naming the folder when it is missing or is not the
  output of Transform (transform_fn/, transformed_metadata/ and metadata/).
  """
  if not tf.io.gfile.isdir(transform_graph_dir):
    raise TransformGraphError(f'transform graph {transform_graph_dir} does not exist; give '
                              'the transform_graph output of Transform')
  output = tft.TFTransformOutput(transform_graph_dir)
  try:
    output.raw_feature_spec()
    output.transformed_feature_spec()
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise TransformGraphError(
        f'transform graph {transform_graph_dir} cannot be read ({type(e).__name__}: '
        f'{str(e).splitlines()[0] if str(e) else ""}); give the transform_graph output '
        'of Transform, with its metadata/ (raw features) and transformed_metadata/') from e
  return output


def required_raw_features(output: tft.TFTransformOutput) -> List[str]:
  """The raw features every example must carry: fixed-length ones without a default."""
  return sorted(name for name, f in output.raw_feature_spec().items()
                if isinstance(f, tf.io.FixedLenFeature) and f.default_value is None)


def check_model_inputs(output: tft.TFTransformOutput, input_specs: Sequence[InputSpec],
                       transform_graph_dir: str) -> None:
  """Refuses model inputs the transform graph does not produce, or cannot feed.

  Raises TransformGraphError naming the model input and what the graph produces: an
  input the graph has no output of that name for, a string output into a numeric input
  (or the reverse), and a fixed-length output whose size differs from the input's.
  """
  produced = output.transformed_feature_spec()
  missing = [s.name for s in input_specs if s.name not in produced]
  if missing:
    raise TransformGraphError(
        f'model input(s) {missing} are not produced by the transform graph '
        f'{transform_graph_dir} (it produces {sorted(produced)}) - name the model inputs '
        'like the transformed features, or give the transform graph the model was '
        'trained on')
  for spec in input_specs:
    feature = produced[spec.name]
    made, takes = value_kind(feature.dtype), value_kind(spec.dtype)
    if takes is None or made is None or (made == 'string') != (takes == 'string'):
      raise TransformGraphError(
          f'model input {spec.name!r} takes {spec.dtype}; the transform graph '
          f'{transform_graph_dir} produces {spec.name!r} as {feature.dtype.name} - '
          'give the transform graph the model was trained on')
    if isinstance(feature, tf.io.FixedLenFeature):
      size = int(np.prod(feature.shape)) if feature.shape else 1
      if size != spec.size:
        raise TransformGraphError(
            f'model input {spec.name!r} takes {spec.size} values (shape {spec.shape}); '
            f'the transform graph {transform_graph_dir} produces {size} (shape '
            f'{list(feature.shape)}) - give the transform graph the model was trained on')


def _loaded(transform_graph_dir: str) -> _Graph:
  """The graph's output and its transform layer, built on first use in this process."""
  with _LOADING:
    if transform_graph_dir not in _LOADED:
      output = load_transform_output(transform_graph_dir)
      _LOADED[transform_graph_dir] = _Graph(output, output.transform_features_layer(),
                                            output.raw_feature_spec())
      logging.info('Loaded the transform graph %s', transform_graph_dir)
    return _LOADED[transform_graph_dir]


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[0] if text else ""}'


class TransformParser:
  """Turns raw serialized examples into transformed model inputs, or quarantines them.

  Same interface as examples_io.ExampleParser (`parse`, `parse_batch`). The transform
  graph is loaded on first use, once per process, so that the parser can be built by a
  factory inside every Beam worker.

  Args:
    transform_graph_dir: the TransformGraph folder (Transform's `transform_graph`).
    input_specs: the model's inputs; each is a transformed feature of the same name
      (see `check_model_inputs`).
    label_key, label_required, num_classes, example_id_key: as for ExampleParser; the
      label and id are read from the raw example.
  """

  def __init__(self, transform_graph_dir: str, input_specs: List[InputSpec],
               label_key: Optional[str], label_required: bool, num_classes: int,
               example_id_key: Optional[str]):
    self.transform_graph_dir = transform_graph_dir
    self.input_specs = input_specs
    # Reads the label and id of each record (and quarantines the unparsable) exactly as
    # the parser of untransformed examples does; it takes no model input.
    self._ids_and_labels = examples_io.ExampleParser(
        [], label_key, label_required, num_classes, example_id_key)

  @property
  def transform_output(self) -> tft.TFTransformOutput:
    return _loaded(self.transform_graph_dir).output

  @property
  def raw_feature_spec(self) -> Dict[str, Any]:
    """What the raw examples are parsed with: the graph's raw feature spec, all of it."""
    return _loaded(self.transform_graph_dir).raw_spec

  def transform_raw(self, raw: Mapping[str, Any]) -> Dict[str, Any]:
    """The transform layer applied to parsed raw features (batch first)."""
    return _loaded(self.transform_graph_dir).layer(dict(raw))

  def parse(self, split: str, serialized: bytes) -> Union[ScorableExample, Quarantined]:
    """One record: a ScorableExample with its transformed inputs, or Quarantined."""
    batch, bad = self.parse_batch([InputRecord(split, -1, -1, serialized)])
    if bad:
      return bad[0]
    inputs = {k: np.asarray(v[0]) for k, v in batch.inputs.items()}
    return ScorableExample(split, batch.example_ids[0], serialized, inputs, batch.labels[0],
                           batch.has_example_ids[0])

  def parse_batch(self, records: Sequence[InputRecord]
                  ) -> Tuple[ScorableBatch, List[Quarantined]]:
    """Parses and transforms records together; each is scorable or quarantined.

    The raw features go through one `tf.io.parse_example` call and one call of the
    transform layer; a batch either call refuses is taken apart, so that only the
    records at fault are quarantined, each with its own reason.
    """
    known, bad = self._ids_and_labels.parse_batch(records)
    verdict: List[Optional[Problem]] = [None] * len(known.records)
    raw = self._parse_raw(known.records, verdict)
    transformed = self._transform(known.records, raw, verdict)
    inputs = self._model_inputs(transformed, verdict)
    keep = [i for i, v in enumerate(verdict) if v is None]
    for i, problem in enumerate(verdict):
      if problem is not None:
        r = known.records[i]
        bad.append(Quarantined(r.split, known.example_ids[i], problem[0], problem[1],
                               r.serialized, r.file_index, r.record_index))
    position = {(r.split, r.file_index, r.record_index): n for n, r in enumerate(records)}
    bad.sort(key=lambda q: position.get((q.split, q.file_index, q.record_index), -1))
    batch = ScorableBatch(
        [known.records[i] for i in keep], [known.example_ids[i] for i in keep],
        [known.has_example_ids[i] for i in keep],
        {s.name: (inputs[s.name][keep] if inputs is not None else
                  np.zeros((0,) + tuple(s.shape), dtype=_numpy_dtype(s)))
         for s in self.input_specs},
        [known.labels[i] for i in keep])
    return batch, bad

  def _parse_raw(self, records: Sequence[InputRecord],
                 verdict: List[Optional[Problem]]) -> Optional[Dict[str, Any]]:
    """The raw features of the records whose verdict is still None, batch first.

    A record that the batch parse cannot take gets its verdict (the raw feature named);
    None when no record is left.
    """
    spec = self.raw_feature_spec
    live = [i for i, v in enumerate(verdict) if v is None]
    if not live:
      return None
    try:
      return tf.io.parse_example([records[i].serialized for i in live], spec)
    except (tf.errors.InvalidArgumentError, ValueError):
      pass
    for i in live:
      verdict[i] = _raw_problem(records[i].serialized, spec)
    live = [i for i, v in enumerate(verdict) if v is None]
    if not live:
      return None
    return tf.io.parse_example([records[i].serialized for i in live], spec)

  def _transform(self, records: Sequence[InputRecord], raw: Optional[Dict[str, Any]],
                 verdict: List[Optional[Problem]]) -> Optional[Dict[str, Any]]:
    """The transformed features of the records whose verdict is still None."""
    if raw is None:
      return None
    try:
      return self.transform_raw(raw)
    except (tf.errors.OpError, ValueError, TypeError):
      pass
    spec = self.raw_feature_spec
    for i in [i for i, v in enumerate(verdict) if v is None]:
      try:
        self.transform_raw(tf.io.parse_example([records[i].serialized], spec))
      except (tf.errors.OpError, ValueError, TypeError) as e:
        verdict[i] = ('transform failed', _first_line(e))
    live = [i for i, v in enumerate(verdict) if v is None]
    if not live:
      return None
    return self.transform_raw(
        tf.io.parse_example([records[i].serialized for i in live], spec))

  def _model_inputs(self, transformed: Optional[Dict[str, Any]],
                    verdict: List[Optional[Problem]]) -> Optional[Dict[str, np.ndarray]]:
    """Model inputs for every record (zeros where the verdict is not None), in the
    model's dtypes; records whose transformed features do not fit get their verdict."""
    if transformed is None:
      return None
    live = [i for i, v in enumerate(verdict) if v is None]
    out = {}
    for spec in self.input_specs:
      rows, problems = _rows_for(spec, transformed[spec.name])
      values = np.zeros((len(verdict),) + tuple(spec.shape), dtype=_numpy_dtype(spec))
      for j, i in enumerate(live):
        if problems[j] is not None:
          verdict[i] = verdict[i] or problems[j]
        else:
          values[i] = rows[j]
      out[spec.name] = values
    return out


def _rows_for(spec: InputSpec, tensor: Any
              ) -> Tuple[np.ndarray, List[Optional[Problem]]]:
  """(values [n, *spec.shape] in the input's dtype, a problem or None per row)."""
  if isinstance(tensor, tf.SparseTensor):
    tensor = tf.RaggedTensor.from_sparse(tensor)
  if isinstance(tensor, tf.RaggedTensor):
    n = int(tensor.nrows())
    lengths = tensor.row_lengths().numpy() if tensor.ragged_rank == 1 else None
    flat = tensor.flat_values.numpy()
    if lengths is None:
      raise TransformGraphError(f'transformed feature {spec.name!r} is nested ragged; '
                                f'model input {spec.name!r} takes shape {spec.shape}')
    starts = np.concatenate([[0], np.cumsum(lengths)])
    problems: List[Optional[Problem]] = [None] * n
    values = np.zeros((n, spec.size), dtype=flat.dtype)
    for r in range(n):
      if lengths[r] != spec.size:
        problems[r] = ('wrong shape', f'transformed feature {spec.name!r} has {lengths[r]} '
                       f'values; model input {spec.name!r} takes {spec.size} '
                       f'(shape {spec.shape})')
      else:
        values[r] = flat[starts[r]:starts[r + 1]]
  else:
    array = tensor.numpy() if hasattr(tensor, 'numpy') else np.asarray(tensor)
    n = array.shape[0]
    size = int(np.prod(array.shape[1:])) if array.ndim > 1 else 1
    if size != spec.size:
      raise TransformGraphError(
          f'transformed feature {spec.name!r} has {size} values per example; model input '
          f'{spec.name!r} takes {spec.size} (shape {spec.shape})')
    values = array.reshape((n, spec.size))
    problems = [None] * n
  return _converted(spec, values, problems)


def _converted(spec: InputSpec, values: np.ndarray, problems: List[Optional[Problem]]
               ) -> Tuple[np.ndarray, List[Optional[Problem]]]:
  """Values [n, size] as [n, *shape] in the model input's dtype; rows that do not
  convert (non-finite floats, fractional values into an integer input) get a problem."""
  n = values.shape[0]
  kind = value_kind(spec.dtype)
  shape = (n,) + tuple(spec.shape)
  if kind == 'string':
    return values.astype(object).reshape(shape), problems
  if values.dtype == object:  # Text into a numeric input; refused at plan time too.
    raise TransformGraphError(f'transformed feature {spec.name!r} is text; model input '
                              f'{spec.name!r} takes {spec.dtype}')
  finite = np.ones(n, bool)
  whole = np.ones(n, bool)
  if values.size:
    finite = np.isfinite(values).all(axis=1)
    if kind == 'int' and values.dtype.kind == 'f':
      whole = (np.mod(np.where(np.isfinite(values), values, 0), 1) == 0).all(axis=1)
  for r in range(n):
    if problems[r] is not None:
      continue
    if not finite[r]:
      problems[r] = ('non-finite value', f'transformed feature {spec.name!r}')
    elif not whole[r]:
      problems[r] = ('not an integer', f'transformed feature {spec.name!r} has a '
                     f'fractional value; model input {spec.name!r} takes {spec.dtype}')
  fine = np.asarray([p is None for p in problems], dtype=bool)
  safe = np.where(fine[:, None], values, 0)
  return safe.astype(spec.dtype).reshape(shape), problems


def _raw_problem(serialized: bytes, spec: Mapping[str, Any]) -> Optional[Problem]:
  """Why one record's raw features cannot be parsed with `spec`; None if they can."""
  try:
    features = tf.train.Example.FromString(serialized).features.feature
  except Exception as e:  # protobuf raises DecodeError or RuntimeWarning-like errors.
    return ('unparsable record', f'not a tf.Example ({type(e).__name__})')
  for name, feature_spec in sorted(spec.items()):
    if not isinstance(feature_spec, (tf.io.FixedLenFeature, tf.io.VarLenFeature)):
      continue
    feature = features.get(name)
    kind = feature.WhichOneof('kind') if feature is not None else None
    wanted = _LIST_OF_DTYPE.get(feature_spec.dtype)
    count = len(getattr(feature, kind).value) if kind else 0
    fixed = isinstance(feature_spec, tf.io.FixedLenFeature)
    if fixed and feature_spec.default_value is None and not count:
      return ('missing feature', f'{name!r} (a raw feature the transform graph reads)')
    if count and kind != wanted:
      return ('wrong type', f'feature {name!r} holds {kind}; the transform graph reads '
                            f'{feature_spec.dtype.name} ({wanted})')
    size = int(np.prod(feature_spec.shape)) if fixed and feature_spec.shape else 1
    if fixed and count and count != size:
      return ('wrong shape', f'feature {name!r} has {count} values; the transform graph '
                             f'reads {size} (shape {list(feature_spec.shape)})')
  try:
    tf.io.parse_example([serialized], dict(spec))
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    return ('bad raw feature', _first_line(e))
  return None
