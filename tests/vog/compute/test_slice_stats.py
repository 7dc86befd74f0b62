"""The slice statistics' math against hand computation: p-values, the correction, lift,
minimum support, ranking, numeric ranges and the heavy-hitters sketch's bounds."""

from math import comb
import pickle

import numpy as np
import pytest

from components.vog.compute import slice_stats as ss


def _tail(k, population, successes, draws):
  """P(X >= k) of a hypergeometric variable, summed from binomial coefficients."""
  return sum(comb(successes, x) * comb(population - successes, draws - x)
             for x in range(k, min(successes, draws) + 1)) / comb(population, draws)


@pytest.mark.parametrize('k, population, successes, draws', [
    (3, 50, 10, 12), (7, 200, 30, 20), (1, 10, 3, 4), (12, 1000, 100, 50), (0, 5, 2, 2),
    (5, 1348, 5, 142), (20, 400, 40, 60), (4, 4, 4, 4), (3, 10, 2, 5)])
def test_hypergeometric_tail_is_the_sum_of_its_terms(k, population, successes, draws):
  assert ss.hypergeometric_sf(k, population, successes, draws) == pytest.approx(
      _tail(k, population, successes, draws), rel=1e-9, abs=1e-300)


def test_hypergeometric_tail_refuses_impossible_counts():
  with pytest.raises(ValueError, match='successes=11 and draws=3 must be at most '
                                       'population=10'):
    ss.hypergeometric_sf(1, 10, 11, 3)
  with pytest.raises(ValueError, match='k=-1 is negative'):
    ss.hypergeometric_sf(-1, 10, 1, 3)


def test_benjamini_hochberg_by_hand():
  # Sorted 0.01, 0.03, 0.04, 0.5 of m=4: 0.04, 0.06, 0.0533, 0.5 -> step-up minimum.
  np.testing.assert_allclose(ss.benjamini_hochberg([0.01, 0.04, 0.03, 0.5]),
                             [0.04, 0.16 / 3, 0.16 / 3, 0.5])
  # Untested hypotheses count: m = 10 for the same four.
  np.testing.assert_allclose(ss.benjamini_hochberg([0.01, 0.04, 0.03, 0.5], 10),
                             [0.1, 0.4 / 3, 0.4 / 3, 1.0])
  assert len(ss.benjamini_hochberg([])) == 0
  with pytest.raises(ValueError, match='num_tests=1 is below the 2 p-values'):
    ss.benjamini_hochberg([0.1, 0.2], 1)
  with pytest.raises(ValueError, match=r'p-values must be in \[0, 1\]'):
    ss.benjamini_hochberg([1.5])


def _counts(value, count, flagged, hard, kind=ss.CATEGORICAL):
  return ss.SliceCounts('color', kind, value, count, flagged, hard)


def test_rows_have_the_lift_shares_and_adjusted_p_values_by_hand():
  sizes = ss.GroupSizes(examples=200, flagged=20, hard=40)
  candidates = [_counts('red', 20, 10, 5), _counts('blue', 100, 10, 20),
                _counts('green', 10, 4, 9)]
  rows, tests = ss.slice_rows(candidates, sizes)
  assert tests == 6  # three values, two groups each, tested or not
  by_value = {r['value']: r for r in rows}
  # red: 10 of 20 flagged (50%) against 20 of 200 (10%): lift 5.
  red = by_value['red']
  assert red['group'] == 'flagged' and red['lift'] == pytest.approx(5.0)
  assert red['share_flagged'] == 0.5 and red['share_in_split'] == 0.1
  assert red['share_hard'] == 5 / 40
  p_red = _tail(10, 200, 20, 20)
  assert red['p_value'] == pytest.approx(p_red, rel=1e-9)
  # green has 4 flagged (below the support of 5) but 9 hard of 40 against 10 of 200.
  green = by_value['green']
  assert green['group'] == 'hard' and green['lift'] == pytest.approx((9 / 40) / (10 / 200))
  p_green = _tail(9, 200, 10, 40)
  # Tested: red/flagged, red/hard? (5/40 = 12.5% > 10%: yes), green/hard; blue not above.
  p_red_hard = _tail(5, 200, 20, 40)
  adjusted = ss.benjamini_hochberg([p_red, p_red_hard, p_green], 6)
  assert red['p_adjusted'] == pytest.approx(adjusted[0])
  assert green['p_adjusted'] == pytest.approx(adjusted[2])
  assert 'blue' not in by_value  # 10% of flagged, 50% of the split: under-indexes
  assert [r['rank'] for r in rows] == list(range(1, len(rows) + 1))
  assert [r['value'] for r in rows] == sorted(by_value, key=lambda v: by_value[v]['p_value'])


