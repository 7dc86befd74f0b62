"""VoG for integer, text and tabular inputs against a float64 NumPy oracle.

Integer and text inputs are scored through the Embedding layers they feed: the oracle
runs each model's forward pass and its gradient by hand, per checkpoint, and takes
the population std over checkpoints and the mean over the positions that are no
padding.
"""

import re

import numpy as np
import pytest
import tensorflow as tf

from components.vog.inputs import examples_io
from components.vog.compute import scoring

NUM_CLASSES = 3
VOCAB = ['the', 'cat', 'sat', 'on', 'mat', 'dog']
T = 6  # Positions per sequence.
EMBED = 4
HIDDEN = 5


def _randomize(model, seed):
  """Sets every weight from `seed`: one checkpoint of the architecture."""
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.7, w.shape) for w in model.get_weights()])
  return model


def _weights(model, *names):
  return [w.astype(np.float64) for n in names for w in model.get_layer(n).get_weights()]


def _df_dlogits(logits, target_class, target):
  """d f / d logits per example, float64."""
  p = np.exp(logits - logits.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  onehot = np.eye(logits.shape[1])[target_class]
  rows = np.arange(len(logits))
  return {'logit': onehot,
          'prob': p[rows, target_class][:, None] * (onehot - p),
          'loss': p - onehot}[target]


def _sequence_model(seed, mask_zero=True, text_shape=None, vocab_size=9):
  """ids [T] (or text) -> Embedding 'emb' -> Dense tanh 'proj' -> average -> 'head'."""
  if text_shape is None:
    inp = tf.keras.Input((T,), dtype='int32', name='ids')
    ids = inp
  else:
    inp = tf.keras.Input(text_shape, dtype=tf.string, name='text')
    ids = tf.keras.layers.TextVectorization(vocabulary=VOCAB, output_sequence_length=T,
                                            name='tokens')(inp)
    vocab_size = len(VOCAB) + 2
  emb = tf.keras.layers.Embedding(vocab_size, EMBED, mask_zero=mask_zero, name='emb')(ids)
  proj = tf.keras.layers.Dense(HIDDEN, activation='tanh', name='proj')(emb)
  pooled = tf.keras.layers.GlobalAveragePooling1D()(proj)
  head = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax', name='head')(pooled)
  return _randomize(tf.keras.Model(inp, head), seed)


def _sequence_oracle(model, ids, pooled_positions, target_class, target):
  """(d f / d emb averaged over the embedding, d f / d proj averaged over HIDDEN,
  logits) for `_sequence_model`; `pooled_positions` are those the pooling averages."""
  table, w1, b1, w2, b2 = _weights(model, 'emb', 'proj', 'head')
  hidden = np.tanh(table[ids] @ w1 + b1)  # [N, T, HIDDEN]
  share = pooled_positions / pooled_positions.sum(axis=1, keepdims=True)
  logits = (share[..., None] * hidden).sum(axis=1) @ w2 + b2
  d_pooled = _df_dlogits(logits, target_class, target) @ w2.T  # [N, HIDDEN]
  d_hidden = share[..., None] * d_pooled[:, None, :]
  d_emb = (d_hidden * (1 - hidden ** 2)) @ w1.T
  return d_emb.mean(axis=-1), d_hidden.mean(axis=-1), logits


def _sequence_vog(models, ids, pooled_positions, counted, labels, target='loss'):
  """(vog_raw, sigma of emb [N, T], sigma of proj [N, T]) by the oracle."""
  per_ckpt = [_sequence_oracle(m, ids, pooled_positions, labels, target) for m in models]
  sigma_emb = np.std(np.stack([g for g, _, _ in per_ckpt]), axis=0)
  sigma_proj = np.std(np.stack([g for _, g, _ in per_ckpt]), axis=0)
  with np.errstate(invalid='ignore'):
    vog = (sigma_emb * counted).sum(axis=1) / counted.sum(axis=1)
  return vog, sigma_emb, sigma_proj


def _padded_ids(rng, n, low=2, high=9, pad=0):
  """[n, T] ids with a random number (>= 1) of tokens, then `pad`."""
  ids = np.full((n, T), pad, dtype=np.int32)
  for i, length in enumerate(rng.integers(1, T + 1, size=n)):
    ids[i, :length] = rng.integers(low, high, size=length)
  return ids


@pytest.mark.parametrize('target', scoring.TARGETS)
def test_token_ids_with_a_masking_embedding_match_the_oracle(target):
  rng = np.random.default_rng(11)
  models = [_sequence_model(s) for s in (1, 2, 3)]
  ids = _padded_ids(rng, 7)
  labels = rng.integers(0, NUM_CLASSES, size=7)
  valid = ids != 0

  scorer = scoring.VogScorer(models, target=target)
  got = scorer.score({'ids': ids}, labels)

  want, _, _ = _sequence_vog(models, ids, valid, valid, labels, target)
  assert scorer.gradient_layers == ['emb'] and scorer.sources == ['emb']
  np.testing.assert_allclose(got.vog_raw, want, rtol=2e-4, atol=1e-9)
  np.testing.assert_allclose(got.input_sigma['emb'], want, rtol=2e-4, atol=1e-9)
  assert set(got.input_sigma) == {'emb'}
  assert got.vog_raw.dtype == np.float64 and np.all(got.vog_raw > 0)


def test_padding_told_by_pad_id_when_the_embedding_has_no_mask():
  rng = np.random.default_rng(12)
  pad = 1
  models = [_sequence_model(s, mask_zero=False) for s in (4, 5, 6)]
  ids = _padded_ids(rng, 6, low=0, high=9, pad=pad)
  ids[ids == pad] = 2  # Only padding carries the pad id ...
  ids[:, -1] = pad  # ... and every sequence has some.
  ids[5] = pad  # An example that is all padding.
  labels = rng.integers(0, NUM_CLASSES, size=6)
  valid = ids != pad

  got = scoring.VogScorer(models, pad_id=pad).score({'ids': ids}, labels)

  # No mask: the model averages over every position; VoG counts the real tokens only.
  want, sigma, _ = _sequence_vog(models, ids, np.ones_like(valid), valid, labels)
  np.testing.assert_allclose(got.vog_raw[:5], want[:5], rtol=2e-4, atol=1e-9)
  assert np.isnan(got.vog_raw[5]) and np.isnan(got.input_sigma['emb'][5])
  # Without pad_id every position counts.
  unmasked = scoring.VogScorer(models).score({'ids': ids}, labels)
  np.testing.assert_allclose(unmasked.vog_raw, sigma.mean(axis=1), rtol=2e-4, atol=1e-9)


def _mixed_model(seed):
  """A float vector 'vec' (3,) and a category id 'cat' (1,) into Embedding 'cat_emb'."""
  vec = tf.keras.Input((3,), name='vec')
  cat = tf.keras.Input((1,), dtype='int64', name='cat')
  emb = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(5, EMBED, name='cat_emb')(cat))
  joined = tf.keras.layers.Concatenate()([vec, emb])
  hidden = tf.keras.layers.Dense(HIDDEN, activation='tanh', name='hidden')(joined)
  return _randomize(tf.keras.Model([vec, cat],
                                   tf.keras.layers.Dense(NUM_CLASSES, name='head')(hidden)),
                    seed)


