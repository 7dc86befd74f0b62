"""Training-dynamics signals per example from the logits of the selected checkpoints.

VoG reads input gradients; the same checkpoints also say, from their logits alone, how
each example's fit to its label evolved during training. Once a model has memorised its
wrong labels, the final loss of a flipped example is small too, but how late and how
weakly it was fitted still shows. Pure NumPy: no TensorFlow, no Beam.

Every signal takes the logits of the K selected checkpoints in training order, shape
[K, N, C], and the target class of each of the N examples (its label):

* `audit_final_loss`: cross-entropy of the target at the last checkpoint;
* `audit_margin_last`: target logit minus the largest other logit, last checkpoint;
* `audit_margin_mean`: that margin averaged over the checkpoints, the Area Under the
  Margin (Pleiss et al. 2020);
* `audit_confidence`: mean softmax probability of the target over the checkpoints, and
  `audit_variability`: its population standard deviation (Data Maps, Swayamdipta et al.
  2020);
* `audit_forgetting`: the number of times the prediction goes from the target to another
  class between consecutive checkpoints, in training order (Toneva et al. 2019); the
  target is predicted when its logit is above every other (a tie is not), and an example
  never predicted as its target has no forgetting event;
* `audit_el2n`: L2 norm of softmax minus one-hot at the earliest selected checkpoint
  (Paul et al. 2021).

All of them compare the model with the target, so they mean nothing when the target is
the model's own prediction (label_mode='predicted'): `LABEL_SIGNALS` lists them.

`suspicion` orients each signal so that higher means more likely mislabeled;
`combined_suspicion` is `audit_combined`, a percentile rank built from them.

Which to trust (benchmarks/quality.py, `make quality`: sklearn digits and a tabular set,
10 checkpoints, three seeds; precision at a budget of as many examples as there are wrong
labels, mean over seeds):

* confidence is the most dependable single signal: 0.97 with 10% uniform flips, 0.91
  with class-pair flips, 0.85 after a wide MLP memorised 20% flips (training accuracy
  100%), 0.91 with atypical-but-correct examples mixed in, 0.73 on tabular data; never
  more than 0.044 behind the best signal of a scenario;
* margin_mean is as good or slightly better while the model has not memorised (0.93
  with pair flips, 0.75 tabular) but falls to 0.71 after memorisation: late, large
  logits dominate its mean, while confidence weighs every checkpoint alike;
* el2n and variability are the best once flips are memorised (0.89 and 0.88) and weak
  elsewhere (el2n 0.73 with pair flips; variability ranks never-fitted flips low);
* final_loss and margin_last trail whenever the training dynamics carry the signal
  (0.59 and 0.56 after memorisation); forgetting is weak with 10 checkpoints (0.16-0.39);
* VoG (target `loss`, class-normalised) ranks below confidence in every scenario (0.47
  to 0.91) at three to seven times the compute.
"""

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

FINAL_LOSS = 'audit_final_loss'
MARGIN_LAST = 'audit_margin_last'
MARGIN_MEAN = 'audit_margin_mean'
CONFIDENCE = 'audit_confidence'
VARIABILITY = 'audit_variability'
FORGETTING = 'audit_forgetting'
EL2N = 'audit_el2n'
COMBINED = 'audit_combined'

SIGNALS = (FINAL_LOSS, MARGIN_LAST, MARGIN_MEAN, CONFIDENCE, VARIABILITY, FORGETTING,
           EL2N)
# Every signal compares the checkpoints with the label: with label_mode='predicted' the
# target is the latest checkpoint's own prediction and they carry no information.
LABEL_SIGNALS = SIGNALS + (COMBINED,)

# The sign that turns each signal into a suspicion, higher = more likely mislabeled:
# a high loss, a low margin, a low confidence, many forgetting events, a large early
# error, a high variability. Variability is high for labels fitted late: memorised wrong
# labels, but also atypical correct examples; a wrong label the model never fits keeps a
# low confidence with little variability, so in a model that has not memorised its wrong
# labels this orientation ranks them below the typical example.
ORIENTATION: Dict[str, int] = {
    FINAL_LOSS: 1,
    MARGIN_LAST: -1,
    MARGIN_MEAN: -1,
    CONFIDENCE: -1,
    VARIABILITY: 1,
    FORGETTING: 1,
    EL2N: 1,
    COMBINED: 1,
}

# The signals whose split-wide percentile ranks `audit_combined` averages: confidence
# alone (see `combined_suspicion` for why).
COMBINED_SIGNALS = (CONFIDENCE,)