def test_minimum_support_and_alpha_decide_what_is_reported():
  sizes = ss.GroupSizes(1000, 10, 100)
  # 4 flagged of a 4-example value: as surprising as can be, but under the support.
  rows, _ = ss.slice_rows([_counts('rare', 4, 4, 0)], sizes)
  assert rows == []
  rows, _ = ss.slice_rows([_counts('rare', 4, 4, 0)], sizes, min_support=4)
  assert [r['value'] for r in rows] == ['rare']
  # A slight over-index is not significant at 0.05 but is at alpha 1.
  weak = [_counts('weak', 100, 2, 12)]
  assert ss.slice_rows(weak, sizes, min_support=2)[0] == []
  assert len(ss.slice_rows(weak, sizes, min_support=2, alpha=1.0)[0]) == 1


def test_many_values_tried_raise_the_adjusted_p_value():
  sizes = ss.GroupSizes(1000, 50, 100)
  value = _counts('v', 50, 8, 5)
  alone, _ = ss.slice_rows([value], sizes)
  crowd, tests = ss.slice_rows([value] + [_counts(f'n{i}', 50, 2, 5) for i in range(200)],
                               sizes)
  assert tests == 402
  assert alone[0]['p_adjusted'] == pytest.approx(alone[0]['p_value'] * 2)
  assert crowd == [] or crowd[0]['p_adjusted'] > alone[0]['p_adjusted']


def test_at_most_max_rows_best_first():
  sizes = ss.GroupSizes(1000, 100, 100)
  candidates = [_counts(f'v{i}', 20, 10 + i, 0) for i in range(10)]
  rows, _ = ss.slice_rows(candidates, sizes, max_rows=3)
  assert [r['value'] for r in rows] == ['v9', 'v8', 'v7']


@pytest.mark.parametrize('kwargs, message', [
    ({'min_support': 0}, 'min_support=0; give a whole number of at least 1'),
    ({'alpha': 0.0}, r'alpha=0.0 must be in \(0, 1\]'),
    ({'max_rows': 0}, 'max_rows=0; give a whole number of at least 1'),
])
def test_bad_settings_are_refused_by_name(kwargs, message):
  with pytest.raises(ValueError, match=message):
    ss.slice_rows([], ss.GroupSizes(1, 1, 1), **kwargs)


def test_unknown_kind_is_refused():
  with pytest.raises(ValueError, match="slice of 'color' has kind 'colour'"):
    ss.slice_rows([_counts('x', 1, 1, 1, kind='colour')], ss.GroupSizes(1, 1, 1))


def test_sketch_is_exact_while_the_values_fit():
  sketch = ss.HeavyHitters(10)
  sketch.add({'a': 3, 'b': 1}).add({'a': 2, 'c': 4})
  assert sketch.counts == {'a': 5, 'b': 1, 'c': 4} and sketch.error_bound() == 0
  assert sketch.upper('zzz') == 0


