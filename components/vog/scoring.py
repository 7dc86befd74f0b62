"""Variance of Gradients for one batch of examples across K checkpoints.

The functional core of the product: TensorFlow and NumPy only, no Beam, no TFX.
This module implements the VoG computation as the README states it (after Agarwal,
D'souza and Hooker, arXiv 2008.11600):

* target class c is the label (``label`` mode) or the class predicted by the latest
  selected checkpoint (``predicted`` mode), fixed across checkpoints;
* S_t = d f_t(x) / d x with f the ``logit``, softmax ``prob`` or cross-entropy ``loss``
  at class c, taken with ``tf.GradientTape`` on the tensors the model receives;
* inputs of rank 3 per example (height, width, channels) have S_t averaged over channels;
* sigma is the population standard deviation of S_t over the K checkpoints, per element;
* vog_raw is the mean of sigma over every element of every float input.

Memory holds one batch of gradients at a time: the K checkpoints are folded into a
running mean and sum of squared deviations (Welford), never stacked.
"""

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components.vog.percentiles import normalize_score

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


class CheckpointGradients:
  """Batched input gradients of one checkpoint, compiled once with `tf.function`.

  Call with the model inputs as a dict keyed by input name and an int array of
  target classes; returns (gradients per float input name, logits). Gradients of
  inputs with rank 3 per example are averaged over the trailing channel axis.
  """

  def __init__(self, model: tf.keras.Model, target: str):
    check_choice('target', target, TARGETS)
    self.model = as_logits_model(model)
    self.input_names = list(self.model.input_names)
    self.input_dtypes = {name: tensor.dtype for name, tensor
                         in zip(self.input_names, self.model.inputs)}
    self.float_inputs = [n for n in self.input_names if self.input_dtypes[n].is_floating]
    if not self.float_inputs:
      raise ValueError(f'model {model.name!r} has no float input; VoG differentiates '
                       'with respect to float inputs only')
    self.num_classes = int(self.model.outputs[0].shape[-1])
    self._target = target
    # One trace for every batch size: the batch axis is left unknown.
    signature = ({n: tf.TensorSpec([None] + t.shape.as_list()[1:], t.dtype, name=n)
                  for n, t in zip(self.input_names, self.model.inputs)},
                 tf.TensorSpec([None], tf.int32, name='target_class'))
    # No tensor-dependent Python control flow here, so AutoGraph's source conversion
    # (seconds per checkpoint) buys nothing.
    self._gradients = tf.function(self._gradients_graph, input_signature=signature,
                                  autograph=False)

  def _call_model(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    if len(self.input_names) == 1:
      return self.model(inputs[self.input_names[0]], training=False)
    return self.model([inputs[n] for n in self.input_names], training=False)

  def _gradients_graph(self, inputs, target_class):
    with tf.GradientTape() as tape:
      for name in self.float_inputs:
        tape.watch(inputs[name])
      logits = self._call_model(inputs)
      values = _target_values(logits, target_class, self._target)
      # Examples are independent at inference, so the gradient of the sum is per example.
      total = tf.reduce_sum(values)
    grads = tape.gradient(total, [inputs[n] for n in self.float_inputs])
    out = {}
    for name, grad in zip(self.float_inputs, grads):
      if grad.shape.rank == 4:
        grad = tf.reduce_mean(grad, axis=-1)
      out[name] = grad
    return out, logits

  def as_tensors(self, inputs: Mapping[str, np.ndarray]) -> Dict[str, tf.Tensor]:
    """Casts NumPy inputs to the model's input dtypes."""
    missing = [n for n in self.input_names if n not in inputs]
    if missing:
      raise ValueError(f'model inputs {missing} are missing from the batch '
                       f'(it holds {sorted(inputs)})')
    return {n: tf.convert_to_tensor(inputs[n], dtype=self.input_dtypes[n])
            for n in self.input_names}

  def logits(self, inputs: Dict[str, tf.Tensor]) -> np.ndarray:
    return self._call_model(inputs).numpy()

  def __call__(self, inputs: Dict[str, tf.Tensor],
               target_class: np.ndarray) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    grads, logits = self._gradients(inputs, tf.constant(target_class, tf.int32))
    return {n: g.numpy() for n, g in grads.items()}, logits.numpy()


class BatchScore:
  """Scores of one batch: vog_raw, the target class, the latest checkpoint's class, and
  every checkpoint's logits ([K, N, C], earliest first) for the signals of signals.py."""

  def __init__(self, vog_raw: np.ndarray, target_class: np.ndarray,
               predicted_class: np.ndarray, logits: Optional[np.ndarray] = None):
    self.vog_raw = vog_raw
    self.target_class = target_class
    self.predicted_class = predicted_class
    self.logits = logits


class VogScorer:
  """VoG for batches of examples over K checkpoints, latest checkpoint last.

  `models` are Keras models sharing one input signature, ordered by training step.
  Refuses fewer than 2 checkpoints, an unknown target or label mode, and labels
  outside [0, num_classes).
  """

  def __init__(self, models: Sequence[tf.keras.Model], target: str = 'loss',
               label_mode: str = 'label'):
    check_choice('label_mode', label_mode, LABEL_MODES)
    if len(models) < 2:
      raise ValueError(f'VoG needs at least 2 checkpoints, got {len(models)}')
    self.checkpoints = [CheckpointGradients(m, target) for m in models]
    self.label_mode = label_mode
    first = self.checkpoints[0]
    for k, ckpt in enumerate(self.checkpoints[1:], start=1):
      if ckpt.input_names != first.input_names or ckpt.num_classes != first.num_classes:
        raise ValueError(f'checkpoint {k} has inputs {ckpt.input_names} and '
                         f'{ckpt.num_classes} classes, checkpoint 0 has '
                         f'{first.input_names} and {first.num_classes}; all '
                         'checkpoints must come from one model architecture')
    self.input_names = first.input_names
    self.float_inputs = first.float_inputs
    self.num_classes = first.num_classes

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
    mean: Dict[str, np.ndarray] = {}
    sq_dev: Dict[str, np.ndarray] = {}
    logits = None
    every_logits = []
    for k, ckpt in enumerate(self.checkpoints, start=1):
      grads, logits = ckpt(tensors, target_class)
      every_logits.append(logits)
      for name, grad in grads.items():
        grad = grad.astype(np.float64)
        if k == 1:
          mean[name] = grad
          sq_dev[name] = np.zeros_like(grad)
        else:
          delta = grad - mean[name]
          mean[name] += delta / k
          sq_dev[name] += delta * (grad - mean[name])
    k_total = len(self.checkpoints)
    batch = target_class.shape[0]
    sigma_sum = np.zeros(batch, dtype=np.float64)
    elements = 0
    for name in self.float_inputs:
      sigma = np.sqrt(sq_dev[name] / k_total).reshape(batch, -1)
      sigma_sum += sigma.sum(axis=1)
      elements += sigma.shape[1]
    predicted = np.argmax(logits, axis=-1).astype(np.int64)
    return BatchScore(sigma_sum / elements, target_class, predicted, np.stack(every_logits))


def normalize_scores(vog_raw: np.ndarray, classes: np.ndarray,
                     normalize: str) -> np.ndarray:
  """Normalises the scores of one split (arrays of equal length) per target class."""
  check_choice('normalize', normalize, NORMALIZATIONS)
  vog_raw = np.asarray(vog_raw, dtype=np.float64)
  classes = np.asarray(classes)
  out = np.empty_like(vog_raw)
  for c in np.unique(classes):
    members = classes == c
    values = vog_raw[members]
    mean, std = values.mean(), values.std()
    out[members] = [normalize_score(v, mean, std, values.size, normalize) for v in values]
  return out
