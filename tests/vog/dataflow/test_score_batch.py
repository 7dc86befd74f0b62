"""ScoredBatch: what crosses the shuffle comes back equal, and its array helpers."""

import pickle

import apache_beam as beam
import numpy as np
import pytest

from components.vog import vocabulary as vocab
from components.vog.dataflow import score_batch
from components.vog.dataflow.score_batch import ScoredBatch


def _batch(n=64, contiguous=True, labelled=True, seed=0, top=False, base=1000):
  rng = np.random.default_rng(seed)
  index = (np.arange(base, base + n) if contiguous
           else np.sort(rng.choice(10 * n, n, replace=False)) + base)
  target = rng.integers(0, 10, n)
  names = ('a', 'b', 'c')
  top_sigma = (names, rng.integers(-1, 3, (n, 3)).astype(np.int8),
               rng.random((n, 3)).astype(np.float32)) if top else None
  return ScoredBatch(
      'train', 3, index, [f'img-{i}' if i % 7 else f'ünï-{i}' for i in range(n)],
      rng.integers(0, 2, n).astype(bool), target if labelled else np.full(n, -1), target,
      rng.integers(0, 10, n), rng.random(n).astype(np.float32),
      rng.random((n, len(vocab.SIGNAL_FIELDS))) if labelled else np.zeros((n, 0)), top_sigma)


@pytest.mark.parametrize('contiguous', [True, False])
@pytest.mark.parametrize('labelled', [True, False])
def test_a_batch_comes_back_from_the_shuffle_as_it_went(contiguous, labelled):
  batch = _batch(contiguous=contiguous, labelled=labelled, top=True, base=2 ** 40)
  coder = beam.coders.registry.get_coder(ScoredBatch)
  for back in (pickle.loads(pickle.dumps(batch)), coder.decode(coder.encode(batch))):
    assert back == batch
    assert back.example_id == batch.example_id  # unicode ids too
    assert back.label.tolist() == batch.label.tolist()
    assert back.record_index.tolist() == batch.record_index.tolist()
    assert back.top_sigma[0] == batch.top_sigma[0]
    np.testing.assert_array_equal(back.top_sigma[1], batch.top_sigma[1])


def test_a_labelled_batch_costs_under_fifty_bytes_an_example():
  # 7 float32 signals, vog_raw, two classes and a short id: about 45 bytes each.
  batch = _batch(n=256)
  assert len(pickle.dumps(batch)) / len(batch) < 50


def test_concat_puts_a_files_batches_in_record_order():
  first, second = _batch(n=8, base=8, seed=1), _batch(n=8, base=0, seed=2)
  joined = score_batch.concat([first, second])
  assert joined.record_index.tolist() == list(range(16))
  assert joined.example_id == second.example_id + first.example_id
  np.testing.assert_array_equal(joined.vog_raw[8:], first.vog_raw)
  with pytest.raises(ValueError, match='one input file'):
    score_batch.concat([first, ScoredBatch('eval', 3, [0], ['x'], [True], [1], [1], [1],
                                           [0.1], np.zeros((1, 7)))])


def test_top_sigma_names_the_largest_sources_first_and_skips_non_finite():
  sigma = {'b': np.array([0.3, np.nan]), 'a': np.array([0.3, 0.1]),
           'c': np.array([0.5, 0.2]), 'v': np.zeros(2), 'v[0]': np.array([0.9, 0.0])}
  top = score_batch.top_sigma(sigma, 2)
  rows = score_batch.top_sigma_rows(top, [0, 1])
  # Ties in name order; a vector input counts by its elements, not as a whole.
  assert [name for name, _ in rows[0]] == ['v[0]', 'c', 'a', 'b']
  assert [name for name, _ in rows[1]] == ['c', 'a', 'v[0]']
  assert rows[0][1][1] == pytest.approx(0.5)
  assert score_batch.top_sigma({'only': np.ones(2)}, 2) is None


def test_rank_values_and_suspicions_are_oriented_so_higher_is_more_suspect():
  batch = _batch(n=16)
  confidence = batch.signals[:, vocab.SIGNAL_FIELDS.index('audit_confidence')]
  np.testing.assert_array_equal(score_batch.rank_values(batch, 'confidence'), -confidence)
  np.testing.assert_array_equal(score_batch.rank_values(batch, 'vog'), batch.vog_raw)
  matrix = score_batch.suspicion_matrix(batch)
  assert matrix.shape == (16, len(vocab.AGREEMENT_NAMES))
  np.testing.assert_array_equal(matrix[:, vocab.AGREEMENT_NAMES.index('confidence')],
                                -confidence)
  with pytest.raises(ValueError, match="label_mode='predicted'"):
    score_batch.rank_values(_batch(labelled=False), 'confidence')
