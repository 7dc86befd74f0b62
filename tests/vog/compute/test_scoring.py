"""The VoG scoring core against a float64 NumPy oracle and finite differences."""

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import baselines
from components.vog.compute import scoring

NUM_CLASSES = 4


def _mlp_two_inputs(seed, softmax_head):
  """A 2-input model: a vector (3,) and an image (4, 4, 2), flattened, ReLU MLP."""
  vec = tf.keras.Input((3,), name='vec')
  img = tf.keras.Input((4, 4, 2), name='img')
  joined = tf.keras.layers.Concatenate()([vec, tf.keras.layers.Flatten()(img)])
  hidden = tf.keras.layers.Dense(8, activation='relu', name='hidden')(joined)
  out = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax' if softmax_head else None,
                              name='head')(hidden)
  model = tf.keras.Model([vec, img], out)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.7, w.shape) for w in model.get_weights()])
  return model


def _oracle_gradient(model, vec, img, target_class, target):
  """d f / d input in float64, by hand, for `_mlp_two_inputs`."""
  w1, b1, w2, b2 = [w.astype(np.float64) for w in model.get_weights()]
  x = np.concatenate([vec, img.reshape(len(img), -1)], axis=1)
  pre = x @ w1 + b1
  hidden = np.maximum(pre, 0)
  logits = hidden @ w2 + b2
  # dz_j / dx for every class j: (batch, classes, features)
  dz_dx = np.einsum('bh,hj,fh->bjf', (pre > 0).astype(np.float64), w2, w1)
  rows = np.arange(len(x))
  dzc = dz_dx[rows, target_class]
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  dlogp = dzc - np.einsum('bj,bjf->bf', p, dz_dx)
  grad = {'logit': dzc, 'prob': p[rows, target_class][:, None] * dlogp,
          'loss': -dlogp}[target]
  return grad[:, :3], grad[:, 3:].reshape(img.shape).mean(axis=-1), logits


def _oracle_vog(models, vec, img, labels, target, label_mode):
  if label_mode == 'predicted':
    _, _, logits = _oracle_gradient(models[-1], vec, img, np.zeros(len(vec), int), 'logit')
    target_class = logits.argmax(axis=1)
  else:
    target_class = labels
  grads_vec, grads_img = [], []
  for model in models:
    gv, gi, _ = _oracle_gradient(model, vec, img, target_class, target)
    grads_vec.append(gv)
    grads_img.append(gi)
  sigma_vec = np.std(np.stack(grads_vec), axis=0)  # population form over K
  sigma_img = np.std(np.stack(grads_img), axis=0).reshape(len(vec), -1)
  return np.concatenate([sigma_vec, sigma_img], axis=1).mean(axis=1), target_class


@pytest.mark.parametrize('softmax_head', [True, False])
@pytest.mark.parametrize('label_mode', scoring.LABEL_MODES)
@pytest.mark.parametrize('target', scoring.TARGETS)
def test_vog_matches_float64_oracle(target, label_mode, softmax_head):
  rng = np.random.default_rng(hash((target, label_mode, softmax_head)) % 2**32)
  models = [_mlp_two_inputs(int(rng.integers(1 << 30)), softmax_head) for _ in range(4)]
  vec = rng.normal(size=(11, 3))
  img = rng.normal(size=(11, 4, 4, 2))
  labels = rng.integers(0, NUM_CLASSES, size=11)

  expected, expected_class = _oracle_vog(models, vec, img, labels, target, label_mode)
  scorer = scoring.VogScorer(models, target=target, label_mode=label_mode)
  got = scorer.score({'vec': vec, 'img': img}, labels)

  np.testing.assert_array_equal(got.target_class, expected_class)
  np.testing.assert_allclose(got.vog_raw, expected, rtol=2e-4, atol=1e-9)
  assert np.all(got.vog_raw > 0)


@pytest.mark.parametrize('normalize', scoring.NORMALIZATIONS)
def test_normalisation_matches_oracle(normalize):
  rng = np.random.default_rng(7)
  raw = rng.gamma(2.0, size=40)
  classes = rng.integers(0, 3, size=40)
  got = baselines.normalize_scores(raw, classes, normalize)
  for c in range(3):
    members = classes == c
    z = (raw[members] - raw[members].mean()) / raw[members].std()
    want = {'raw': raw[members], 'class': z, 'abs-class': np.abs(z)}[normalize]
    np.testing.assert_allclose(got[members], want, rtol=1e-12)


def test_class_normalisation_edge_cases_give_zero_not_nan():
  raw = np.array([0.5, 0.2, 0.2, 0.2, 0.9, 0.1])
  classes = np.array([0, 1, 1, 1, 2, 2])  # class 0 alone, class 1 without spread
  for normalize in ('class', 'abs-class'):
    got = baselines.normalize_scores(raw, classes, normalize)
    assert np.all(np.isfinite(got))
    np.testing.assert_array_equal(got[:4], 0.0)
    np.testing.assert_allclose(np.abs(got[4:]), 1.0)
  with pytest.raises(ValueError, match='normalize'):
    baselines.normalize_scores(raw, classes, 'zscore')


@pytest.mark.parametrize('target', scoring.TARGETS)
def test_gradient_matches_central_differences(target):
  inp = tf.keras.Input((5,), dtype='float64', name='x')
  hidden = tf.keras.layers.Dense(6, activation='tanh', dtype='float64')(inp)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(3, dtype='float64')(hidden))
  rng = np.random.default_rng(3)
  x = rng.normal(size=(4, 5))
  target_class = np.array([0, 2, 1, 2])
  ckpt = scoring.CheckpointGradients(model, target)
  grads, _ = ckpt(ckpt.as_tensors({'x': x}), target_class)

  def f(values):
    logits = model(values).numpy()
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(values))
    return {'logit': logits[rows, target_class], 'prob': p[rows, target_class],
            'loss': -np.log(p[rows, target_class])}[target]

  eps = 1e-6
  numeric = np.zeros_like(x)
  for j in range(x.shape[1]):
    step = np.zeros_like(x)
    step[:, j] = eps
    numeric[:, j] = (f(x + step) - f(x - step)) / (2 * eps)
  np.testing.assert_allclose(grads['x'], numeric, rtol=1e-6, atol=1e-9)


def test_single_output_model_is_refused():
  inp = tf.keras.Input((3,), name='x')
  model = tf.keras.Model(inp, tf.keras.layers.Dense(1, activation='sigmoid')(inp))
  with pytest.raises(ValueError, match='one output per class'):
    scoring.CheckpointGradients(model, 'loss')


def test_labels_outside_the_classes_are_refused():
  models = [_mlp_two_inputs(s, True) for s in (1, 2)]
  scorer = scoring.VogScorer(models)
  with pytest.raises(ValueError, match=r'labels \[7\] are outside \[0, 4\)'):
    scorer.score({'vec': np.zeros((2, 3)), 'img': np.zeros((2, 4, 4, 2))},
                 np.array([1, 7]))


def test_one_checkpoint_is_refused():
  with pytest.raises(ValueError, match='at least 2 checkpoints'):
    scoring.VogScorer([_mlp_two_inputs(1, True)])


def test_unknown_target_is_refused():
  with pytest.raises(ValueError, match="target='margin' is not supported"):
    scoring.VogScorer([_mlp_two_inputs(1, True)] * 2, target='margin')
