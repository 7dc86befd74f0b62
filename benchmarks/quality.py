"""How well each audit signal finds wrong labels, and what it costs: five scenarios.

Every model is trained with VogCheckpointCallback (12 saved checkpoints); the audit's
default selection (stage `complete`, 10 checkpoints) is loaded back from the manifest,
and each training example is scored by VoG (the product's VogScorer, target `loss`,
class-normalised) and by every signal of components/vog/compute/signals.py's REGISTRY from the
same checkpoints' logits, and by `combined` (benchmarks/baselines.py). cleanlab runs
beside them on 5-fold out-of-sample probabilities of the same architecture.

Scenarios:
  uniform    sklearn digits, 10% of labels flipped to a random other class;
  pairs      digits, 25% of the classes 1, 7, 3, 8, 4 and 9 flipped to their partner
             (1<->7, 3<->8, 4<->9), the rest clean;
  memorised  300 digits, 20% flipped, a wide MLP trained to 100% training accuracy;
  atypical   digits, 10% flipped and another 10% made atypical but left correctly
             labelled (shifted, rotated or thickened);
  tabular    sklearn make_classification (2000 rows, 20 features, 5 classes), an MLP,
             10% flipped.

Per signal: AUROC for "this label is wrong", precision at the inspection budget (the
number of wrong labels), and seconds of compute over the trained checkpoints (the
logits-only signals share one forward pass; VoG needs a gradient pass per checkpoint;
cleanlab needs 5 more trainings). For `atypical` also: AUROC of wrong vs atypical
(positives: wrong labels, among wrong and atypical examples only) and the share of each
in the top budget. Three seeds; mean and range.

`auto` is what rank_by='auto' ranks by with labels (components/vog/compute/auto_rank.py):
the memorisation evidence is computed from a sample of up to 1,000 training examples (the
training set the benchmark scores), from the selected checkpoints' logits, as the audit's
plan does; the table "What auto chooses" gives its choice and evidence per seed. "Kinds of
the flagged examples" applies components/vog/compute/flag_kinds.py to auto's top budget and
top twice the budget (and, where there are atypical examples, to every wrong or atypical
example): how many get each kind, the share of `wrong label` that are wrong labels, of
`atypical` that are atypical (and that have the right label). "Signals for a memorised
model" compares what auto could rank by once the model memorised its labels, beside el2n
and variability: combinations and early-checkpoint variants computed here from the logits.

    python -m benchmarks.quality --output quality_output [--seeds 0 1 2]
        [--scenarios uniform pairs memorised atypical tabular]
"""

import argparse
import json
import os
import tempfile
import time
from typing import Callable, Dict, List, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
from scipy import ndimage  # pylint: disable=g-import-not-at-top
from sklearn import datasets, metrics, model_selection  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import baselines  # pylint: disable=g-import-not-at-top
from components.vog.inputs import checkpoints  # pylint: disable=g-import-not-at-top
from components.vog.compute import auto_rank  # pylint: disable=g-import-not-at-top
from components.vog.compute import flag_kinds  # pylint: disable=g-import-not-at-top
from components.vog.compute import scoring  # pylint: disable=g-import-not-at-top
from components.vog.compute import signals  # pylint: disable=g-import-not-at-top
from components.vog.compute import stages  # pylint: disable=g-import-not-at-top

tf.get_logger().setLevel('ERROR')  # retracing notes from one scorer per run

SCENARIOS = ('uniform', 'pairs', 'memorised', 'atypical', 'tabular')
SAVED_CHECKPOINTS = 12
SELECTED_CHECKPOINTS = 10  # the audit's default num_checkpoints, stage `complete`
BATCH_SIZE = 256  # the audit's default scoring batch
FOLDS = 5
PAIRS = ((1, 7), (3, 8), (4, 9))
VOG = 'vog'
CLEANLAB = 'cleanlab'
VOG_RAW = 'vog_raw'
AUTO = 'auto'
AUTO_SAMPLE = 1000  # the training examples the audit's plan scores for the evidence
ROWS = [AUTO] + list(signals.names()) + [VOG, VOG_RAW, baselines.COMBINED, CLEANLAB]
# Ways to combine signals that the combined signal was chosen among: mean percentile rank
# of each suspicion, split-wide unless marked.
CANDIDATES = {
    'confidence+margin_mean': ((signals.CONFIDENCE, signals.MARGIN_MEAN), False),
    'confidence+el2n': ((signals.CONFIDENCE, signals.EL2N), False),
    'confidence+margin_mean+el2n': (
        (signals.CONFIDENCE, signals.MARGIN_MEAN, signals.EL2N), False),
    'confidence+margin_mean+el2n, within class': (
        (signals.CONFIDENCE, signals.MARGIN_MEAN, signals.EL2N), True),
}
CANDIDATE_REFERENCES = ('confidence', 'margin_mean', 'el2n')