def test_sketch_prunes_by_hand():
  sketch = ss.HeavyHitters(3).add({'a': 5, 'b': 3, 'c': 1, 'd': 1, 'e': 2})
  # The 4th largest count (1) is subtracted from all: a 4, b 2, e 1; c and d dropped.
  assert sketch.counts == {'a': 4, 'b': 2, 'e': 1}
  assert sketch.total == 12 and sketch.error_bound() == 2  # ceil((12 - 7) / 4)


def test_sketch_bounds_hold_and_its_size_stays_under_capacity():
  rng = np.random.default_rng(0)
  truth = {}
  merged = ss.HeavyHitters(50)
  for part in range(20):
    sketch = ss.HeavyHitters(50)
    for _ in range(10):
      # Many rare keys and a few heavy ones.
      counts = {f'rare-{part}-{i}': 1 for i in rng.integers(0, 10_000, 300)}
      counts.update({f'heavy-{j}': int(rng.integers(5, 15)) for j in range(5)})
      for key, c in counts.items():
        truth[key] = truth.get(key, 0) + c
      sketch.add(counts)
      assert len(sketch) <= 50
    merged.merge(pickle.loads(pickle.dumps(sketch)))
    assert len(merged) <= 50
  bound = merged.error_bound()
  assert merged.total == sum(truth.values())
  assert bound <= merged.total / 51 + 1
  for key, count in truth.items():
    assert merged.estimate(key) <= count <= merged.upper(key), key
  for j in range(5):  # every heavy key is held
    assert f'heavy-{j}' in merged.counts


def test_sketch_refuses_a_bad_capacity_and_mismatched_merges():
  with pytest.raises(ValueError, match='sketch capacity=0'):
    ss.HeavyHitters(0)
  with pytest.raises(ValueError, match='capacity 3 and 4 cannot be merged'):
    ss.HeavyHitters(3).merge(ss.HeavyHitters(4))
  with pytest.raises(ValueError, match="count -1 of 'a' is negative"):
    ss.HeavyHitters(3).add({'a': -1})


def test_sketch_candidates_take_bounds_that_only_weaken_a_slice():
  split, flagged, hard = ss.HeavyHitters(2), ss.HeavyHitters(2), ss.HeavyHitters(2)
  split.add({'a': 10, 'b': 6, 'c': 1})  # c pruned: split's counts now approximate
  flagged.add({'a': 3, 'c': 1})
  hard.add({'b': 2})
  rows = {c.value: c for c in ss.sketch_candidates('f', ss.TOKEN, split, flagged, hard)}
  bound = split.error_bound()
  assert bound == 1
  assert rows['a'].count == split.estimate('a') + bound >= 10
  assert rows['c'].count == bound and rows['c'].flagged == 1
  assert all(r.approximate for r in rows.values())


def test_numeric_ranges_and_counts_from_a_quantile_histogram():
  # 100 values 0..99 in 10 buckets of 10.
  histogram = [(10.0 * i, 10.0 * i + 9, 10.0) for i in range(10)]
  ranges = ss.numeric_ranges(histogram, num_ranges=5)
  assert ranges == [(None, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 80.0), (80.0, None)]
  assert ss.count_in_range(histogram, None, 20.0) == pytest.approx(20.0)
  assert ss.count_in_range(histogram, 45.0, None) == pytest.approx(10 * 4 / 9 + 50)
  # Repeated values: 90 zeros and 10 ones cut into < 1 and >= 1.
  flags = [(0.0, 0.0, 9.0)] * 10 + [(1.0, 1.0, 1.0)] * 10
  ranges = ss.numeric_ranges(flags)
  assert ranges == [(None, 1.0), (1.0, None)]
  assert ss.count_in_range(flags, 1.0, None) == pytest.approx(10.0)
  assert ss.count_in_range(flags, None, 1.0) == pytest.approx(90.0)
  assert ss.numeric_ranges([]) == []
  assert [ss.range_text(*r) for r in ((None, 1.0), (1.0, 2.5), (2.5, None))] == [
      '< 1', '[1, 2.5)', '>= 2.5']
