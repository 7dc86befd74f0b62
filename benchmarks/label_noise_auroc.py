"""How well each VoG target ranks flipped labels: AUROC on sklearn digits.

10% of the training labels are flipped to another class (seeded). A small CNN is
trained with VogCheckpointCallback; every example is scored with each target and
normalisation, and the AUROC of the score for "this label was flipped" is printed.
This is the evaluation behind the README's choice of `loss` as the default target.

    python -m benchmarks.label_noise_auroc [--seeds 0 1 2] [--epochs 12]
"""

import argparse
import json
import os
import tempfile

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
from sklearn import datasets, metrics  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import baselines  # pylint: disable=g-import-not-at-top
from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top
from components.vog.inputs import checkpoints  # pylint: disable=g-import-not-at-top
from components.vog.compute import scoring  # pylint: disable=g-import-not-at-top


def noisy_digits(noise_rate: float, seed: int):
  data = datasets.load_digits()
  rng = np.random.default_rng(seed)
  images = (data.images / 16.0).astype(np.float32)[..., None]
  labels = data.target.astype(np.int64).copy()
  flipped = np.zeros(len(labels), bool)
  flipped[rng.permutation(len(labels))[:int(round(noise_rate * len(labels)))]] = True
  labels[flipped] = (labels[flipped] + rng.integers(1, 10, flipped.sum())) % 10
  return images, labels, flipped


def train(run_dir: str, images, labels, epochs: int, seed: int):
  tf.keras.utils.set_random_seed(seed)
  inp = tf.keras.Input((8, 8, 1), name='image')
  x = tf.keras.layers.Conv2D(16, 3, activation='relu')(inp)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(64, activation='relu')(x)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(10, activation='softmax')(x))
  model.compile(tf.keras.optimizers.Adam(0.005), 'sparse_categorical_crossentropy')
  model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0,
            callbacks=[VogCheckpointCallback(run_dir, max_checkpoints=epochs)])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--epochs', type=int, default=12)
  parser.add_argument('--noise-rate', type=float, default=0.1)
  parser.add_argument('--output', default=None, help='optional JSON file for the table')
  args = parser.parse_args(argv)
  table = {}
  for seed in args.seeds:
    images, labels, flipped = noisy_digits(args.noise_rate, seed)
    with tempfile.TemporaryDirectory() as run_dir:
      train(run_dir, images, labels, args.epochs, seed)
      models = checkpoints.load_checkpoint_models(checkpoints.load_manifest(run_dir))
      for target in scoring.TARGETS:
        result = scoring.VogScorer(models, target=target).score({'image': images}, labels)
        for normalize in ('raw', 'class'):
          score = baselines.normalize_scores(result.vog_raw, result.target_class,
                                             normalize)
          auroc = metrics.roc_auc_score(flipped, score)
          table.setdefault((target, normalize), []).append(auroc)
          print(f'seed {seed} target={target:5s} normalize={normalize:5s} '
                f'AUROC={auroc:.3f}', flush=True)
  print('\n| target | normalize | AUROC mean | min | max |\n|---|---|---|---|---|')
  for (target, normalize), values in table.items():
    print(f'| {target} | {normalize} | {np.mean(values):.3f} | {np.min(values):.3f} | '
          f'{np.max(values):.3f} |')
  if args.output:
    with open(args.output, 'w') as f:
      json.dump({f'{t}/{n}': v for (t, n), v in table.items()}, f, indent=2)


if __name__ == '__main__':
  main()