def _early(k: int) -> int:
  """The first third of k checkpoints, at least one."""
  return max(1, k // 3)


def _el2n_each(d: signals.Dynamics) -> np.ndarray:
  """[K, N] EL2N at every checkpoint."""
  p = np.exp(d.log_p)
  p[:, np.arange(d.examples), d.target] -= 1.0
  return np.sqrt((p ** 2).sum(axis=-1))


# What auto could rank by once a model memorised its labels: suspicion from the Dynamics
# and the registered signals' values (higher = more likely wrong).
MEMORISED_CANDIDATES = {
    'el2n': lambda d, v: signals.suspicion(signals.EL2N, v[signals.EL2N]),
    'variability': lambda d, v: signals.suspicion(signals.VARIABILITY,
                                                  v[signals.VARIABILITY]),
    'confidence': lambda d, v: signals.suspicion(signals.CONFIDENCE, v[signals.CONFIDENCE]),
    'el2n + variability, ranks': lambda d, v: baselines.combined_suspicion(
        v, (signals.EL2N, signals.VARIABILITY)),
    'el2n + variability, values': lambda d, v: (
        v[signals.EL2N].astype(np.float64) + v[signals.VARIABILITY]),
    'margin, first 2 checkpoints': lambda d, v: -d.margin[:2].mean(axis=0),
    'margin, first third': lambda d, v: -d.margin[:_early(d.checkpoints)].mean(axis=0),
    'confidence, first third': lambda d, v: -d.p_target[:_early(d.checkpoints)].mean(axis=0),
    'el2n, first third': lambda d, v: _el2n_each(d)[:_early(d.checkpoints)].mean(axis=0),
}


class Data:
  """Inputs, noisy labels, and which labels are wrong (and which examples atypical)."""

  def __init__(self, x, labels, flipped, atypical=None):
    self.x = x
    self.labels = labels.astype(np.int64)
    self.flipped = flipped
    self.atypical = np.zeros(len(labels), bool) if atypical is None else atypical


class Recipe:
  """A model builder and how to train it."""

  def __init__(self, build: Callable[[int], tf.keras.Model], epochs: int, batch: int):
    self.build = build
    self.epochs = epochs
    self.batch = batch


def _digits():
  data = datasets.load_digits()
  return (data.images / 16.0).astype(np.float32)[..., None], data.target.astype(np.int64)


def _flip_uniform(labels, rate, rng, pool_mask=None, num_classes=10):
  """Flips `rate` of all labels, drawn from `pool_mask` (all by default), to another class
  chosen uniformly."""
  labels = labels.copy()
  pool = np.arange(len(labels)) if pool_mask is None else np.flatnonzero(pool_mask)
  flipped = np.zeros(len(labels), bool)
  flipped[rng.choice(pool, int(round(rate * len(labels))), replace=False)] = True
  labels[flipped] = (labels[flipped] + rng.integers(1, num_classes, flipped.sum())
                     ) % num_classes
  return labels, flipped


def uniform_data(seed: int) -> Data:
  images, labels = _digits()
  noisy, flipped = _flip_uniform(labels, 0.1, np.random.default_rng(seed))
  return Data(images, noisy, flipped)


def pairs_data(seed: int, rate: float = 0.25) -> Data:
  images, labels = _digits()
  rng = np.random.default_rng(seed)
  noisy = labels.copy()
  flipped = np.zeros(len(labels), bool)
  for a, b in PAIRS:
    for source, dest in ((a, b), (b, a)):
      members = np.flatnonzero(labels == source)
      chosen = rng.choice(members, int(round(rate * len(members))), replace=False)
      noisy[chosen] = dest
      flipped[chosen] = True
  return Data(images, noisy, flipped)


def memorised_data(seed: int, n: int = 300, rate: float = 0.2) -> Data:
  images, labels = _digits()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))[:n]
  noisy, flipped = _flip_uniform(labels[order], rate, rng)
  return Data(images[order], noisy, flipped)


