"""Variance of Gradients for one batch of examples across K checkpoints.

The functional core of the product: TensorFlow and NumPy only, no Beam, no TFX.
This module implements the VoG computation as the README states it (after Agarwal,
D'souza and Hooker, arXiv 2008.11600):

* target class c is the label (``label`` mode) or the class predicted by the latest
  selected checkpoint (``predicted`` mode), fixed across checkpoints;
* S_t = d f_t(x) / d x with f the ``logit``, softmax ``prob`` or cross-entropy ``loss``
  at class c, taken with ``tf.GradientTape``;
* sigma is the population standard deviation of S_t over the K checkpoints, per element;
* vog_raw is the mean of sigma over every element of every gradient source of the
  example.

What x, the "input", is depends on the kind of model input:

* a float input is differentiated itself, at the tensor the model receives; inputs of
  rank 3 per example (height, width, channels) have S_t averaged over channels;
* an integer or text input (token or category ids, strings into TextVectorization or
  StringLookup) has no gradient. It stands for the output of the
  ``tf.keras.layers.Embedding`` layer(s) it feeds - found by tracing each Embedding's
  input back to the model inputs, or named with ``gradient_layers``. S_t of such an
  output [batch, T, D] (or [batch, D] for one id) is averaged over the embedding
  dimension D, giving one element per position; padding positions (the layer's mask
  with ``mask_zero=True``, or ids equal to ``pad_id``) are no elements at all.

A model mixing the two kinds averages over the elements of both. An example with no
float input whose positions are all padding has no element: its vog_raw is NaN, which
the audit quarantines as a non-finite gradient. `BatchScore.input_sigma` gives the
mean sigma per gradient source (and per feature of a float vector input).

Memory holds one batch of gradients at a time: the K checkpoints are folded into a
running mean and sum of squared deviations (Welford), never stacked.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
import tensorflow as tf

TARGETS = ('logit', 'prob', 'loss')
LABEL_MODES = ('label', 'predicted')
NORMALIZATIONS = ('raw', 'class', 'abs-class')


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
  """Raises ValueError naming the parameter when `value` is not one of `choices`."""
  if value not in choices:
    raise ValueError(f'{name}={value!r} is not supported; choose one of '
                     f'{", ".join(choices)}')


def as_logits_model(model: tf.keras.Model) -> tf.keras.Model:
  """Returns a model with the same inputs whose output is pre-softmax logits.

  A final softmax (a `Softmax` layer, an `Activation('softmax')` layer, or a layer
  built with `activation='softmax'`) is removed; any other output is taken to be
  logits already. Models with a single output unit are refused: VoG needs one output
  per class. The model passed in may be changed; pass a freshly loaded copy.
  """
  last = model.layers[-1]
  activation = getattr(last, 'activation', None)
  is_softmax_layer = isinstance(last, tf.keras.layers.Softmax) or (
      isinstance(last, tf.keras.layers.Activation) and
      getattr(activation, '__name__', '') == 'softmax')
  if is_softmax_layer:
    logits_model = tf.keras.Model(model.inputs, last.input)
  else:
    if getattr(activation, '__name__', '') == 'softmax':
      # Functional models call their layers anew on every call, so this takes effect.
      last.activation = tf.keras.activations.linear
    logits_model = model
  width = logits_model.outputs[0].shape[-1]
  if width is None or width < 2:
    raise ValueError(
        f'model {model.name!r} has an output of width {width}; VoG needs one output '
        'per class (at least 2) - export a softmax or logits head')
  return logits_model


def _target_values(logits: tf.Tensor, target_class: tf.Tensor,
                   target: str) -> tf.Tensor:
  """f_t(x) per example, shape (batch,)."""
  picked = tf.gather(logits, target_class, axis=1, batch_dims=1)
  if target == 'logit':
    return picked
  if target == 'prob':
    return tf.gather(tf.nn.softmax(logits, axis=-1), target_class, axis=1,
                     batch_dims=1)
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=target_class, logits=logits)


def _layers_of(model: tf.keras.Model) -> List[tf.keras.layers.Layer]:
  """Every layer of `model`, nested ones included, in the order Keras tracks them."""
  flatten = getattr(model, '_flatten_layers', None)
  if flatten is not None:
    return list(flatten(include_self=False, recursive=True))
  return [m for m in model.submodules if isinstance(m, tf.keras.layers.Layer)]


def _inputs_read(value: Any, placeholders: Mapping[Any, str]) -> Set[str]:
  """The names of the model inputs that the graph tensors in `value` are computed from.

  Walks the ops of the graph being traced back from `value`; `placeholders` maps the
  `ref()` of each model input's placeholder to the input's name.
  """
  found: Set[str] = set()
  stack = []
  for tensor in tf.nest.flatten(value, expand_composites=True):
    if not isinstance(tensor, tf.Tensor) or not hasattr(tensor, 'op'):
      continue
    if tensor.ref() in placeholders:
      found.add(placeholders[tensor.ref()])
    stack.append(tensor.op)
  seen = set()
  while stack:
    op = stack.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    for tensor in op.inputs:
      name = placeholders.get(tensor.ref())
      if name is not None:
        found.add(name)
      stack.append(tensor.op)
  return found


class IdOutsideVocabulary(tf.errors.InvalidArgumentError):
  """An integer input holds an id its Embedding has no row for: the model refuses the
  input, as TensorFlow's lookup does on a CPU (on a GPU the lookup gives zeros)."""


