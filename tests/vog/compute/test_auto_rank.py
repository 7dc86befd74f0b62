"""What rank_by='auto' ranks by: the memorisation evidence, its threshold, and the choice."""

import json

import numpy as np
import pytest

from components.vog.compute import auto_rank
from components.vog.compute import signals


def _margins(fitted, unfitted):
  return np.array([2.0] * fitted + [-1.0] * unfitted)


def test_evidence_counts_fitted_labels():
  e = auto_rank.memorisation_evidence(_margins(97, 3))
  assert (e.examples, e.fitted, e.non_finite) == (100, 97, 0)
  assert e.fitted_share == pytest.approx(0.97)
  assert e.enough and not e.memorised


def test_a_tie_is_not_a_fit_and_non_finite_is_left_out():
  e = auto_rank.memorisation_evidence(np.array([0.0, 1.0, -0.5, np.nan, np.inf, -np.inf]))
  assert (e.examples, e.fitted, e.non_finite) == (3, 1, 3)


def test_threshold_is_inclusive():
  at = auto_rank.memorisation_evidence(_margins(99, 1))
  below = auto_rank.memorisation_evidence(_margins(98, 2))
  assert at.fitted_share == auto_rank.MEMORISED_FIT_SHARE == 0.99
  assert at.memorised and not below.memorised
  assert auto_rank.choose(at)[0] == auto_rank.MEMORISED_SIGNAL == 'el2n'
  assert auto_rank.choose(below)[0] == auto_rank.DEFAULT_SIGNAL == 'confidence'


def test_too_few_examples_keep_the_default():
  few = auto_rank.memorisation_evidence(_margins(auto_rank.MIN_EXAMPLES - 1, 0))
  assert few.fitted_share == 1.0 and not few.enough and not few.memorised
  signal, reason = auto_rank.choose(few)
  assert signal == 'confidence' and 'fewer than' in reason['rule']
  enough = auto_rank.memorisation_evidence(_margins(auto_rank.MIN_EXAMPLES, 0))
  assert auto_rank.choose(enough)[0] == 'el2n'
  # Non-finite margins do not count towards the examples.
  padded = np.concatenate([_margins(auto_rank.MIN_EXAMPLES - 1, 0), [np.nan] * 10])
  assert not auto_rank.memorisation_evidence(padded).enough


def test_no_evidence_and_empty_sample():
  signal, reason = auto_rank.choose(None)
  assert signal == 'confidence' and reason['evidence'] is None
  assert reason['memorised'] is False
  empty = auto_rank.memorisation_evidence(np.array([]))
  assert empty.fitted_share is None and not empty.memorised
  assert auto_rank.choose(empty)[0] == 'confidence'
  assert empty.as_dict()['fitted_share'] is None


def test_reason_is_json_ready_and_says_why():
  signal, reason = auto_rank.choose(auto_rank.memorisation_evidence(_margins(300, 0)))
  assert signal == reason['signal'] == 'el2n'
  assert json.loads(json.dumps(reason)) == reason
  assert reason['memorised'] is True
  assert reason['evidence'] == {'examples': 300, 'fitted': 300, 'non_finite': 0,
                                'fitted_share': 1.0, 'memorised': True}
  assert reason['memorised_fit_share'] == 0.99 and reason['min_examples'] == 100
  assert 'memorised' in reason['rule'] and '1.000' in reason['rule']
  _, reason = auto_rank.choose(auto_rank.memorisation_evidence(_margins(900, 100)))
  assert 'not memorised' in reason['rule'] and '0.900' in reason['rule']


def test_chosen_signals_are_registered():
  names = signals.names()
  assert auto_rank.DEFAULT_SIGNAL in names and auto_rank.MEMORISED_SIGNAL in names


def test_evidence_from_logits_matches_margin_last():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 200, 4))
  target = rng.integers(0, 4, 200)
  e = auto_rank.evidence_from_logits(logits, target)
  margin_last = signals.compute_signals(logits, target)[signals.MARGIN_LAST]
  assert e == auto_rank.memorisation_evidence(margin_last)
  # Every label fitted at the last checkpoint: memorised.
  logits[-1, np.arange(200), target] += 100.0
  assert auto_rank.evidence_from_logits(logits, target).memorised
  with pytest.raises(ValueError, match='non-finite'):
    logits[0, 0, 0] = np.nan
    auto_rank.evidence_from_logits(logits, target)


def test_bad_input_is_refused():
  with pytest.raises(ValueError, match='one value per example'):
    auto_rank.memorisation_evidence(np.zeros((2, 2)))
  with pytest.raises(ValueError, match='real numbers'):
    auto_rank.memorisation_evidence(np.array(['1.0']))
  with pytest.raises(ValueError, match='cannot exceed'):
    auto_rank.Evidence(examples=2, fitted=3)
  with pytest.raises(ValueError, match='whole number'):
    auto_rank.Evidence(examples=-1, fitted=0)
  with pytest.raises(ValueError, match='Evidence or None'):
    auto_rank.choose({'examples': 100, 'fitted': 100})