def _atypical_image(image: np.ndarray, kind: int, rng) -> np.ndarray:
  img = image[..., 0]
  if kind == 0:  # shifted 2 pixels towards a random corner, zeros coming in
    dy, dx = rng.choice([-2, 2], 2)
    out = np.zeros_like(img)
    src = img[max(0, -dy):8 - max(0, dy), max(0, -dx):8 - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
  elif kind == 1:  # rotated 40-60 degrees either way
    angle = rng.uniform(40, 60) * rng.choice([-1, 1])
    out = ndimage.rotate(img, angle, reshape=False, order=1, mode='constant')
  else:  # strokes thickened by a 2x2 grey dilation
    out = ndimage.grey_dilation(img, size=(2, 2))
  return np.clip(out, 0, 1).astype(np.float32)[..., None]


def atypical_data(seed: int, rate: float = 0.1) -> Data:
  images, labels = _digits()
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(labels))
  count = int(round(rate * len(labels)))
  atypical = np.zeros(len(labels), bool)
  atypical[order[:count]] = True
  images = images.copy()
  for i, index in enumerate(order[:count]):
    images[index] = _atypical_image(images[index], i % 3, rng)
  noisy, flipped = _flip_uniform(labels, rate, rng, pool_mask=~atypical)
  return Data(images, noisy, flipped, atypical)


def tabular_data(seed: int) -> Data:
  x, y = datasets.make_classification(
      n_samples=2000, n_features=20, n_informative=10, n_redundant=4, n_classes=5,
      n_clusters_per_class=2, class_sep=1.5, random_state=seed)
  x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
  noisy, flipped = _flip_uniform(y, 0.1, np.random.default_rng(seed), num_classes=5)
  return Data(x, noisy, flipped)


def digits_cnn(seed: int) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inp = tf.keras.Input((8, 8, 1), name='image')
  x = tf.keras.layers.Conv2D(16, 3, activation='relu')(inp)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(64, activation='relu')(x)
  return _compiled(inp, tf.keras.layers.Dense(10, activation='softmax')(x), 0.005)


def wide_mlp(seed: int) -> tf.keras.Model:
  """Far more capacity than 300 digits need: it memorises every wrong label."""
  tf.keras.utils.set_random_seed(seed)
  inp = tf.keras.Input((8, 8, 1), name='image')
  x = tf.keras.layers.Flatten()(inp)
  x = tf.keras.layers.Dense(512, activation='relu')(x)
  x = tf.keras.layers.Dense(512, activation='relu')(x)
  return _compiled(inp, tf.keras.layers.Dense(10, activation='softmax')(x), 0.002)


def tabular_mlp(seed: int) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inp = tf.keras.Input((20,), name='features')
  x = tf.keras.layers.Dense(64, activation='relu')(inp)
  x = tf.keras.layers.Dense(64, activation='relu')(x)
  return _compiled(inp, tf.keras.layers.Dense(5, activation='softmax')(x), 0.003)


def _compiled(inp, out, learning_rate: float) -> tf.keras.Model:
  model = tf.keras.Model(inp, out)
  model.compile(tf.keras.optimizers.Adam(learning_rate), 'sparse_categorical_crossentropy',
                metrics=['accuracy'])
  return model


SETUPS: Dict[str, Tuple[Callable[[int], Data], Recipe]] = {
    'uniform': (uniform_data, Recipe(digits_cnn, epochs=12, batch=32)),
    'pairs': (pairs_data, Recipe(digits_cnn, epochs=12, batch=32)),
    'memorised': (memorised_data, Recipe(wide_mlp, epochs=60, batch=32)),
    'atypical': (atypical_data, Recipe(digits_cnn, epochs=12, batch=32)),
    'tabular': (tabular_data, Recipe(tabular_mlp, epochs=24, batch=32)),
}


