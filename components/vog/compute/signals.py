"""Training-dynamics signals per example from the logits of the selected checkpoints.

VoG reads input gradients; the same checkpoints also say, from their logits alone, how
each example's fit to its label evolved during training. Once a model has memorised its
wrong labels, the final loss of a flipped example is small too, but how late and how
weakly it was fitted still shows. Pure NumPy: no TensorFlow, no Beam.

`REGISTRY` declares every signal once, as a `Signal`: its short name (what `rank_by` and
a flagged row's `agreeing` say), the field it adds to each scored example
(`audit_<name>`), which way is suspicious, whether it is a float or a count, how it is
computed and a one-line description. The report's names (vocabulary.SIGNAL_FIELDS,
INT_SIGNALS, SIGNAL_NAMES, AGREEMENT_NAMES), the score table's columns, the features
added to the scored examples, the summary's class means, the flagged rows and the review
page all follow it, in its order, which is the order of the signals in every file an
audit writes. Adding a signal is adding an entry: `rank_by` takes its name too
(settings.signal_choices), and the CLI's help lists it.

Every signal is computed from the logits of the K selected checkpoints in training order,
shape [K, N, C], and the target class of each of the N examples (its label), through the
per-checkpoint arrays of `Dynamics`; the functions named in REGISTRY say what each one
is. All of them compare the model with the target, so they mean nothing when the target
is the model's own prediction (label_mode='predicted'), and the audit leaves them out
then. `suspicion` orients a signal so that higher means more likely mislabeled. How well
each finds wrong labels is measured by benchmarks/quality.py (`make quality`).

The registry is read where it is used, never copied at import: `SIGNALS` and
`ORIENTATION` here, like the names report_format derives from it, are computed from
`REGISTRY` each time they are read.
"""

import dataclasses
import re
from typing import Callable, Dict, Tuple

import numpy as np

FIELD_PREFIX = 'audit_'
# Which way is suspicious (`Signal.orientation`): the sign that turns a value into a
# suspicion, higher = more likely mislabeled.
HIGH = 1
LOW = -1
# What a signal holds (`Signal.kind`): a float (float32 in the examples, the score table
# and flagged.jsonl), or a count (int64 in the examples, int32 in the score table).
FLOAT = 'float'
COUNT = 'count'
KINDS = (FLOAT, COUNT)

# The field names of the registered signals, for code that names one of them.
FINAL_LOSS = 'audit_final_loss'
MARGIN_LAST = 'audit_margin_last'
MARGIN_MEAN = 'audit_margin_mean'
CONFIDENCE = 'audit_confidence'
VARIABILITY = 'audit_variability'
FORGETTING = 'audit_forgetting'
EL2N = 'audit_el2n'

_NAME = re.compile(r'[a-z][a-z0-9_]*')


@dataclasses.dataclass(frozen=True, eq=False)
class Dynamics:
  """How the K checkpoints (earliest first) fit N examples: what a signal is computed from.

  logits: [K, N, C] float64, pre-softmax; target: [N] int64, each example's class;
  log_p: [K, N, C] log-softmax; log_p_target: [K, N] log-softmax of the target, and
  p_target its probability; margin: [K, N] target logit minus the largest other logit;
  correct: [K, N] whether the target is predicted (margin > 0: a tie with another class
  is not a correct prediction).
  """
  logits: np.ndarray
  target: np.ndarray
  log_p: np.ndarray
  log_p_target: np.ndarray
  p_target: np.ndarray
  margin: np.ndarray
  correct: np.ndarray

  @property
  def checkpoints(self) -> int:
    return self.logits.shape[0]

  @property
  def examples(self) -> int:
    return self.logits.shape[1]


