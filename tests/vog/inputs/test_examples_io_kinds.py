"""Parsing integer and text model inputs: the one-call path and record by record agree,
and values of the wrong kind are quarantined with their reason."""

import numpy as np
import pytest
import tensorflow as tf

from components.vog.inputs import examples_io

NUM_CLASSES = 3
SPECS = [examples_io.InputSpec('ids', (4,), 'int32'),
         examples_io.InputSpec('text', (), 'string'),
         examples_io.InputSpec('vec', (2,), 'float32')]


def _record(index, ids=(3, 1, 0, 0), text=b'a cat', vec=(0.5, -1.0), label=1,
            drop=()):
  example = tf.train.Example()
  feature = example.features.feature
  values = {'ids': ids, 'text': text, 'vec': vec}
  for name, value in values.items():
    if name in drop:
      continue
    items = value if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, bytes) for v in items):
      feature[name].bytes_list.value.extend(items)
    elif all(isinstance(v, int) for v in items):
      feature[name].int64_list.value.extend(items)
    else:
      feature[name].float_list.value.extend(items)
  feature['label'].int64_list.value.append(label)
  feature['example_id'].bytes_list.value.append(f'ex-{index}'.encode())
  return examples_io.InputRecord('train', 0, index, example.SerializeToString())


def _parser(specs=SPECS, inputs_fn=None):
  return examples_io.ExampleParser(specs, 'label', True, NUM_CLASSES, 'example_id',
                                   inputs_fn)


def _one_by_one(parser, records):
  """Every record's verdict from `parse`: its inputs, or (kind, detail)."""
  out = []
  for record in records:
    result = parser.parse(record.split, record.serialized)
    if isinstance(result, examples_io.Quarantined):
      out.append((result.example_id, result.kind, result.detail))
    else:
      out.append((result.example_id, result.inputs, result.label))
  return out


def _assert_same_inputs(got, want):
  assert sorted(got) == sorted(want)
  for name in want:
    assert got[name].dtype == want[name].dtype, name
    assert got[name].shape == want[name].shape, name
    np.testing.assert_array_equal(got[name], want[name])


def test_input_specs_name_integer_and_text_dtypes():
  ids = tf.keras.Input((4,), dtype='int32', name='ids')
  cat = tf.keras.Input((1,), dtype='int64', name='cat')
  text = tf.keras.Input((), dtype=tf.string, name='text')
  vec = tf.keras.Input((2,), name='vec')
  joined = tf.keras.layers.Concatenate()([
      tf.keras.layers.Flatten()(tf.keras.layers.Embedding(5, 2)(ids)),
      tf.keras.layers.Flatten()(tf.keras.layers.Embedding(5, 2)(cat)),
      tf.keras.layers.Flatten()(tf.keras.layers.Embedding(5, 2)(
          tf.keras.layers.StringLookup(vocabulary=['a', 'b'])(text))),
      vec])
  model = tf.keras.Model([ids, cat, text, vec], tf.keras.layers.Dense(3)(joined))
  specs = examples_io.input_specs_of(model)
  assert specs == [examples_io.InputSpec('ids', (4,), 'int32'),
                   examples_io.InputSpec('cat', (1,), 'int64'),
                   examples_io.InputSpec('text', (), 'string'),
                   examples_io.InputSpec('vec', (2,), 'float32')]
  assert [s.kind for s in specs] == ['int', 'int', 'string', 'float']


def test_one_call_and_record_by_record_agree():
  parser = _parser()
  records = [_record(0), _record(1, ids=(7, 7, 7, 2), text=b'', label=2),
             _record(2, ids=(-5, 0, 1, 2), text='ünï'.encode(), vec=(1e-3, 2.0))]
  together = parser._parse_together(records)
  assert together is not None
  batch, bad = together
  assert not bad
  one_by_one = _one_by_one(parser, records)
  want = {s.name: np.stack([inputs[s.name] for _, inputs, _ in one_by_one])
          for s in SPECS}
  _assert_same_inputs(batch.inputs, want)
  assert batch.inputs['ids'].dtype == np.int32
  assert batch.inputs['text'].dtype == object
  assert batch.inputs['text'].tolist() == [b'a cat', b'', 'ünï'.encode()]
  assert batch.labels == [label for _, _, label in one_by_one] == [1, 2, 1]
  assert batch.example_ids == ['ex-0', 'ex-1', 'ex-2']
  # A bad record sends the batch record by record, with the same results for the rest.
  fallback, quarantined = parser.parse_batch(records + [_record(3, drop=('text',))])
  _assert_same_inputs(fallback.inputs, batch.inputs)
  assert fallback.example_ids == batch.example_ids
  assert [(q.example_id, q.kind) for q in quarantined] == [('ex-3', 'missing feature')]