def train_with_checkpoints(run_dir: str, data: Data, recipe: Recipe, seed: int) -> float:
  """Trains with VogCheckpointCallback; returns the training accuracy of the final model
  on the (noisy) training labels."""
  model = recipe.build(seed)
  model.fit(data.x, data.labels, epochs=recipe.epochs, batch_size=recipe.batch, verbose=0,
            callbacks=[checkpoints.VogCheckpointCallback(run_dir, SAVED_CHECKPOINTS)])
  predicted = model.predict(data.x, batch_size=BATCH_SIZE, verbose=0).argmax(axis=1)
  return float(np.mean(predicted == data.labels))


def selected_models(run_dir: str) -> List[tf.keras.Model]:
  """The checkpoints an audit with default settings loads, in training order."""
  entries = checkpoints.load_manifest(run_dir)
  steps = set(stages.checkpoints_for_stage([e.step for e in entries], 'complete',
                                           SELECTED_CHECKPOINTS))
  return checkpoints.load_checkpoint_models([e for e in entries if e.step in steps])


def checkpoint_logits(models, x) -> np.ndarray:
  """[K, N, C] pre-softmax outputs of each checkpoint."""
  out = []
  for model in models:
    logits_model = scoring.as_logits_model(model)
    out.append(np.concatenate([logits_model(x[i:i + BATCH_SIZE], training=False).numpy()
                               for i in range(0, len(x), BATCH_SIZE)]))
  return np.stack(out)


def vog_scores(models, data: Data) -> Tuple[np.ndarray, np.ndarray]:
  """(class-normalised as the audit ranks by default, raw) VoG of every example."""
  scorer = scoring.VogScorer(models, target='loss', label_mode='label')
  name = scorer.input_names[0]
  raw = np.concatenate([
      scorer.score({name: data.x[i:i + BATCH_SIZE]}, data.labels[i:i + BATCH_SIZE]).vog_raw
      for i in range(0, len(data.x), BATCH_SIZE)])
  return baselines.normalize_scores(raw, data.labels, 'class'), raw


def out_of_sample_probabilities(data: Data, recipe: Recipe, seed: int) -> np.ndarray:
  """Predicted probabilities of each example from a model that did not train on it."""
  folds = model_selection.StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
  probs = np.zeros((len(data.labels), int(data.labels.max()) + 1), np.float32)
  for fold, (train, held_out) in enumerate(folds.split(data.x, data.labels)):
    model = recipe.build(seed * 100 + fold)
    model.fit(data.x[train], data.labels[train], epochs=recipe.epochs,
              batch_size=recipe.batch, verbose=0)
    probs[held_out] = model.predict(data.x[held_out], batch_size=BATCH_SIZE, verbose=0)
  return probs


def cleanlab_scores(data: Data, recipe: Recipe, seed: int):
  """(suspicion, find_label_issues mask, seconds): 5-fold training and cleanlab."""
  from cleanlab.filter import find_label_issues  # pylint: disable=g-import-not-at-top
  from cleanlab.rank import get_label_quality_scores  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  probs = out_of_sample_probabilities(data, recipe, seed)
  quality = get_label_quality_scores(data.labels, probs)
  issues = find_label_issues(data.labels, probs)
  return 1.0 - quality, issues, time.perf_counter() - start


def top_budget(score: np.ndarray, budget: int) -> np.ndarray:
  """Indices of the `budget` highest scores; ties go to the earlier example."""
  return np.argsort(-score, kind='stable')[:budget]


def measure(score: np.ndarray, data: Data) -> Dict[str, float]:
  budget = int(data.flipped.sum())
  top = top_budget(score, budget)
  out = {'auroc': float(metrics.roc_auc_score(data.flipped, score)),
         'precision_at_budget': float(data.flipped[top].mean())}
  if data.atypical.any():
    either = data.flipped | data.atypical
    out['auroc_wrong_vs_atypical'] = float(
        metrics.roc_auc_score(data.flipped[either], score[either]))
    out['top_share_wrong'] = out['precision_at_budget']
    out['top_share_atypical'] = float(data.atypical[top].mean())
  return out