def _mlp_oracle(w1, b1, w2, b2, x, target_class, target='loss'):
  """d f / d x for x -> Dense tanh -> Dense, float64."""
  hidden = np.tanh(x @ w1 + b1)
  logits = hidden @ w2 + b2
  d_hidden = _df_dlogits(logits, target_class, target) @ w2.T
  return (d_hidden * (1 - hidden ** 2)) @ w1.T


def test_float_and_categorical_inputs_are_combined():
  rng = np.random.default_rng(13)
  models = [_mixed_model(s) for s in (7, 8, 9)]
  vec = rng.normal(size=(8, 3))
  cat = rng.integers(0, 5, size=(8, 1))
  labels = rng.integers(0, NUM_CLASSES, size=8)

  scorer = scoring.VogScorer(models)
  got = scorer.score({'vec': vec, 'cat': cat}, labels)

  grads = []
  for model in models:
    (table,) = _weights(model, 'cat_emb')
    x = np.concatenate([vec, table[cat[:, 0]]], axis=1)
    grad = _mlp_oracle(*_weights(model, 'hidden', 'head'), x, labels)
    # The embedding's gradient is averaged over its dimension before the std.
    grads.append(np.concatenate([grad[:, :3], grad[:, 3:].mean(axis=1, keepdims=True)],
                                axis=1))
  sigma = np.std(np.stack(grads), axis=0)
  sigma_vec, sigma_cat = sigma[:, :3], sigma[:, 3]
  assert scorer.sources == ['vec', 'cat_emb']
  np.testing.assert_allclose(got.vog_raw, (sigma_vec.sum(axis=1) + sigma_cat) / 4,
                             rtol=2e-4, atol=1e-9)
  np.testing.assert_allclose(got.input_sigma['vec'], sigma_vec.mean(axis=1), rtol=2e-4)
  np.testing.assert_allclose(got.input_sigma['cat_emb'], sigma_cat, rtol=2e-4)
  for j in range(3):
    np.testing.assert_allclose(got.input_sigma[f'vec[{j}]'], sigma_vec[:, j], rtol=2e-4)
  assert sorted(got.input_sigma) == ['cat_emb', 'vec', 'vec[0]', 'vec[1]', 'vec[2]']