@dataclasses.dataclass(frozen=True)
class Signal:
  """One label-error signal.

  Attributes:
    name: the short name (`rank_by`, a flagged row's `agreeing`, the review page).
    orientation: HIGH when a high value is suspicious, LOW when a low one is.
    kind: FLOAT or COUNT.
    compute: Dynamics -> [N] values, one per example.
    description: what the value is, in one line.
  """
  name: str
  orientation: int
  kind: str
  compute: Callable[[Dynamics], np.ndarray]
  description: str

  def __post_init__(self):
    if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
      raise ValueError(f'signal name {self.name!r} must be lowercase letters, digits and '
                       "'_', starting with a letter")
    if self.orientation not in (HIGH, LOW):
      raise ValueError(f'signal {self.name!r} has orientation {self.orientation!r}; '
                       f'give HIGH ({HIGH}) or LOW ({LOW})')
    if self.kind not in KINDS:
      raise ValueError(f'signal {self.name!r} has kind {self.kind!r}; give one of '
                       f'{", ".join(KINDS)}')
    if not callable(self.compute):
      raise ValueError(f'signal {self.name!r} has no compute function')
    if not isinstance(self.description, str) or not self.description.strip() or (
        '\n' in self.description):
      raise ValueError(f'signal {self.name!r} needs a one-line description')

  @property
  def field(self) -> str:
    """The feature, score table column and summary key: `audit_<name>`."""
    return FIELD_PREFIX + self.name

  @property
  def dtype(self) -> type:
    """What `compute_signals` returns for it: int64 for a count, else float32."""
    return np.int64 if self.kind == COUNT else np.float32

  @property
  def suspicious_when(self) -> str:
    """'high' or 'low': which values point at a wrong label."""
    return 'high' if self.orientation == HIGH else 'low'


def _final_loss(d: Dynamics) -> np.ndarray:
  """Cross-entropy of the target at the last checkpoint."""
  return -d.log_p_target[-1]


def _margin_last(d: Dynamics) -> np.ndarray:
  """Target logit minus the largest other logit, at the last checkpoint."""
  return d.margin[-1]


def _margin_mean(d: Dynamics) -> np.ndarray:
  """The margin averaged over the checkpoints: the Area Under the Margin (Pleiss et al.
  2020)."""
  return d.margin.mean(axis=0)


def _confidence(d: Dynamics) -> np.ndarray:
  """Mean softmax probability of the target over the checkpoints (Data Maps,
  Swayamdipta et al. 2020)."""
  return d.p_target.mean(axis=0)


def _variability(d: Dynamics) -> np.ndarray:
  """Population standard deviation of that probability over the checkpoints (Data
  Maps). High for labels fitted late: memorised wrong labels, but also atypical correct
  examples; a wrong label the model never fits keeps a low confidence with little
  variability, so in a model that has not memorised its wrong labels this orientation
  ranks them below the typical example."""
  return d.p_target.std(axis=0)


def _forgetting(d: Dynamics) -> np.ndarray:
  """How many times the prediction goes from the target to another class between
  consecutive checkpoints, in training order (Toneva et al. 2019); an example never
  predicted as its target has no forgetting event. 0 with one checkpoint."""
  if d.checkpoints < 2:
    return np.zeros(d.examples, int)
  return (d.correct[:-1] & ~d.correct[1:]).sum(axis=0)


def _el2n(d: Dynamics) -> np.ndarray:
  """L2 norm of softmax minus one-hot at the earliest selected checkpoint (Paul et al.
  2021)."""
  first_p = np.exp(d.log_p[0])
  first_p[np.arange(d.examples), d.target] -= 1.0
  return np.sqrt((first_p ** 2).sum(axis=-1))