# Ops that pass ids through unchanged in value (a dtype or a shape aside).
_ID_PRESERVING_OPS = frozenset({'Identity', 'Cast', 'Reshape', 'ExpandDims', 'Squeeze'})


def _direct_input(value: Any, placeholders: Mapping[Any, str]) -> Optional[str]:
  """The model input whose values `value` is, through ops that keep values alike (a
  cast, a reshape), or None when it is computed from them (a lookup, a hash)."""
  if not isinstance(value, tf.Tensor) or not hasattr(value, 'op'):
    return None
  tensor = value
  while tensor.ref() not in placeholders:
    if tensor.op.type not in _ID_PRESERVING_OPS or not tensor.op.inputs:
      return None
    tensor = tensor.op.inputs[0]
  return placeholders[tensor.ref()]


class _LayerTrace:
  """What one trace collects from the gradient layers: per layer call, its watched
  output and the mask of its positions."""

  def __init__(self, tape: tf.GradientTape, placeholders: Mapping[Any, str]):
    self.tape = tape
    self.placeholders = placeholders
    # (layer name, output, position mask or None), in call order.
    self.outputs: List[Tuple[str, tf.Tensor, Optional[tf.Tensor]]] = []
    self.reads: Dict[str, Set[str]] = {}
    # Integer model input -> (vocabulary size, Embedding layer) of the smallest
    # Embedding that reads its ids as they are.
    self.vocab: Dict[str, Tuple[int, str]] = {}