def auto_choice(logits: np.ndarray, labels: np.ndarray, seed: int):
  """(signal, reason): auto's choice from a sample of up to AUTO_SAMPLE training examples."""
  sample = np.random.default_rng(seed).permutation(len(labels))[:AUTO_SAMPLE]
  return auto_rank.choose(auto_rank.evidence_from_logits(logits[:, sample], labels[sample]))


def measure_kinds(score: np.ndarray, values: Dict[str, np.ndarray], data: Data,
                  memorised: bool) -> Dict[str, Dict[str, float]]:
  """The kinds flag_kinds gives the top budget, the top twice the budget and (with
  atypical examples) every wrong or atypical example: counts and precisions."""
  budget = int(data.flipped.sum())
  order = top_budget(score, len(score))
  scopes = {'budget': order[:budget], 'twice': order[:2 * budget]}
  if data.atypical.any():
    scopes['wrong_or_atypical'] = np.flatnonzero(data.flipped | data.atypical)
  found = flag_kinds.kinds(values, memorised)
  out = {}
  for name, rows in scopes.items():
    kinds = found[rows]
    wrong, atypical = kinds == flag_kinds.WRONG_LABEL, kinds == flag_kinds.ATYPICAL
    nan = float('nan')
    out[name] = {
        'flags': len(rows),
        'wrong_labels': int(data.flipped[rows].sum()),
        'atypical_examples': int(data.atypical[rows].sum()),
        **{f'n_{k.replace(" ", "_")}': int(v)
           for k, v in flag_kinds.counts(kinds).items()},
        'precision_wrong_label': float(data.flipped[rows][wrong].mean()) if wrong.any() else nan,
        'precision_atypical': (float(data.atypical[rows][atypical].mean()) if atypical.any()
                               else nan),
        'right_label_atypical': (float((~data.flipped[rows][atypical]).mean())
                                 if atypical.any() else nan),
        'recall_wrong_label': float(data.flipped[rows][wrong].sum() / max(1, data.flipped.sum())),
    }
  return out


def run_one(scenario: str, seed: int) -> Dict[str, object]:
  """Every signal's numbers for one scenario and seed."""
  make_data, recipe = SETUPS[scenario]
  data = make_data(seed)
  print(f'{scenario} seed {seed}: training on {len(data.labels)} examples, '
        f'{int(data.flipped.sum())} wrong labels', flush=True)
  started = time.perf_counter()
  with tempfile.TemporaryDirectory() as run_dir:
    train_accuracy = train_with_checkpoints(run_dir, data, recipe, seed)
    trained = time.perf_counter() - started
    models = selected_models(run_dir)
    start = time.perf_counter()
    logits = checkpoint_logits(models, data.x)
    values = signals.compute_signals(logits, data.labels)
    logits_seconds = time.perf_counter() - start
    auto_signal, auto_reason = auto_choice(logits, data.labels, seed)
    dynamics = signals.dynamics(logits, data.labels)
    start = time.perf_counter()
    vog, vog_raw = vog_scores(models, data)
    vog_seconds = time.perf_counter() - start
  scores = {s.name: signals.suspicion(s.field, values[s.field]) for s in signals.REGISTRY}
  scores[AUTO] = scores[auto_signal]
  scores[VOG] = vog
  scores[VOG_RAW] = vog_raw
  scores[baselines.COMBINED] = baselines.combined_suspicion(values)
  seconds = {name: logits_seconds for name in scores}
  seconds[VOG] = seconds[VOG_RAW] = vog_seconds
  scores[CLEANLAB], issues, seconds[CLEANLAB] = cleanlab_scores(data, recipe, seed)
  result = {name: dict(measure(score, data), seconds=seconds[name])
            for name, score in scores.items()}
  candidates = {
      name: measure(baselines.combined_suspicion(
          values, names, data.labels if within_class else None), data)
      for name, (names, within_class) in CANDIDATES.items()}
  memorised_candidates = {name: measure(fn(dynamics, values), data)
                          for name, fn in MEMORISED_CANDIDATES.items()}
  kinds = measure_kinds(scores[AUTO], values, data, auto_reason['memorised'])
  flagged = int(issues.sum())
  summary = {
      'auto_signal': auto_signal, 'auto_reason': auto_reason,
      'examples': len(data.labels), 'wrong_labels': int(data.flipped.sum()),
      'atypical': int(data.atypical.sum()), 'train_accuracy': train_accuracy,
      'train_seconds': trained, 'checkpoints': len(models),
      'cleanlab_flagged': flagged,
      'cleanlab_flagged_precision': float(data.flipped[issues].mean()) if flagged else 0.0,
      'cleanlab_flagged_recall': float(data.flipped[issues].sum() / data.flipped.sum()),
  }
  print(f'{scenario} seed {seed}: training accuracy {train_accuracy:.3f} in {trained:.1f}s; '
        f'AUROC confidence {result["confidence"]["auroc"]:.3f} '
        f'final_loss {result["final_loss"]["auroc"]:.3f} vog {result[VOG]["auroc"]:.3f} '
        f'cleanlab {result[CLEANLAB]["auroc"]:.3f}; seconds signals {logits_seconds:.2f} '
        f'vog {vog_seconds:.2f} cleanlab {seconds[CLEANLAB]:.1f}; auto ranks by '
        f'{auto_signal} (fitted share {auto_reason["evidence"]["fitted_share"]:.3f})',
        flush=True)
  return {'signals': result, 'candidates': candidates, 'summary': summary,
          'memorised_candidates': memorised_candidates, 'kinds': kinds}