def _tokenize(text):
  """TextVectorization's defaults by hand: lower case, no punctuation, split, pad."""
  index = {w: i + 2 for i, w in enumerate(VOCAB)}
  words = re.sub(r'[^\w\s]', '', text.lower()).split()[:T]
  return [index.get(w, 1) for w in words] + [0] * (T - len(words))


TEXTS = ['The cat sat on the mat.', 'A dog!', 'cat', 'the zebra sat, the dog sat on']


@pytest.mark.parametrize('text_shape', [(), (1,)])
def test_text_through_text_vectorization_matches_the_oracle(text_shape):
  models = [_sequence_model(s, text_shape=text_shape) for s in (10, 11)]
  texts = np.array([t.encode() for t in TEXTS], dtype=object).reshape(
      (len(TEXTS),) + text_shape)
  labels = np.array([0, 2, 1, 2])
  ids = np.array([_tokenize(t) for t in TEXTS])
  valid = ids != 0

  scorer = scoring.VogScorer(models)
  got = scorer.score({'text': texts}, labels)

  want, _, _ = _sequence_vog(models, ids, valid, valid, labels)
  assert scorer.gradient_layers == ['emb']
  np.testing.assert_allclose(got.vog_raw, want, rtol=2e-4, atol=1e-9)
  # str values and the parsed examples' object arrays of bytes score alike.
  as_str = scorer.score({'text': np.array(TEXTS).reshape(texts.shape)}, labels)
  np.testing.assert_array_equal(as_str.vog_raw, got.vog_raw)


def test_text_examples_parse_into_what_the_scorer_reads():
  models = [_sequence_model(s, text_shape=(1,)) for s in (12, 13)]
  records = []
  for i, text in enumerate(TEXTS):
    example = tf.train.Example()
    example.features.feature['text'].bytes_list.value.append(text.encode())
    example.features.feature['label'].int64_list.value.append(i % NUM_CLASSES)
    records.append(examples_io.InputRecord('train', 0, i, example.SerializeToString()))
  specs = examples_io.input_specs_of(models[-1])
  assert specs == [examples_io.InputSpec('text', (1,), 'string')]
  parser = examples_io.ExampleParser(specs, 'label', True, NUM_CLASSES, 'example_id')
  batch, bad = parser.parse_batch(records)
  assert not bad
  got = scoring.VogScorer(models).score(batch.inputs, batch.labels)
  ids = np.array([_tokenize(t) for t in TEXTS])
  want, _, _ = _sequence_vog(models, ids, ids != 0, ids != 0, np.arange(4) % NUM_CLASSES)
  np.testing.assert_allclose(got.vog_raw, want, rtol=2e-4, atol=1e-9)


def test_checkpoints_saved_and_loaded_score_alike(tmp_path):
  models = [_sequence_model(s, text_shape=(1,)) for s in (14, 15)]
  loaded = []
  for i, model in enumerate(models):
    model.save(str(tmp_path / f'epoch-{i}.keras'))
    loaded.append(tf.keras.models.load_model(str(tmp_path / f'epoch-{i}.keras')))
  texts = np.array([[t.encode()] for t in TEXTS], dtype=object)
  labels = np.array([2, 0, 1, 1])
  want = scoring.VogScorer(models).score({'text': texts}, labels)
  got = scoring.VogScorer(loaded).score({'text': texts}, labels)
  np.testing.assert_array_equal(got.vog_raw, want.vog_raw)