class CheckpointGradients:
  """Batched gradients of one checkpoint, compiled once with `tf.function`.

  Call with the model inputs as a dict keyed by input name (`as_tensors` makes it) and
  an int array of target classes; returns (gradients per gradient source, logits).
  Gradients of float inputs keep the input's shape, except that inputs with rank 3 per
  example are averaged over the trailing channel axis. Gradients of a gradient layer's
  output are averaged over its last (embedding) axis and flattened to [batch, P]
  positions; `gradients_and_masks` also gives which positions are no padding.

  Args:
    model: a Keras model with one output per class (a final softmax is removed).
    target: one of TARGETS.
    gradient_layers: names of the layers whose outputs stand in for the integer and
      text inputs; None takes every Embedding layer whose input is computed from an
      integer or text model input.
    pad_id: the id that marks padding in the ids a gradient layer reads (in addition
      to the layer's own mask, as an Embedding with `mask_zero=True` has).

  Refuses an unknown target, a name in `gradient_layers` that is no layer of the model
  (naming those that are) or that the model does not call, a model with an integer or
  text input that reaches no gradient layer, and a model with neither a float input
  nor a gradient layer. Models with gradient layers are traced on construction.
  """

  def __init__(self, model: tf.keras.Model, target: str,
               gradient_layers: Optional[Sequence[str]] = None,
               pad_id: Optional[int] = None):
    check_choice('target', target, TARGETS)
    if pad_id is not None and (isinstance(pad_id, bool) or
                               not isinstance(pad_id, (int, np.integer))):
      raise ValueError(f'pad_id={pad_id!r} must be a whole number (the padding token '
                       'id), or None')
    if isinstance(gradient_layers, str):
      raise ValueError(f'gradient_layers={gradient_layers!r} must be a list of layer '
                       'names, not one text')
    self.model = as_logits_model(model)
    self.input_names = list(self.model.input_names)
    self.input_dtypes = {name: tensor.dtype for name, tensor
                         in zip(self.input_names, self.model.inputs)}
    self.float_inputs = [n for n in self.input_names if self.input_dtypes[n].is_floating]
    # Integer and text inputs: differentiated through the gradient layers they feed.
    self.other_inputs = [n for n in self.input_names if n not in self.float_inputs]
    self.num_classes = int(self.model.outputs[0].shape[-1])
    self.pad_id = None if pad_id is None else int(pad_id)
    self._target = target
    self._named = gradient_layers is not None
    self._candidates = self._gradient_layer_candidates(model.name, gradient_layers)
    if not self.float_inputs and not self._candidates:
      raise ValueError(
          f'model {model.name!r} has no float input and no Embedding layer; VoG '
          'differentiates with respect to float inputs, and for integer or text inputs '
          'with respect to the output of the Embedding layers they feed - name the '
          'layers that stand in for them with gradient_layers')
    if self.other_inputs and not self._candidates:
      self._refuse_unreached(model.name, self.other_inputs)
    # The layers whose outputs are gradient sources, in the order the model calls them;
    # known once the gradient function is traced.
    self.gradient_layers: List[str] = []
    self._reads: Dict[str, Set[str]] = {}
    # Integer input -> (vocabulary size, Embedding layer) for the inputs an Embedding
    # reads as they are: their ids are checked before the model sees them, since an
    # id outside the table is an error on a CPU but gives zeros on a GPU.
    self.vocabularies: Dict[str, Tuple[int, str]] = {}
    self._trace: Optional[_LayerTrace] = None
    # One trace for every batch size: the batch axis is left unknown.
    signature = ({n: tf.TensorSpec([None] + t.shape.as_list()[1:], t.dtype, name=n)
                  for n, t in zip(self.input_names, self.model.inputs)},
                 tf.TensorSpec([None], tf.int32, name='target_class'))
    # No tensor-dependent Python control flow here, so AutoGraph's source conversion
    # (seconds per checkpoint) buys nothing.
    self._gradients = tf.function(self._gradients_graph, input_signature=signature,
                                  autograph=False)
    if self._candidates:
      # Which layers the inputs reach is known from the trace: take it now, so a model
      # that cannot be scored is refused here rather than on its first batch.
      self._gradients.get_concrete_function()
      self._check_gradient_layers(model.name)

  @property
  def sources(self) -> List[str]:
    """The gradient sources: the float inputs, then the gradient layers."""
    return self.float_inputs + self.gradient_layers

  def _gradient_layer_candidates(self, model_name: str,
                                 gradient_layers: Optional[Sequence[str]]
                                 ) -> List[tf.keras.layers.Layer]:
    layers = _layers_of(self.model)
    if gradient_layers is None:
      if not self.other_inputs:
        return []
      return [l for l in layers if isinstance(l, tf.keras.layers.Embedding)]
    names = list(dict.fromkeys(gradient_layers))
    if not names:
      raise ValueError('gradient_layers=[] names no layer; give layer names, or None to '
                       'find the Embedding layers')
    by_name: Dict[str, List[tf.keras.layers.Layer]] = {}
    for layer in layers:
      by_name.setdefault(layer.name, []).append(layer)
    unknown = [n for n in names if n not in by_name]
    if unknown:
      raise ValueError(f'gradient_layers {unknown} are not layers of model '
                       f'{model_name!r}; its layers are {", ".join(by_name)}')
    shared = [n for n in names if len(by_name[n]) > 1]
    if shared:
      raise ValueError(f'gradient_layers {shared} each name several layers of model '
                       f'{model_name!r}; name layers whose names are unique')
    return [by_name[n][0] for n in names]

  def _check_gradient_layers(self, model_name: str) -> None:
    """Refuses named layers the model never calls and inputs no gradient layer reads."""
    trace_reads = self._reads
    if self._named:
      uncalled = [l.name for l in self._candidates if l.name not in trace_reads]
      if uncalled:
        raise ValueError(f'gradient_layers {uncalled} are layers of model '
                         f'{model_name!r} that it does not call on the way to its '
                         'output; name layers it calls')
    reached = set().union(*trace_reads.values()) if trace_reads else set()
    unreached = [n for n in self.other_inputs if n not in reached]
    if unreached:
      self._refuse_unreached(model_name, unreached)

  def _refuse_unreached(self, model_name: str, unreached: Sequence[str]) -> None:
    kinds = ', '.join(f'{n!r} ({self.input_dtypes[n].name})' for n in unreached)
    what = 'one of the gradient_layers' if self._named else 'an Embedding layer'
    raise ValueError(
        f'model {model_name!r} input(s) {kinds} reach no gradient layer: they are not '
        f'float, so VoG needs {what} to read them, and none does - name the layer whose '
        'output stands in for each of them with gradient_layers (e.g. the Embedding it '
        'feeds)')

  def _call_model(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    if len(self.input_names) == 1:
      return self.model(inputs[self.input_names[0]], training=False)
    return self.model([inputs[n] for n in self.input_names], training=False)

  def _watching_call(self, layer: tf.keras.layers.Layer, call):
    """`layer.call` that, during the trace, watches and collects the layer's output."""

    def watched(inputs, *args, **kwargs):
      outputs = call(inputs, *args, **kwargs)
      trace = self._trace
      if isinstance(layer, tf.keras.layers.Embedding):
        source = _direct_input(inputs, trace.placeholders)
        if source is not None and (source not in trace.vocab or
                                   layer.input_dim < trace.vocab[source][0]):
          trace.vocab[source] = (int(layer.input_dim), layer.name)
      reads = _inputs_read(inputs, trace.placeholders)
      if not self._named and not reads.intersection(self.other_inputs):
        return outputs  # An Embedding of float values: the float input is the source.
      if not isinstance(outputs, tf.Tensor) or not outputs.dtype.is_floating:
        raise ValueError(f'gradient layer {layer.name!r} gives {outputs!r}; name a layer '
                         'whose output is one float tensor, such as an Embedding')
      trace.tape.watch(outputs)
      # The mask Keras propagates to the layer, passed to `call` or carried by its input.
      mask = kwargs.get('mask', getattr(inputs, '_keras_mask', None))
      trace.outputs.append((layer.name, outputs,
                            self._position_mask(layer, inputs, outputs, mask)))
      trace.reads.setdefault(layer.name, set()).update(reads)
      return outputs

    return watched

  def _position_mask(self, layer, inputs, outputs, mask) -> Optional[tf.Tensor]:
    """True where a position of `outputs` (all axes but the last) is no padding."""
    masks = []
    if isinstance(layer, tf.keras.layers.Embedding):
      mask = layer.compute_mask(inputs)
    if isinstance(mask, tf.Tensor):
      masks.append(tf.cast(mask, tf.bool))
    if (self.pad_id is not None and isinstance(inputs, tf.Tensor) and
        inputs.dtype.is_integer):
      masks.append(tf.not_equal(inputs, tf.cast(self.pad_id, inputs.dtype)))
    positions = outputs.shape[1:-1] if outputs.shape.rank >= 2 else outputs.shape[1:]
    for m in masks:
      if not m.shape[1:].is_compatible_with(positions):
        raise ValueError(f'gradient layer {layer.name!r} has output shape '
                         f'{outputs.shape} but a padding mask of shape {m.shape}; name '
                         'a layer that maps each id to one vector, such as an Embedding')
    if not masks:
      return None
    return tf.reduce_all(tf.stack(masks), axis=0)

  def _gradients_graph(self, inputs, target_class):
    patched = []
    with tf.GradientTape() as tape:
      for name in self.float_inputs:
        tape.watch(inputs[name])
      self._trace = _LayerTrace(
          tape, {inputs[n].ref(): n for n in self.input_names})
      try:
        for layer in self._candidates:
          original = layer.__dict__.get('call')
          object.__setattr__(layer, 'call', self._watching_call(layer, layer.call))
          patched.append((layer, original))
        logits = self._call_model(inputs)
      finally:
        for layer, original in reversed(patched):
          if original is None:
            object.__delattr__(layer, 'call')
          else:
            object.__setattr__(layer, 'call', original)
      trace, self._trace = self._trace, None
      values = _target_values(logits, target_class, self._target)
      # Examples are independent at inference, so the gradient of the sum is per example.
      total = tf.reduce_sum(values)
    sources = [inputs[n] for n in self.float_inputs] + [t for _, t, _ in trace.outputs]
    grads = tape.gradient(total, sources,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    out = {}
    for name, grad in zip(self.float_inputs, grads):
      if grad.shape.rank == 4:
        grad = tf.reduce_mean(grad, axis=-1)
      out[name] = grad
    layer_grads: Dict[str, List[tf.Tensor]] = {}
    layer_masks: Dict[str, List[tf.Tensor]] = {}
    for (name, _, mask), grad in zip(trace.outputs, grads[len(self.float_inputs):]):
      if grad.dtype in (tf.float16, tf.bfloat16):
        grad = tf.cast(grad, tf.float32)
      if grad.shape.rank >= 2:
        grad = tf.reduce_mean(grad, axis=-1)  # Over the embedding dimension.
      rows = tf.shape(grad)[0]
      grad = tf.reshape(grad, [rows, -1])
      layer_grads.setdefault(name, []).append(grad)
      layer_masks.setdefault(name, []).append(
          tf.ones_like(grad, dtype=tf.bool) if mask is None else
          tf.reshape(mask, [rows, -1]))
    masks = {}
    for name in layer_grads:  # A layer called more than once: its calls side by side.
      out[name] = tf.concat(layer_grads[name], axis=1)
      masks[name] = tf.concat(layer_masks[name], axis=1)
    self.gradient_layers = list(layer_grads)
    self._reads = trace.reads
    self.vocabularies = dict(trace.vocab)
    return out, masks, logits

  def as_tensors(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, tf.Tensor]:
    """Casts NumPy inputs to the model's input dtypes.

    Float inputs are cast as given; integer inputs take integer values (whole-number
    floats too) within the dtype's range; text inputs take bytes or str values. Refuses
    a missing input and values of the wrong kind, naming the input.
    """
    missing = [n for n in self.input_names if n not in inputs]
    if missing:
      raise ValueError(f'model inputs {missing} are missing from the batch '
                       f'(it holds {sorted(inputs)})')
    return {n: self._as_tensor(n, inputs[n]) for n in self.input_names}

  def _as_tensor(self, name: str, values: Any) -> tf.Tensor:
    dtype = self.input_dtypes[name]
    if dtype.is_floating:
      return tf.convert_to_tensor(values, dtype=dtype)
    array = np.asarray(values)
    if dtype == tf.string:
      if array.dtype.kind not in 'OSU':
        raise ValueError(f'model input {name!r} takes text; the batch holds '
                         f'{array.dtype} values')
      try:
        return tf.convert_to_tensor(array, dtype=tf.string)
      except (TypeError, ValueError) as e:
        raise ValueError(f'model input {name!r} takes text (bytes or str values); the '
                         f'batch holds other values ({e})') from None
    if dtype.is_integer:
      kind = array.dtype.kind
      if kind == 'f':
        if not np.all(np.isfinite(array) & (array == np.round(array))):
          raise ValueError(f'model input {name!r} takes integers; the batch holds '
                           'values that are not whole numbers')
      elif kind not in 'iu':
        raise ValueError(f'model input {name!r} takes integers; the batch holds '
                         f'{array.dtype} values')
      if array.size and (array.min() < dtype.min or array.max() > dtype.max):
        raise ValueError(f'model input {name!r} takes {dtype.name} values; the batch '
                         f'holds values outside [{dtype.min}, {dtype.max}]')
      if name in self.vocabularies and array.size:
        size, layer = self.vocabularies[name]
        outside = (array < 0) | (array >= size)
        if outside.any():
          shown = sorted(set(np.asarray(array[outside]).astype(np.int64).tolist()))
          raise IdOutsideVocabulary(
              None, None, f'model input {name!r} holds ids {shown[:5]} outside the '
              f'vocabulary of Embedding layer {layer!r} (0 to {size - 1})')
      return tf.convert_to_tensor(array.astype(dtype.as_numpy_dtype), dtype=dtype)
    return tf.convert_to_tensor(array, dtype=dtype)

  def logits(self, inputs: Dict[str, tf.Tensor]) -> np.ndarray:
    return self._call_model(inputs).numpy()

  def gradients_and_masks(self, inputs: Dict[str, tf.Tensor], target_class: np.ndarray
                          ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray],
                                     np.ndarray]:
    """(gradients per source, position masks per gradient layer, logits).

    A mask is a bool [batch, P] array beside the layer's [batch, P] gradient, True
    where the position is no padding.
    """
    grads, masks, logits = self.gradient_tensors(inputs, target_class)
    return ({n: g.numpy() for n, g in grads.items()},
            {n: m.numpy() for n, m in masks.items()}, logits.numpy())

  def gradient_tensors(self, inputs: Dict[str, tf.Tensor], target_class: np.ndarray
                       ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor], tf.Tensor]:
    """`gradients_and_masks` as tensors, left where they were computed (on the GPU when
    the model runs there)."""
    return self._gradients(inputs, tf.constant(target_class, tf.int32))

  def __call__(self, inputs: Dict[str, tf.Tensor],
               target_class: np.ndarray) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    grads, _, logits = self.gradients_and_masks(inputs, target_class)
    return grads, logits