def _stat(values: List[float], digits: int = 3) -> str:
  if not values:
    return ''
  return (f'{np.mean(values):.{digits}f} ({np.min(values):.{digits}f}-'
          f'{np.max(values):.{digits}f})')


def markdown(results: Dict[str, Dict[int, Dict[str, object]]], cleanlab_version: str
             ) -> str:
  """One table per scenario: each signal's mean (min-max) over the seeds."""
  lines = ['# Label-error signals: quality and cost', '',
           'Mean (min-max) over seeds. AUROC and P@budget: "this label is wrong", budget = '
           'number of wrong labels; P@budget is also the share of wrong labels among the '
           'budget highest. vog: VoG (target loss) normalised per class as the audit ranks '
           'by default; vog_raw: unnormalised. combined: see benchmarks/baselines.py. '
           'AUROC wrong vs atypical: wrong labels against atypical-but-correct examples '
           'only. Seconds: compute over the trained checkpoints (the logits-only signals '
           'share one forward pass; cleanlab includes its 5-fold training). cleanlab '
           f'{cleanlab_version}.', '']
  for scenario, by_seed in results.items():
    runs = list(by_seed.values())
    summaries = [r['summary'] for r in runs]
    lines.append(f'## {scenario} (seeds {", ".join(str(s) for s in by_seed)})')
    lines.append('')
    lines.append(
        f'{summaries[0]["examples"]} examples, {summaries[0]["wrong_labels"]} wrong labels'
        + (f', {summaries[0]["atypical"]} atypical' if summaries[0]['atypical'] else '')
        + f', {summaries[0]["checkpoints"]} checkpoints; training accuracy '
        f'{_stat([s["train_accuracy"] for s in summaries])}; cleanlab find_label_issues '
        f'flags {_stat([s["cleanlab_flagged"] for s in summaries], 0)}, precision '
        f'{_stat([s["cleanlab_flagged_precision"] for s in summaries])}, recall '
        f'{_stat([s["cleanlab_flagged_recall"] for s in summaries])}.')
    lines.append('')
    atypical = 'auroc_wrong_vs_atypical' in runs[0]['signals'][VOG]
    header = ['signal', 'AUROC', 'P@budget']
    if atypical:
      header += ['AUROC wrong vs atypical', 'top share atypical']
    header.append('seconds')
    lines.append('| ' + ' | '.join(header) + ' |')
    lines.append('|' + '---|' * len(header))
    for name in ROWS:
      cells = [name] + [_stat([r['signals'][name][m] for r in runs])
                        for m in ('auroc', 'precision_at_budget')]
      if atypical:
        cells += [_stat([r['signals'][name][m] for r in runs])
                  for m in ('auroc_wrong_vs_atypical', 'top_share_atypical')]
      cells.append(_stat([r['signals'][name]['seconds'] for r in runs], 2))
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  lines += candidates_table(results)
  lines += auto_table(results)
  lines += kinds_table(results)
  lines += memorised_candidates_table(results)
  return '\n'.join(lines)


