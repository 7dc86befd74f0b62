"""What `rank_by='auto'` ranks by with labels: confidence, or el2n once the model memorised.

Confidence (the label's softmax probability averaged over the selected checkpoints) is the
most dependable label-error signal while a model has not memorised its wrong labels. A model
that has memorised them fits nearly every training label, the wrong ones too, so the late
checkpoints, where every label's probability is near 1, carry no information and dilute
confidence's mean. What still tells a wrong label then is how the label stood early on, before
it was fitted: el2n, read at the earliest selected checkpoint. In `make quality`'s `memorised`
scenario (300 digits, 20% flipped, training accuracy 100%) el2n finds 0.894 of its top
budget wrong against confidence's 0.850 (3 seeds; 0.889 against 0.832 over 15 seeds); in the
four scenarios without memorisation confidence stays ahead (0.733 to 0.974 against el2n's
0.707 to 0.933). Nothing else tried there did better over 15 seeds (the benchmark's "Signals
for a memorised model"): variability 0.876, el2n and variability combined by percentile
rank 0.889 or by value 0.890, the margin or confidence averaged over the earliest checkpoints
only 0.860 to 0.887: what tells is in the earliest checkpoint, which el2n already reads.

The evidence is in the checkpoints themselves: the share of the training examples whose
label the last selected checkpoint predicts (margin_last > 0; a tie is not a fit, as in
signals.Dynamics.correct). `memorisation_evidence` computes it from the margin_last values of
the train split or of a sample of it (the audit scores a sample of up to about 1,000 training
examples with the selected checkpoints before the pipeline); `evidence_from_logits` from those
checkpoints' logits directly. `choose` turns it into the signal and the reason:

* fitted share >= MEMORISED_FIT_SHARE (0.99), over at least MIN_EXAMPLES (100) examples with
  a finite margin: memorised, rank by `el2n`;
* otherwise, or with too few examples to tell: rank by `confidence`.

Why 0.99: a model that does not memorise leaves its wrong labels unfitted, so it fits about
one minus the noise rate (0.87 to 0.95 in the benchmark's scenarios without memorisation,
with 10 to 15% wrong labels); a memorising one fits them all (1.000 in each of 15 seeds of
the `memorised` scenario). A model that fits 99% of its labels has fitted some wrong ones
whenever more than 1% are wrong, which is when ranking matters. Why 100 examples: with fewer
the share moves in steps larger than the 0.01 the threshold leaves, so one example decides.
A clean, easy data set the model fits completely also reads as memorised; el2n still finds
wrong labels there (0.707 to 0.933 of its top budget in the scenarios without memorisation),
and there are few to find.

Without labels (label_mode='predicted') there is no label to fit, and `auto` is VoG whatever
the evidence (settings.py resolves that before anything here is asked). Pure NumPy: no
TensorFlow, no Beam.
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np

from components.vog.compute import signals

# The signal `auto` ranks by with labels, and the one once the model memorised its labels.
DEFAULT_SIGNAL = 'confidence'
MEMORISED_SIGNAL = 'el2n'
# The share of training labels the last selected checkpoint fits from which the model has
# memorised them, and the fewest examples (with a finite margin) that can show it.
MEMORISED_FIT_SHARE = 0.99
MIN_EXAMPLES = 100


@dataclasses.dataclass(frozen=True)
class Evidence:
  """How many training labels the last selected checkpoint fits.

  Attributes:
    examples: the examples with a finite margin at the last checkpoint.
    fitted: of them, those whose label it predicts (margin_last > 0).
    non_finite: the examples left out because their margin is not finite (NaN, infinite).
  """
  examples: int
  fitted: int
  non_finite: int = 0

  def __post_init__(self):
    for name in ('examples', 'fitted', 'non_finite'):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f'{name} must be a whole number >= 0; got {value!r}')
    if self.fitted > self.examples:
      raise ValueError(f'fitted ({self.fitted}) cannot exceed examples ({self.examples})')

  @property
  def fitted_share(self) -> Optional[float]:
    """fitted / examples; None without an example."""
    return self.fitted / self.examples if self.examples else None

  @property
  def enough(self) -> bool:
    """Whether there are at least MIN_EXAMPLES examples to tell from."""
    return self.examples >= MIN_EXAMPLES

  @property
  def memorised(self) -> bool:
    """Enough examples, and the last checkpoint fits at least MEMORISED_FIT_SHARE of them."""
    return self.enough and self.fitted / self.examples >= MEMORISED_FIT_SHARE

  def as_dict(self) -> Dict[str, Any]:
    """JSON-ready: the counts, the share, and whether it reads as memorised."""
    share = self.fitted_share
    return {'examples': int(self.examples), 'fitted': int(self.fitted),
            'non_finite': int(self.non_finite),
            'fitted_share': None if share is None else round(float(share), 6),
            'memorised': self.memorised}


def memorisation_evidence(margin_last: np.ndarray) -> Evidence:
  """The Evidence from the margin at the last selected checkpoint of training examples.

  Args:
    margin_last: audit_margin_last of the train split or a sample of it, one value per
      example (the label's logit minus the largest other logit; > 0 where it is predicted).
      Values that are not finite are counted apart and left out.

  Raises:
    ValueError: not 1-D, or not real numbers.
  """
  margin_last = np.asarray(margin_last)
  if margin_last.ndim != 1:
    raise ValueError(f'margin_last must hold one value per example; got shape '
                     f'{margin_last.shape}')
  if margin_last.size and (not np.issubdtype(margin_last.dtype, np.number)
                           or np.iscomplexobj(margin_last)):
    raise ValueError(f'margin_last must hold real numbers; got dtype {margin_last.dtype}')
  margin_last = margin_last.astype(np.float64)
  finite = np.isfinite(margin_last)
  return Evidence(examples=int(finite.sum()), fitted=int((margin_last[finite] > 0).sum()),
                  non_finite=int((~finite).sum()))


def evidence_from_logits(logits: np.ndarray, target: np.ndarray) -> Evidence:
  """The Evidence from the selected checkpoints' logits [K, N, C] (earliest first) and the
  labels [N] of training examples; checks them as signals.compute_signals does (finite
  logits, classes in range)."""
  return memorisation_evidence(signals.dynamics(logits, target).margin[-1])


def choose(evidence: Optional[Evidence]) -> Tuple[str, Dict[str, Any]]:
  """The signal `rank_by='auto'` ranks by with labels, and why.

  Args:
    evidence: from memorisation_evidence or evidence_from_logits; None when none was
      gathered (then DEFAULT_SIGNAL).

  Returns:
    (signal short name, reason): the reason is JSON-ready and holds `signal`, `rule` (one
    sentence), `memorised`, the threshold and the fewest examples, and the evidence's counts
    (`evidence`: Evidence.as_dict(), or None).
  """
  if evidence is not None and not isinstance(evidence, Evidence):
    raise ValueError(f'evidence must be an Evidence or None; got {type(evidence).__name__}')
  memorised = evidence is not None and evidence.memorised
  if evidence is None:
    rule = 'no evidence of memorisation was gathered'
  elif not evidence.enough:
    rule = (f'{evidence.examples} training example(s) with a finite margin, fewer than '
            f'the {MIN_EXAMPLES} needed to tell memorisation')
  else:
    share = evidence.fitted_share
    if memorised:
      rule = (f'the last checkpoint fits {share:.3f} of {evidence.examples} training labels '
              f'(>= {MEMORISED_FIT_SHARE}): the model memorised them, so the early fit '
              f'({MEMORISED_SIGNAL}) ranks')
    else:
      rule = (f'the last checkpoint fits {share:.3f} of {evidence.examples} training labels '
              f'(< {MEMORISED_FIT_SHARE}): not memorised')
  signal = MEMORISED_SIGNAL if memorised else DEFAULT_SIGNAL
  return signal, {'signal': signal, 'rule': rule, 'memorised': memorised,
                  'memorised_fit_share': MEMORISED_FIT_SHARE, 'min_examples': MIN_EXAMPLES,
                  'evidence': None if evidence is None else evidence.as_dict()}