def test_named_gradient_layers():
  rng = np.random.default_rng(14)
  models = [_sequence_model(s) for s in (15, 16)]
  ids = _padded_ids(rng, 5)
  labels = rng.integers(0, NUM_CLASSES, size=5)
  valid = ids != 0
  want, _, sigma_proj = _sequence_vog(models, ids, valid, valid, labels)

  named = scoring.VogScorer(models, gradient_layers=['emb']).score({'ids': ids}, labels)
  np.testing.assert_allclose(named.vog_raw, want, rtol=2e-4, atol=1e-9)

  # A layer after the Embedding: its output averaged over its width, padding masked by
  # the mask Keras carries along.
  scorer = scoring.VogScorer(models, gradient_layers=['proj'])
  got = scorer.score({'ids': ids}, labels)
  assert scorer.gradient_layers == ['proj']
  np.testing.assert_allclose(got.input_sigma['proj'],
                             (sigma_proj * valid).sum(axis=1) / valid.sum(axis=1),
                             rtol=2e-4, atol=1e-9)


def test_unknown_gradient_layer_is_refused_naming_the_layers():
  models = [_sequence_model(s) for s in (1, 2)]
  with pytest.raises(ValueError, match=r"\['embedding'\] are not layers of model .*"
                     r'its layers are ids, emb, proj, '):
    scoring.VogScorer(models, gradient_layers=['embedding'])
  with pytest.raises(ValueError, match="gradient layer 'tokens' gives .* float tensor"):
    scoring.VogScorer([_sequence_model(s, text_shape=()) for s in (1, 2)],
                      gradient_layers=['tokens'])
  with pytest.raises(ValueError, match='list of layer names'):
    scoring.VogScorer(models, gradient_layers='emb')
  with pytest.raises(ValueError, match='pad_id=0.5 must be a whole number'):
    scoring.VogScorer(models, pad_id=0.5)


def _one_hot_model(with_float_input):
  """An int input 'cat' one-hot encoded (no Embedding), beside a float input 'vec'."""
  cat = tf.keras.Input((1,), dtype='int32', name='cat')
  parts = [tf.keras.layers.CategoryEncoding(5, output_mode='one_hot', name='onehot')(cat)]
  inputs = [cat]
  if with_float_input:
    vec = tf.keras.Input((3,), name='vec')
    parts.append(tf.keras.layers.Dense(4, name='vec_proj')(vec))
    inputs.append(vec)
  joined = tf.keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
  return _randomize(tf.keras.Model(inputs, tf.keras.layers.Dense(NUM_CLASSES)(joined)), 1)


def test_integer_input_without_gradient_layer_is_refused():
  with pytest.raises(ValueError, match="no float input and no Embedding layer.*"
                     'gradient_layers'):
    scoring.VogScorer([_one_hot_model(False)] * 2)
  mixed = _one_hot_model(True)
  with pytest.raises(ValueError, match=r"input\(s\) 'cat' \(int32\) reach no gradient "
                     'layer.*name the layer .* with gradient_layers'):
    scoring.VogScorer([mixed] * 2)
  with pytest.raises(ValueError, match=r"'cat' \(int32\) reach no gradient layer"):
    scoring.VogScorer([mixed] * 2, gradient_layers=['vec_proj'])
  # Named, the one-hot output stands in for the ids.
  scorer = scoring.VogScorer([mixed, _randomize(_one_hot_model(True), 2)],
                             gradient_layers=['onehot'])
  got = scorer.score({'cat': np.array([[0], [4]]), 'vec': np.ones((2, 3))},
                     np.array([0, 1]))
  assert scorer.sources == ['vec', 'onehot'] and np.all(np.isfinite(got.vog_raw))
  with pytest.raises(ValueError, match="model input 'cat' takes integers"):
    scorer.score({'cat': np.array([[0.5], [4]]), 'vec': np.ones((2, 3))}, np.array([0, 1]))