# Every signal, in the order of the signal fields and columns of the audit's files.
REGISTRY: Tuple[Signal, ...] = (
    Signal('final_loss', HIGH, FLOAT, _final_loss,
           'cross-entropy of the label at the last checkpoint'),
    Signal('margin_last', LOW, FLOAT, _margin_last,
           'label logit minus the largest other logit, at the last checkpoint'),
    Signal('margin_mean', LOW, FLOAT, _margin_mean,
           'label logit minus the largest other logit, averaged over the checkpoints '
           '(area under the margin)'),
    Signal('confidence', LOW, FLOAT, _confidence,
           "the label's softmax probability averaged over the checkpoints"),
    Signal('variability', HIGH, FLOAT, _variability,
           "standard deviation of the label's softmax probability over the checkpoints"),
    Signal('forgetting', HIGH, COUNT, _forgetting,
           'how often the prediction leaves the label from one checkpoint to the next'),
    Signal('el2n', HIGH, FLOAT, _el2n,
           'L2 norm of softmax minus one-hot label at the earliest checkpoint'),
)


def fields() -> Tuple[str, ...]:
  """The field of every registered signal, in registry order."""
  return tuple(s.field for s in REGISTRY)


def names() -> Tuple[str, ...]:
  """The short name of every registered signal, in registry order."""
  return tuple(s.name for s in REGISTRY)


def by_name(name: str) -> Signal:
  """The registered signal of short name `name`; ValueError naming the others if none."""
  for s in REGISTRY:
    if s.name == name:
      return s
  raise ValueError(f'signal {name!r} is not known; choose one of {", ".join(names())}')


def by_field(field: str) -> Signal:
  """The registered signal of field `field` (`audit_<name>`); ValueError if none."""
  for s in REGISTRY:
    if s.field == field:
      return s
  raise ValueError(f'signal {field!r} is not known; choose one of {", ".join(fields())}')


def __getattr__(name: str):
  # SIGNALS: every field, in registry order; ORIENTATION: {field: HIGH or LOW}.
  if name == 'SIGNALS':
    return fields()
  if name == 'ORIENTATION':
    return {s.field: s.orientation for s in REGISTRY}
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


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


def dynamics(logits: np.ndarray, target: np.ndarray) -> Dynamics:
  """The Dynamics of N examples; checks its arguments as `compute_signals` does."""
  logits, target = _check(logits, target)
  rows = np.arange(logits.shape[1])
  log_p = _log_softmax(logits)
  log_p_target = log_p[:, rows, target]  # [K, N]
  others = logits.copy()
  others[:, rows, target] = -np.inf
  margin = logits[:, rows, target] - others.max(axis=-1)  # [K, N]
  return Dynamics(logits=logits, target=target, log_p=log_p, log_p_target=log_p_target,
                  p_target=np.exp(log_p_target), margin=margin, correct=margin > 0)


def compute_signals(logits: np.ndarray, target: np.ndarray) -> Dict[str, np.ndarray]:
  """Every registered signal for N examples, keyed by field name, in registry order.

  Args:
    logits: pre-softmax outputs of the K selected checkpoints, earliest first, shape
      [K, N, C]; K may be 1 (no variability, no forgetting).
    target: the target class of each example, shape [N], integers in [0, C).

  Returns:
    Arrays of length N: int64 for a count (`audit_forgetting`), float32 for the others.

  Raises:
    ValueError: logits not of rank 3, without a checkpoint, with fewer than 2 classes or
      with a non-finite value; a target of another length, not integral, or outside
      [0, C); a signal whose computation gives other than one value per example.
  """
  d = dynamics(logits, target)
  out = {}
  for s in REGISTRY:
    values = np.asarray(s.compute(d))
    if values.shape != (d.examples,):
      raise ValueError(f'signal {s.name!r} computed shape {values.shape}; expected one '
                       f'value per example, ({d.examples},)')
    out[s.field] = values.astype(s.dtype)
  return out


def suspicion(name: str, values: np.ndarray) -> np.ndarray:
  """`values` of the signal of field `name` as float64 with higher = more likely mislabeled.

  The sign is the signal's orientation. Raises ValueError for an unknown name.
  """
  return by_field(name).orientation * np.asarray(values, dtype=np.float64)