def test_integers_outside_the_input_dtype_get_one_verdict_on_both_paths():
  parser = _parser()
  records = [_record(0), _record(1, ids=(1, 2**40, 0, 0))]
  batch, bad = parser._parse_together(records)
  assert batch.example_ids == ['ex-0']
  assert [(q.example_id, q.kind, q.detail) for q in bad] == [(
      'ex-1', 'integer out of range',
      "feature 'ids' holds 1099511627776, outside the int32 range of model input 'ids'")]
  assert _one_by_one(parser, records[1:]) == [(q.example_id, q.kind, q.detail)
                                              for q in bad]


@pytest.mark.parametrize('changes, kind, detail', [
    (dict(ids=(1, 2.5, 0, 0)), 'not an integer',
     "feature 'ids' holds 2.5; model input 'ids' takes int32 ids (an int64_list)"),
    (dict(ids=(b'a', b'b', b'c', b'd')), 'not an integer',
     "feature 'ids' holds no numbers; model input 'ids' takes int32 ids"),
    (dict(ids=(1, 2, 3)), 'wrong shape',
     "feature 'ids' has 3 values; model input 'ids' takes 4 (shape (4,))"),
    (dict(text=7), 'not text',
     "feature 'text' holds 7; model input 'text' takes text (a bytes_list)"),
    (dict(text=(b'a', b'b')), 'wrong shape',
     "feature 'text' has 2 values; model input 'text' takes 1 (shape ())"),
    (dict(vec=(1.0, float('nan'))), 'non-finite value', "feature 'vec'"),
])
def test_values_of_the_wrong_kind_are_quarantined(changes, kind, detail):
  parser = _parser()
  records = [_record(0), _record(1, **changes)]
  batch, bad = parser.parse_batch(records)
  assert batch.example_ids == ['ex-0']
  assert [(q.example_id, q.kind) for q in bad] == [('ex-1', kind)]
  assert bad[0].detail.startswith(detail)
  assert (bad[0].file_index, bad[0].record_index) == (0, 1)
  assert _one_by_one(parser, records[1:]) == [('ex-1', bad[0].kind, bad[0].detail)]


def test_whole_number_floats_are_integer_ids():
  parser = _parser()
  (result,) = _one_by_one(parser, [_record(0, ids=(1.0, 2.0, 0.0, 0.0))])
  np.testing.assert_array_equal(result[1]['ids'], np.array([1, 2, 0, 0], np.int32))
  assert result[1]['ids'].dtype == np.int32


def test_inputs_fn_may_give_str_and_int_lists():
  def inputs_fn(features):
    return {'ids': [int(v) for v in features['ids']],
            'text': features['text'][0].decode().upper(),
            'vec': features['vec']}

  batch, bad = _parser(inputs_fn=inputs_fn).parse_batch([_record(0), _record(1)])
  assert not bad
  assert batch.inputs['text'].tolist() == [b'A CAT', b'A CAT']
  assert batch.inputs['ids'].dtype == np.int32 and batch.inputs['ids'].shape == (2, 4)


def test_a_batch_with_nothing_scorable_keeps_the_input_dtypes():
  batch, bad = _parser().parse_batch([_record(0, text=7)])
  assert len(bad) == 1
  assert batch.inputs['text'].shape == (0,) and batch.inputs['text'].dtype == object
  assert batch.inputs['ids'].shape == (0, 4) and batch.inputs['ids'].dtype == np.int32


def test_an_input_dtype_no_feature_holds_is_refused():
  with pytest.raises(ValueError, match=r"'flag' \(bool_\) have a dtype VoG cannot read"):
    _parser([examples_io.InputSpec('flag', (1,), 'bool_')])
