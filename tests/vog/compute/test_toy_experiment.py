"""The paper's toy experiment: points near the decision boundary get high early VoG.

Two overlapping 2-D Gaussian blobs, a small ReLU MLP trained with the checkpoint
callback, early-stage VoG of held-out points, and Spearman's rho against each point's
distance to the learned boundary (found on a fine grid).
"""

import numpy as np
import pytest
from scipy import stats
import tensorflow as tf

from components import VogCheckpointCallback
from components.vog.inputs import checkpoints
from components.vog.compute.scoring import VogScorer
from components.vog.compute.stages import checkpoints_for_stage


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp('toy'))
  rng = np.random.default_rng(0)
  tf.keras.utils.set_random_seed(0)

  def blobs(n):
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, [1.0, 1.0], [-1.0, -1.0])
    return x.astype(np.float32), y

  x_train, y_train = blobs(1000)
  x_test, y_test = blobs(300)
  inp = tf.keras.Input((2,), name='x')
  h = tf.keras.layers.Dense(32, activation='relu')(inp)
  h = tf.keras.layers.Dense(32, activation='relu')(h)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(2, activation='softmax')(h))
  model.compile(tf.keras.optimizers.Adam(0.01), 'sparse_categorical_crossentropy')
  model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0,
            callbacks=[VogCheckpointCallback(run_dir, max_checkpoints=15)])

  # Distance to the learned boundary: nearest grid point whose predicted class flips.
  axis = np.linspace(-5, 5, 501)
  grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2).astype(np.float32)
  side = model.predict(grid, batch_size=8192, verbose=0).argmax(1).reshape(501, 501)
  edge = np.zeros_like(side, dtype=bool)
  edge[:, 1:] |= side[:, 1:] != side[:, :-1]
  edge[1:, :] |= side[1:, :] != side[:-1, :]
  boundary = grid[edge.reshape(-1)]
  distance = np.min(np.linalg.norm(x_test[:, None, :] - boundary[None], axis=-1), axis=1)
  return run_dir, x_test, y_test, distance


def _early_vog(run_dir, x, y, target):
  entries = checkpoints.load_manifest(run_dir)
  steps = checkpoints_for_stage([e.step for e in entries], 'early', 10)
  models = checkpoints.load_checkpoint_models([e for e in entries if e.step in steps])
  return VogScorer(models, target=target).score({'x': x}, y).vog_raw


@pytest.mark.parametrize('target', ['prob', 'loss'])
def test_early_vog_is_high_near_the_decision_boundary(toy_run, target):
  run_dir, x, y, distance = toy_run
  rho, _ = stats.spearmanr(_early_vog(run_dir, x, y, target), distance)
  print(f'toy experiment: target={target} Spearman rho={rho:.3f}')
  assert rho <= -0.5


def test_logit_target_carries_little_boundary_signal(toy_run):
  # A ReLU network's logit gradient is piecewise constant in x: it barely depends on
  # where a point lies, so its rho stays far weaker than prob's and loss's.
  run_dir, x, y, distance = toy_run
  rho_logit, _ = stats.spearmanr(_early_vog(run_dir, x, y, 'logit'), distance)
  rho_prob, _ = stats.spearmanr(_early_vog(run_dir, x, y, 'prob'), distance)
  print(f'toy experiment: target=logit Spearman rho={rho_logit:.3f}')
  assert rho_logit > rho_prob + 0.3