class BatchScore:
  """Scores of one batch: vog_raw, the target class, the latest checkpoint's class, every
  checkpoint's logits ([K, N, C], earliest first) for the signals of signals.py, and
  `input_sigma`.

  `input_sigma` maps each gradient source to its mean sigma per example ([N] float64):
  a float input by name, over its elements; a gradient layer by name, over its
  positions that are no padding (NaN for an example whose positions all are). A float
  input with a vector of F > 1 values per example also has one entry per value,
  `f'{name}[{j}]'`, which says which column moved most.
  """

  def __init__(self, vog_raw: np.ndarray, target_class: np.ndarray,
               predicted_class: np.ndarray, logits: Optional[np.ndarray] = None,
               input_sigma: Optional[Dict[str, np.ndarray]] = None):
    self.vog_raw = vog_raw
    self.target_class = target_class
    self.predicted_class = predicted_class
    self.logits = logits
    self.input_sigma = {} if input_sigma is None else input_sigma


@tf.function(autograph=False, reduce_retracing=True)
def _welford_step(mean: tf.Tensor, sq_dev: tf.Tensor, value: tf.Tensor, k: tf.Tensor
                  ) -> Tuple[tf.Tensor, tf.Tensor]:
  """One step of Welford's update with the k-th value (k >= 2), as one graph."""
  delta = value - mean
  mean = mean + delta / k
  return mean, sq_dev + delta * (value - mean)


