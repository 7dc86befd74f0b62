"""What kind of finding each flagged example is: a wrong label, an atypical example, or unclear.

A flag says "look at this example"; the kind says what the reviewer will most likely find:

* `wrong label` (WRONG_LABEL): relabel it;
* `atypical` (ATYPICAL): the label is right, the example is unusual (shifted, rotated, a rare
  way of writing the class); keep it, perhaps collect more like it;
* `unclear` (UNCLEAR): the signals do not say which.

The rule reads only the example's own label-error signals (signals.REGISTRY) and the constants
below, so it applies example by example in one pass, with no statistics of the split:

1. A model that has not memorised its wrong labels (the usual case): by `margin_mean`, the
   area under the margin (the label's logit minus the largest other logit, averaged over the
   selected checkpoints).

   - margin_mean < WRONG_LABEL_BELOW (-1): `wrong label`. Over training, another class beat
     the label, on average by more than one unit of log-odds (the rival's probability was more
     than e, about 2.7, times the label's).
   - margin_mean > ATYPICAL_ABOVE (0): `atypical`. The model fitted the label on average;
     whatever flagged it, it is consistent with the rest of its class.
   - otherwise (from -1 to 0, both ends included): `unclear`.

   Margins are log-odds between two classes, so the thresholds read the same for any model
   and number of classes. Of the signals, margin_mean separates wrong labels from atypical
   correct ones best (AUROC 0.98 in `make quality`'s `atypical` scenario). Variability is
   not in the rule although it marks atypical examples: labels the model half learns (pair
   flips, tabular noise) sit in the band from -1 to 0 with a high variability too, so calling
   a high variability there `atypical` mislabels many wrong labels as atypical (benchmarks/
   quality.py's `pairs` and `tabular` scenarios).

2. A model that memorised its training labels (auto_rank.Evidence.memorised: it fits nearly
   every training label, wrong ones included): the margin is then positive for the wrong
   labels too, and late, large logits dominate its mean, so rule 1 would call every memorised
   wrong label atypical. What still tells is how the label stood at the earliest selected
   checkpoint, before the wrong labels were fitted: `el2n`.

   - el2n > MEMORISED_WRONG_LABEL_ABOVE (1): `wrong label`. At the earliest checkpoint the
     label held little of the probability and another class most of it (with the rest on one
     class, el2n > 1 means the label's probability was below about 0.29).
   - otherwise: `unclear`. Examples fitted late are what memorisation looks like, wrong or
     atypical alike, so no example is called `atypical` then.

A value that is not finite (NaN, infinite) gives `unclear`: the audit quarantines examples
whose logits are not finite, so this arises only for values from elsewhere, and no kind is
claimed without evidence. A value on a threshold gives `unclear` too: a kind is claimed only
strictly beyond its threshold.

Without labels (label_mode='predicted') there is no kind: the target is the model's own
prediction, so no label can be wrong and the signals are not computed. `kinds_without_labels`
gives every flag `unclear`, with WITHOUT_LABELS_REASON saying why.

Measured by benchmarks/quality.py (`make quality`, "Kinds of the flagged examples", mean of
3 seeds). In the `atypical` scenario, of the 180 flags (the top budget) 169 are called
`wrong label`, 95% of them rightly, 11 unclear and none atypical: the atypical examples that
reach the top budget are those the model still gets wrong. Over every wrong or atypical
example, `wrong label` is right for 95% and `atypical` for 97%. Once memorised (rule 2), 45
of the 60 flags are called `wrong label`, 98% rightly, the rest unclear. Pure NumPy: no
TensorFlow, no Beam.
"""

from typing import Mapping, Union

import numpy as np

from components.vog.compute import signals

WRONG_LABEL = 'wrong label'
ATYPICAL = 'atypical'
UNCLEAR = 'unclear'
KINDS = (WRONG_LABEL, ATYPICAL, UNCLEAR)