def _tabular_model(seed, scalar_shapes):
  """One float input per column, shape (1,) or (), concatenated, Dense tanh, Dense."""
  inputs = [tf.keras.Input(shape, name=f'col{i}') for i, shape in enumerate(scalar_shapes)]
  columns = [tf.keras.layers.Reshape((1,))(x) if not shape else x
             for x, shape in zip(inputs, scalar_shapes)]
  joined = tf.keras.layers.Concatenate()(columns) if len(columns) > 1 else columns[0]
  hidden = tf.keras.layers.Dense(HIDDEN, activation='tanh', name='hidden')(joined)
  return _randomize(tf.keras.Model(inputs, tf.keras.layers.Dense(NUM_CLASSES,
                                                                 name='head')(hidden)),
                    seed)


def test_input_sigma_of_scalar_float_columns():
  rng = np.random.default_rng(15)
  shapes = [(1,), (1,), ()]
  models = [_tabular_model(s, shapes) for s in (17, 18, 19)]
  x = rng.normal(size=(9, 3))
  labels = rng.integers(0, NUM_CLASSES, size=9)
  inputs = {'col0': x[:, :1], 'col1': x[:, 1:2], 'col2': x[:, 2]}

  got = scoring.VogScorer(models).score(inputs, labels)

  sigma = np.std(np.stack([_mlp_oracle(*_weights(m, 'hidden', 'head'), x, labels)
                           for m in models]), axis=0)
  assert sorted(got.input_sigma) == ['col0', 'col1', 'col2']
  for j in range(3):
    np.testing.assert_allclose(got.input_sigma[f'col{j}'], sigma[:, j], rtol=2e-4)
    assert got.input_sigma[f'col{j}'].shape == (9,)
  np.testing.assert_allclose(got.vog_raw, sigma.mean(axis=1), rtol=2e-4)


def test_input_sigma_of_one_vector_input_per_feature():
  rng = np.random.default_rng(16)
  models = []
  for seed in (20, 21):
    x = tf.keras.Input((5,), name='x')
    hidden = tf.keras.layers.Dense(HIDDEN, activation='tanh', name='hidden')(x)
    models.append(_randomize(tf.keras.Model(x, tf.keras.layers.Dense(NUM_CLASSES,
                                                                     name='head')(hidden)),
                             seed))
  x = rng.normal(size=(6, 5))
  labels = rng.integers(0, NUM_CLASSES, size=6)

  got = scoring.VogScorer(models).score({'x': x}, labels)

  sigma = np.std(np.stack([_mlp_oracle(*_weights(m, 'hidden', 'head'), x, labels)
                           for m in models]), axis=0)
  np.testing.assert_allclose(got.input_sigma['x'], sigma.mean(axis=1), rtol=2e-4)
  for j in range(5):
    np.testing.assert_allclose(got.input_sigma[f'x[{j}]'], sigma[:, j], rtol=2e-4)
    assert got.input_sigma[f'x[{j}]'].dtype == np.float64
  assert len(got.input_sigma) == 6


def test_batch_score_keeps_its_positional_form():
  score = scoring.BatchScore(np.zeros(2), np.zeros(2, int), np.zeros(2, int))
  assert score.logits is None and score.input_sigma == {}


def test_ids_outside_the_embedding_vocabulary_are_refused_before_the_model():
  # On a GPU an id outside the table gives zeros instead of an error; the scorer checks
  # the ids against the Embedding's vocabulary itself, so a batch with one is refused
  # with a reason on any device (the audit quarantines the record). Ids computed by
  # a layer (text through TextVectorization) are the layer's own business.
  models = [_sequence_model(s, vocab_size=9) for s in (1, 2)]
  scorer = scoring.VogScorer(models)
  assert scorer.checkpoints[-1].vocabularies == {'ids': (9, 'emb')}
  ids = _padded_ids(np.random.default_rng(3), 4)
  scorer.score({'ids': ids}, np.zeros(4, int))  # 0 to 8: in the table
  for bad in (9, -1):
    wrong = ids.copy()
    wrong[2, 0] = bad
    with pytest.raises(scoring.IdOutsideVocabulary, match=re.escape(
        f"model input 'ids' holds ids [{bad}] outside the vocabulary of Embedding layer "
        "'emb' (0 to 8)")):
      scorer.score({'ids': wrong}, np.zeros(4, int))
  text = scoring.VogScorer([_sequence_model(s, text_shape=(1,)) for s in (1, 2)])
  assert text.checkpoints[-1].vocabularies == {}