def candidates_table(results: Dict[str, Dict[int, Dict[str, object]]]) -> List[str]:
  """The ways of combining signals beside the single signals they combine: mean
  P@budget (mean AUROC) per scenario, the mean over scenarios, and the largest shortfall
  from the best row of each scenario."""
  rows: Dict[str, Dict[str, Tuple[float, float]]] = {}
  for scenario, by_seed in results.items():
    runs = list(by_seed.values())
    for name in CANDIDATE_REFERENCES:
      rows.setdefault(name, {})[scenario] = tuple(
          float(np.mean([r['signals'][name][m] for r in runs]))
          for m in ('precision_at_budget', 'auroc'))
    for name in CANDIDATES:
      rows.setdefault(name, {})[scenario] = tuple(
          float(np.mean([r['candidates'][name][m] for r in runs]))
          for m in ('precision_at_budget', 'auroc'))
  scenarios = list(results)
  best = {s: max(row[s][0] for row in rows.values()) for s in scenarios}
  lines = ['## Combining signals', '',
           'Mean P@budget (mean AUROC) per scenario; percentile ranks split-wide unless '
           'marked. Shortfall: the largest gap in P@budget to the best row of a scenario.',
           '', '| signals | ' + ' | '.join(scenarios) + ' | mean P@budget | shortfall |',
           '|' + '---|' * (len(scenarios) + 3)]
  for name, row in rows.items():
    cells = [f'{row[s][0]:.3f} ({row[s][1]:.3f})' for s in scenarios]
    mean = np.mean([row[s][0] for s in scenarios])
    shortfall = max(best[s] - row[s][0] for s in scenarios)
    lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {mean:.3f} | {shortfall:.3f} |')
  lines.append('')
  return lines


def auto_table(results: Dict[str, Dict[int, Dict[str, object]]]) -> List[str]:
  """What auto chose per scenario and seed, its evidence, and its P@budget beside
  confidence's (auto's default)."""
  lines = ['## What auto chooses', '',
           f'Evidence: the share of a sample of up to {AUTO_SAMPLE} training examples whose '
           'label the last selected checkpoint predicts (margin_last > 0); memorised from '
           f'{auto_rank.MEMORISED_FIT_SHARE} over at least {auto_rank.MIN_EXAMPLES} examples '
           f'(components/vog/compute/auto_rank.py).', '',
           '| scenario | seed | fitted share | examples | memorised | auto ranks by | '
           'P@budget auto | P@budget confidence |', '|---|---|---|---|---|---|---|---|']
  for scenario, by_seed in results.items():
    for seed, run in by_seed.items():
      reason = run['summary']['auto_reason']
      evidence = reason['evidence']
      lines.append(
          f'| {scenario} | {seed} | {evidence["fitted_share"]:.3f} | {evidence["examples"]} | '
          f'{"yes" if reason["memorised"] else "no"} | {reason["signal"]} | '
          f'{run["signals"][AUTO]["precision_at_budget"]:.3f} | '
          f'{run["signals"]["confidence"]["precision_at_budget"]:.3f} |')
  lines += ['', '| scenario | P@budget auto, mean | confidence, mean | change |',
            '|---|---|---|---|']
  for scenario, by_seed in results.items():
    runs = list(by_seed.values())
    got = float(np.mean([r['signals'][AUTO]['precision_at_budget'] for r in runs]))
    was = float(np.mean([r['signals']['confidence']['precision_at_budget'] for r in runs]))
    lines.append(f'| {scenario} | {got:.3f} | {was:.3f} | {got - was:+.3f} |')
  lines.append('')
  return lines


def _mean(values: List[float]) -> str:
  values = [v for v in values if not np.isnan(v)]
  return f'{np.mean(values):.3f}' if values else 'n/a'