# Rule 1 (no memorisation), on margin_mean in log-odds: below -1 a wrong label, above 0
# atypical, in between (ends included) unclear.
WRONG_LABEL_BELOW = -1.0
ATYPICAL_ABOVE = 0.0
# Rule 2 (memorised), on el2n: above 1 a wrong label, else unclear.
MEMORISED_WRONG_LABEL_ABOVE = 1.0

WITHOUT_LABELS_REASON = (
    "label_mode='predicted': the target is the model's own prediction, so no label can be "
    'wrong and the label-error signals are not computed; every flag is unclear')

ArrayLike = Union[np.ndarray, float, int]


def required_field(memorised: bool = False) -> str:
  """The signal field the rule reads: audit_margin_mean, or audit_el2n once memorised."""
  return signals.EL2N if memorised else signals.MARGIN_MEAN


def _values(values: Mapping[str, ArrayLike], memorised: bool) -> np.ndarray:
  field = required_field(memorised)
  if field not in values:
    raise ValueError(f'the kind of a flag needs {field!r}'
                     + (' (the model memorised its labels)' if memorised else '')
                     + f'; got {", ".join(sorted(values)) or "no signal"}')
  out = np.asarray(values[field])
  if out.ndim > 1:
    raise ValueError(f'{field!r} must hold one value per example; got shape {out.shape}')
  if out.size and (not np.issubdtype(out.dtype, np.number) or np.iscomplexobj(out)):
    raise ValueError(f'{field!r} must hold real numbers; got dtype {out.dtype}')
  return np.atleast_1d(out).astype(np.float64)


def kinds(values: Mapping[str, ArrayLike], memorised: bool = False) -> np.ndarray:
  """The kind of every example, from its signals.

  Args:
    values: signal field -> one value per example, as signals.compute_signals returns (only
      audit_margin_mean is read, or audit_el2n when `memorised`; other fields are ignored).
    memorised: whether the model memorised its training labels
      (auto_rank.Evidence.memorised); picks rule 2 of the module docstring.

  Returns:
    An object array of WRONG_LABEL, ATYPICAL or UNCLEAR, one per example.

  Raises:
    ValueError: the field the rule reads is missing, not 1-D or not real numbers.
  """
  v = _values(values, memorised)
  out = np.full(v.shape, UNCLEAR, dtype=object)
  with np.errstate(invalid='ignore'):  # NaN compares False: unclear
    if memorised:
      out[v > MEMORISED_WRONG_LABEL_ABOVE] = WRONG_LABEL
    else:
      out[v < WRONG_LABEL_BELOW] = WRONG_LABEL
      out[v > ATYPICAL_ABOVE] = ATYPICAL
  out[~np.isfinite(v)] = UNCLEAR
  return out


def kind(values: Mapping[str, float], memorised: bool = False) -> str:
  """The kind of one example from its signals (field -> value), as `kinds` gives it."""
  field = required_field(memorised)
  if field in values and np.ndim(values[field]) != 0:
    raise ValueError(f'{field!r} must be one value; got shape {np.shape(values[field])}')
  return str(kinds(values, memorised)[0])


def kinds_without_labels(count: int) -> np.ndarray:
  """The kinds of `count` flags of an audit without labels: every one UNCLEAR.

  See WITHOUT_LABELS_REASON: with label_mode='predicted' no label can be wrong and there is
  no signal to tell an atypical example from another hard one.
  """
  if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
    raise ValueError(f'count must be a whole number >= 0; got {count!r}')
  return np.full(int(count), UNCLEAR, dtype=object)


def counts(found: np.ndarray) -> Mapping[str, int]:
  """How many of `found` (kinds as `kinds` returns them) are of each kind, every kind listed."""
  found = np.asarray(found, dtype=object)
  unknown = set(found.tolist()) - set(KINDS)
  if unknown:
    raise ValueError(f'not kinds: {sorted(map(str, unknown))}; kinds are {", ".join(KINDS)}')
  return {k: int(np.sum(found == k)) for k in KINDS}