def _masked_mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
  """total / count per example; NaN where count is 0."""
  out = np.full(total.shape, np.nan, dtype=np.float64)
  np.divide(total, count, out=out, where=count > 0)
  return out


class VogScorer:
  """VoG for batches of examples over K checkpoints, latest checkpoint last.

  `models` are Keras models sharing one input signature, ordered by training step;
  `gradient_layers` and `pad_id` are those of CheckpointGradients. Refuses fewer than
  2 checkpoints, an unknown target or label mode, checkpoints that differ in inputs,
  classes or gradient layers, everything CheckpointGradients refuses, and (on scoring)
  labels outside [0, num_classes).
  """

  def __init__(self, models: Sequence[tf.keras.Model], target: str = 'loss',
               label_mode: str = 'label',
               gradient_layers: Optional[Sequence[str]] = None,
               pad_id: Optional[int] = None):
    check_choice('label_mode', label_mode, LABEL_MODES)
    if len(models) < 2:
      raise ValueError(f'VoG needs at least 2 checkpoints, got {len(models)}')
    self.checkpoints = [CheckpointGradients(m, target, gradient_layers, pad_id)
                        for m in models]
    self.label_mode = label_mode
    first = self.checkpoints[0]
    for k, ckpt in enumerate(self.checkpoints[1:], start=1):
      if ckpt.input_names != first.input_names or ckpt.num_classes != first.num_classes:
        raise ValueError(f'checkpoint {k} has inputs {ckpt.input_names} and '
                         f'{ckpt.num_classes} classes, checkpoint 0 has '
                         f'{first.input_names} and {first.num_classes}; all '
                         'checkpoints must come from one model architecture')
      if ckpt.gradient_layers != first.gradient_layers:
        raise ValueError(f'checkpoint {k} has gradient layers {ckpt.gradient_layers}, '
                         f'checkpoint 0 has {first.gradient_layers}; all checkpoints '
                         'must come from one model architecture')
    self.input_names = first.input_names
    self.float_inputs = first.float_inputs
    self.gradient_layers = first.gradient_layers
    self.num_classes = first.num_classes

  @property
  def sources(self) -> List[str]:
    """The gradient sources: the float inputs, then the gradient layers."""
    return self.checkpoints[0].sources

  def score(self, inputs: Mapping[str, np.ndarray],
            labels: Optional[np.ndarray] = None) -> BatchScore:
    """VoG of one batch. `inputs` maps input name to an array with the batch first."""
    tensors = self.checkpoints[-1].as_tensors(inputs)
    latest = self.checkpoints[-1]
    if self.label_mode == 'predicted':
      target_class = np.argmax(latest.logits(tensors), axis=-1).astype(np.int64)
    else:
      if labels is None:
        raise ValueError("label_mode='label' needs labels")
      target_class = np.asarray(labels, dtype=np.int64).reshape(-1)
      bad = (target_class < 0) | (target_class >= self.num_classes)
      if bad.any():
        raise ValueError(f'labels {sorted(set(target_class[bad].tolist()))} are outside '
                         f'[0, {self.num_classes})')
    # Welford's running mean and squared deviations, in float64 where the gradients are
    # (the GPU when there is one): only each source's sigma crosses to the host, once
    # per batch, with the latest masks and every checkpoint's logits.
    mean: Dict[str, tf.Tensor] = {}
    sq_dev: Dict[str, tf.Tensor] = {}
    mask_tensors: Dict[str, tf.Tensor] = {}
    every_logits = []
    for k, ckpt in enumerate(self.checkpoints, start=1):
      grads, mask_tensors, logits_k = ckpt.gradient_tensors(tensors, target_class)
      every_logits.append(logits_k)
      for name, grad in grads.items():
        grad = tf.cast(grad, tf.float64)
        if k == 1:
          mean[name] = grad
          sq_dev[name] = tf.zeros_like(grad)
        else:
          if grad.shape != mean[name].shape:
            raise ValueError(f'checkpoint {k - 1} gives gradients of shape '
                             f'{tuple(grad.shape)} for {name!r}, checkpoint 0 of shape '
                             f'{tuple(mean[name].shape)}; all checkpoints must come from '
                             'one model architecture')
          mean[name], sq_dev[name] = _welford_step(mean[name], sq_dev[name], grad,
                                                   tf.constant(float(k), tf.float64))
    k_total = tf.constant(float(len(self.checkpoints)), tf.float64)
    sigmas = {name: tf.sqrt(value / k_total).numpy() for name, value in sq_dev.items()}
    masks = {name: m.numpy() for name, m in mask_tensors.items()}
    every_logits = [l.numpy() for l in every_logits]
    logits = every_logits[-1]
    batch = target_class.shape[0]
    sigma_sum = np.zeros(batch, dtype=np.float64)
    elements = 0
    input_sigma: Dict[str, np.ndarray] = {}
    for name in self.float_inputs:
      sigma = sigmas[name].reshape(batch, -1)
      sigma_sum += sigma.sum(axis=1)
      elements += sigma.shape[1]
      input_sigma[name] = sigma.mean(axis=1)
      if tensors[name].shape.rank == 2 and sigma.shape[1] > 1:  # A vector per example.
        for j in range(sigma.shape[1]):
          input_sigma[f'{name}[{j}]'] = sigma[:, j].copy()
    predicted = np.argmax(logits, axis=-1).astype(np.int64)
    if not self.gradient_layers:
      return BatchScore(sigma_sum / elements, target_class, predicted,
                        np.stack(every_logits), input_sigma)
    counts = np.full(batch, elements, dtype=np.int64)
    for name in self.gradient_layers:
      # Padding is told by the ids, which every checkpoint reads alike: the latest's mask.
      valid = masks[name]
      sigma = sigmas[name]
      layer_sum = np.where(valid, sigma, 0.0).sum(axis=1)
      layer_count = valid.sum(axis=1)
      input_sigma[name] = _masked_mean(layer_sum, layer_count)
      sigma_sum += layer_sum
      counts += layer_count
    return BatchScore(_masked_mean(sigma_sum, counts), target_class, predicted,
                      np.stack(every_logits), input_sigma)
