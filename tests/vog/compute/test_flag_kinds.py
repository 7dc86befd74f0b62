"""The kind of a flag from its signals: clear cases, boundaries, non-finite values, no labels."""

import numpy as np
import pytest

from components.vog.compute import flag_kinds
from components.vog.compute import signals

WRONG = flag_kinds.WRONG_LABEL
ATYPICAL = flag_kinds.ATYPICAL
UNCLEAR = flag_kinds.UNCLEAR


def _margin(*values):
  return {signals.MARGIN_MEAN: np.array(values, np.float32)}


def test_clear_cases_each_way():
  got = flag_kinds.kinds(_margin(-4.0, -1.5, 2.5, 0.3, -0.5))
  assert got.tolist() == [WRONG, WRONG, ATYPICAL, ATYPICAL, UNCLEAR]
  assert got.dtype == object and all(isinstance(k, str) for k in got)


def test_thresholds_are_exclusive_and_boundaries_unclear():
  below, above = flag_kinds.WRONG_LABEL_BELOW, flag_kinds.ATYPICAL_ABOVE
  for dtype in (np.float64, np.float32):
    values = [np.nextafter(dtype(below), dtype(-np.inf)), below, above,
              np.nextafter(dtype(above), dtype(np.inf))]
    got = flag_kinds.kinds({signals.MARGIN_MEAN: np.array(values, dtype)})
    assert got.tolist() == [WRONG, UNCLEAR, UNCLEAR, ATYPICAL]
  assert (below, above) == (-1.0, 0.0)


def test_ties_between_examples_get_one_kind():
  got = flag_kinds.kinds(_margin(*([-2.0] * 3 + [0.5] * 3 + [-1.0] * 2)))
  assert got.tolist() == [WRONG] * 3 + [ATYPICAL] * 3 + [UNCLEAR] * 2


def test_non_finite_values_are_unclear():
  got = flag_kinds.kinds(_margin(np.nan, -np.inf, np.inf, -3.0))
  assert got.tolist() == [UNCLEAR, UNCLEAR, UNCLEAR, WRONG]
  assert flag_kinds.kinds({signals.EL2N: [np.nan, np.inf, 1.3]}, memorised=True).tolist() == [
      UNCLEAR, UNCLEAR, WRONG]


def test_only_the_rule_field_is_read():
  values = {signals.MARGIN_MEAN: [-3.0, 3.0], signals.VARIABILITY: [0.4, 0.0],
            signals.EL2N: [0.1, 1.4], signals.FORGETTING: np.array([5, 0])}
  assert flag_kinds.kinds(values).tolist() == [WRONG, ATYPICAL]
  assert flag_kinds.kinds(values, memorised=True).tolist() == [UNCLEAR, WRONG]


def test_memorised_rule_reads_el2n_and_never_says_atypical():
  above = flag_kinds.MEMORISED_WRONG_LABEL_ABOVE
  got = flag_kinds.kinds({signals.EL2N: [1.41, np.nextafter(above, np.inf), above, 0.2, 0.0]},
                         memorised=True)
  assert got.tolist() == [WRONG, WRONG, UNCLEAR, UNCLEAR, UNCLEAR]
  assert flag_kinds.required_field(True) == signals.EL2N
  assert flag_kinds.required_field(False) == signals.MARGIN_MEAN


def test_from_logits_a_flipped_label_and_an_atypical_example():
  # 4 checkpoints, 3 classes. Example 0: the model keeps predicting class 2 for label 0 (a
  # wrong label). Example 1: label 1, at first narrowly predicted as class 0, then learned
  # (atypical); once memorised its early fit is too uncertain to call.
  logits = np.array([
      [[0.0, 0.0, 3.0], [0.5, 0.3, 0.0]],
      [[0.0, 0.0, 3.5], [0.5, 1.0, 0.0]],
      [[0.5, 0.0, 4.0], [0.0, 3.0, 0.0]],
      [[0.5, 0.0, 4.0], [0.0, 5.0, 0.0]],
  ])
  values = signals.compute_signals(logits, np.array([0, 1]))
  assert flag_kinds.kinds(values).tolist() == [WRONG, ATYPICAL]
  assert flag_kinds.kinds(values, memorised=True).tolist() == [WRONG, UNCLEAR]


def test_one_example():
  assert flag_kinds.kind({signals.MARGIN_MEAN: -2.0}) == WRONG
  assert flag_kinds.kind({signals.MARGIN_MEAN: np.float32(1.0)}) == ATYPICAL
  assert flag_kinds.kind({signals.MARGIN_MEAN: float('nan')}) == UNCLEAR
  assert flag_kinds.kind({signals.EL2N: 1.2}, memorised=True) == WRONG
  with pytest.raises(ValueError, match='one value'):
    flag_kinds.kind({signals.MARGIN_MEAN: [1.0, 2.0]})


def test_empty():
  assert flag_kinds.kinds(_margin()).tolist() == []
  assert flag_kinds.counts(flag_kinds.kinds(_margin())) == {WRONG: 0, ATYPICAL: 0, UNCLEAR: 0}


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match='audit_margin_mean'):
    flag_kinds.kinds({signals.VARIABILITY: [0.1]})
  with pytest.raises(ValueError, match='audit_el2n.*memorised'):
    flag_kinds.kinds(_margin(1.0), memorised=True)
  with pytest.raises(ValueError, match='one value per example'):
    flag_kinds.kinds({signals.MARGIN_MEAN: np.zeros((2, 2))})
  with pytest.raises(ValueError, match='real numbers'):
    flag_kinds.kinds({signals.MARGIN_MEAN: np.array(['a'])})


def test_without_labels_every_flag_is_unclear():
  got = flag_kinds.kinds_without_labels(3)
  assert got.tolist() == [UNCLEAR] * 3
  assert flag_kinds.kinds_without_labels(0).tolist() == []
  assert 'predicted' in flag_kinds.WITHOUT_LABELS_REASON
  for bad in (-1, 1.5, True, '2'):
    with pytest.raises(ValueError, match='whole number'):
      flag_kinds.kinds_without_labels(bad)


def test_counts():
  got = flag_kinds.kinds(_margin(-3.0, -2.0, 0.5, -0.5))
  assert flag_kinds.counts(got) == {WRONG: 2, ATYPICAL: 1, UNCLEAR: 1}
  assert list(flag_kinds.counts(got)) == list(flag_kinds.KINDS)
  with pytest.raises(ValueError, match='not kinds'):
    flag_kinds.counts(np.array(['mislabelled'], dtype=object))