def kinds_table(results: Dict[str, Dict[int, Dict[str, object]]]) -> List[str]:
  """The kinds of auto's flagged examples, mean over seeds."""
  lines = ['## Kinds of the flagged examples', '',
           'components/vog/compute/flag_kinds.py on auto\'s ranking (rule 2, el2n, where auto '
           'found memorisation). Scope: budget = the top budget (the flagged set), twice = '
           'the top twice the budget, wrong or atypical = every wrong or atypical example. '
           'Counts are means over seeds; precision of wrong label: the share of examples '
           'given that kind that are wrong labels; of atypical: the share that are atypical '
           '(and, in brackets, that have the right label: atypical or clean); n/a where no '
           'example got the kind in any seed. Recall: the share of all wrong labels given '
           '`wrong label`.', '',
           '| scenario | scope | flags | wrong labels in scope | atypical in scope | '
           'wrong label | atypical | unclear | precision wrong label | precision atypical '
           '(right label) | recall wrong label |', '|' + '---|' * 11]
  for scenario, by_seed in results.items():
    runs = list(by_seed.values())
    for scope in runs[0]['kinds']:
      k = [r['kinds'][scope] for r in runs]

      def avg(key, k=k):
        return f'{np.mean([x[key] for x in k]):.1f}'

      lines.append(
          f'| {scenario} | {scope.replace("_", " ")} | {avg("flags")} | '
          f'{avg("wrong_labels")} | {avg("atypical_examples")} | {avg("n_wrong_label")} | '
          f'{avg("n_atypical")} | {avg("n_unclear")} | '
          f'{_mean([x["precision_wrong_label"] for x in k])} | '
          f'{_mean([x["precision_atypical"] for x in k])} '
          f'({_mean([x["right_label_atypical"] for x in k])}) | '
          f'{_mean([x["recall_wrong_label"] for x in k])} |')
  lines.append('')
  return lines


def memorised_candidates_table(results: Dict[str, Dict[int, Dict[str, object]]]
                               ) -> List[str]:
  """P@budget of what auto could rank by once memorised, per scenario, mean (min-max)."""
  scenarios = list(results)
  lines = ['## Signals for a memorised model', '',
           'P@budget, mean (min-max) over seeds, of what auto could rank by once the model '
           'memorised its labels (auto ranks by el2n then). Ranks: the mean of split-wide '
           'percentile ranks; values: el2n plus variability as they are; first 2 / first '
           'third: the mean over the earliest selected checkpoints only.', '',
           '| signal | ' + ' | '.join(scenarios) + ' |', '|' + '---|' * (len(scenarios) + 1)]
  for name in MEMORISED_CANDIDATES:
    cells = [_stat([r['memorised_candidates'][name]['precision_at_budget']
                    for r in results[s].values()]) for s in scenarios]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  return lines


def _json_ready(value):
  """NaN (a precision with no example of a kind) as None, so results.json is strict JSON."""
  if isinstance(value, dict):
    return {k: _json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  if isinstance(value, float) and np.isnan(value):
    return None
  return value


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default='quality_output')
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
  parser.add_argument('--scenarios', nargs='+', default=list(SCENARIOS),
                      choices=SCENARIOS)
  args = parser.parse_args(argv)
  import cleanlab  # pylint: disable=g-import-not-at-top
  started = time.perf_counter()
  results: Dict[str, Dict[int, Dict[str, object]]] = {}
  for scenario in args.scenarios:
    for seed in args.seeds:
      results.setdefault(scenario, {})[seed] = run_one(scenario, seed)
  table = markdown(results, cleanlab.__version__)
  os.makedirs(args.output, exist_ok=True)
  with open(os.path.join(args.output, 'results.json'), 'w') as f:
    json.dump(_json_ready({
        'cleanlab_version': cleanlab.__version__,
        'seconds': time.perf_counter() - started,
        'results': {s: {str(k): v for k, v in r.items()} for s, r in results.items()}}),
              f, indent=2)
  with open(os.path.join(args.output, 'results.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
  print(f'wrote {args.output}/results.json and results.md in '
        f'{time.perf_counter() - started:.0f}s')


if __name__ == '__main__':
  main()