def _check(logits: np.ndarray, target: np.ndarray):
  logits = np.asarray(logits)
  if logits.ndim != 3:
    raise ValueError(f'logits must have shape [checkpoints, examples, classes]; got shape '
                     f'{logits.shape}')
  k, n, c = logits.shape
  if k < 1:
    raise ValueError('logits hold no checkpoint; give at least 1')
  if c < 2:
    raise ValueError(f'logits have {c} class(es); the signals need one logit per class '
                     '(at least 2)')
  if not np.issubdtype(logits.dtype, np.number) or np.iscomplexobj(logits):
    raise ValueError(f'logits must be real numbers; got dtype {logits.dtype}')
  logits = logits.astype(np.float64)
  bad = ~np.isfinite(logits)
  if bad.any():
    where = sorted(set(np.nonzero(bad)[0].tolist()))
    raise ValueError(f'logits hold {int(bad.sum())} non-finite value(s), at checkpoint(s) '
                     f'{where}')
  target = np.asarray(target)
  if target.shape != (n,):
    raise ValueError(f'target must hold one class per example, shape ({n},); got shape '
                     f'{target.shape}')
  if n and not np.issubdtype(target.dtype, np.integer):
    if not np.issubdtype(target.dtype, np.floating) or not np.all(
        np.isfinite(target) & (target == np.round(target))):
      raise ValueError(f'target must hold integer classes; got dtype {target.dtype}')
  target = target.astype(np.int64)
  outside = (target < 0) | (target >= c)
  if outside.any():
    raise ValueError(f'target classes {sorted(set(target[outside].tolist()))} are outside '
                     f'[0, {c})')
  return logits, target


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compute_signals(logits: np.ndarray, target: np.ndarray) -> Dict[str, np.ndarray]:
  """Every signal of `SIGNALS` for N examples, keyed by field name.

  Args:
    logits: pre-softmax outputs of the K selected checkpoints, earliest first, shape
      [K, N, C]; K may be 1 (no variability, no forgetting).
    target: the target class of each example, shape [N], integers in [0, C).

  Returns:
    Arrays of length N: float32 for every signal but `audit_forgetting` (int64).

  Raises:
    ValueError: logits not of rank 3, without a checkpoint, with fewer than 2 classes or
      with a non-finite value; a target of another length, not integral, or outside
      [0, C).
  """
  logits, target = _check(logits, target)
  k, n, _ = logits.shape
  rows = np.arange(n)
  log_p = _log_softmax(logits)
  log_p_target = log_p[:, rows, target]  # [K, N]
  p_target = np.exp(log_p_target)
  target_logit = logits[:, rows, target]
  others = logits.copy()
  others[:, rows, target] = -np.inf
  margin = target_logit - others.max(axis=-1)  # [K, N]
  correct = margin > 0  # [K, N]; a tie with another class is not a correct prediction
  forgotten = (correct[:-1] & ~correct[1:]).sum(axis=0) if k > 1 else np.zeros(n, int)
  first_p = np.exp(log_p[0])
  first_p[rows, target] -= 1.0
  return {
      FINAL_LOSS: (-log_p_target[-1]).astype(np.float32),
      MARGIN_LAST: margin[-1].astype(np.float32),
      MARGIN_MEAN: margin.mean(axis=0).astype(np.float32),
      CONFIDENCE: p_target.mean(axis=0).astype(np.float32),
      VARIABILITY: p_target.std(axis=0).astype(np.float32),
      FORGETTING: np.asarray(forgotten, dtype=np.int64),
      EL2N: np.sqrt((first_p ** 2).sum(axis=-1)).astype(np.float32),
  }


def suspicion(name: str, values: np.ndarray) -> np.ndarray:
  """`values` of signal `name` as float64 with higher = more likely mislabeled.

  The sign per signal is `ORIENTATION[name]`. Raises ValueError for an unknown name.
  """
  if name not in ORIENTATION:
    raise ValueError(f'signal {name!r} is not known; choose one of '
                     f'{", ".join(ORIENTATION)}')
  return ORIENTATION[name] * np.asarray(values, dtype=np.float64)


def percentile_ranks(values: np.ndarray, classes: Optional[np.ndarray] = None
                     ) -> np.ndarray:
  """Each value's percentile (0-100): the share of values at or below it.

  Without `classes` the share is taken over all values (the split); with `classes`,
  within each value's class. Either is what an audit reads off per-class quantiles:
  the split-wide share is the count-weighted mean of every class's share at or below
  the value (percentiles.Ranking.percentiles), so a score built from these needs no more
  than per-class quantiles of each signal.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1:
    raise ValueError(f'values must be 1-D; got shape {values.shape}')
  if classes is None:
    classes = np.zeros(len(values), np.int64)
  classes = np.asarray(classes)
  if classes.shape != values.shape:
    raise ValueError(f'values and classes must be of one length; got shapes '
                     f'{values.shape} and {classes.shape}')
  out = np.empty(len(values))
  for c in np.unique(classes):
    members = classes == c
    ordered = np.sort(values[members])
    out[members] = 100.0 * np.searchsorted(ordered, values[members], side='right') / len(
        ordered)
  return out


def combined_suspicion(values: Mapping[str, np.ndarray],
                       names: Sequence[str] = COMBINED_SIGNALS,
                       classes: Optional[np.ndarray] = None) -> np.ndarray:
  """`audit_combined`: the mean over `names` of each suspicion's percentile rank (0-100).

  `values` maps signal names to arrays as `compute_signals` returns them. Ranks are
  split-wide unless `classes` is given (then within class). Higher = more likely
  mislabeled.

  By default this is the percentile rank of confidence alone, because no combination
  beat it in `make quality` (precision at budget, mean over three seeds, scenarios
  uniform / pairs / memorised / atypical / tabular; the mean over them; the largest
  shortfall from a scenario's best):

      confidence                     .974 .909 .850 .907 .733   mean .875  shortfall .044
      confidence+margin_mean         .976 .918 .794 .926 .747   mean .872  shortfall .100
      confidence+el2n                .967 .819 .889 .906 .765   mean .869  shortfall .107
      confidence+margin_mean+el2n    .970 .865 .861 .913 .767   mean .875  shortfall .062
      the same, ranks within class   .920 .604 .800 .900 .758   mean .797  shortfall .322

  Adding margin_mean helps until the model memorises and costs 0.056 after; adding el2n
  helps after memorisation and costs up to 0.09 before. Ranks within class cost most
  where wrong labels crowd into a few classes (pair flips: 0.60 against 0.87), as they
  give every class the same share of the top; split-wide ranks are the count-weighted
  mean of per-class shares, so they too need no more than per-class quantiles.
  """
  missing = [n for n in names if n not in values]
  if missing or not names:
    raise ValueError(f'combined needs the signals {list(names)}; missing {missing}')
  return np.mean([percentile_ranks(suspicion(n, values[n]), classes) for n in names],
                 axis=0)
