"""Demo data: exact, seeded label flips recorded in `label_flipped`, two splits, unique ids."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets

from pipeline.reference import demo_data


def _read(path):
  rows = []
  for record in tf.data.TFRecordDataset([path], compression_type='GZIP'):
    f = tf.train.Example.FromString(record.numpy()).features.feature
    rows.append({'id': f['example_id'].bytes_list.value[0].decode(),
                 'image': np.array(f['image'].float_list.value),
                 'label': f['label'].int64_list.value[0],
                 'flipped': f['label_flipped'].int64_list.value[0]})
  return rows


@pytest.fixture(scope='module')
def written(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('digits'))
  summary = demo_data.write_demo_data(out, flip_fraction=0.1, seed=7)
  return out, summary, {s: _read(summary[s].path) for s in demo_data.SPLITS}


def test_splits_hold_every_digit_once_with_unique_ids(written):
  _, summary, rows = written
  assert sorted(rows) == ['eval', 'train']
  ids = [r['id'] for split in rows.values() for r in split]
  assert len(ids) == len(set(ids)) == 1797
  assert len(rows['eval']) == 449 and summary['eval'].examples == 449
  assert len(rows['train']) == 1348 and summary['train'].examples == 1348


def test_flip_share_is_exact_and_label_flipped_matches_the_labels(written):
  _, summary, rows = written
  digits = datasets.load_digits()
  for split, split_rows in rows.items():
    flipped = sum(r['flipped'] for r in split_rows)
    assert flipped == round(0.1 * len(split_rows)) == summary[split].flipped
    for r in split_rows:
      true_label = digits.target[int(r['id'].split('-')[1])]
      # A flipped label always names another class; an unflipped one is the truth.
      assert (r['label'] != true_label) == bool(r['flipped']), r['id']
      assert 0 <= r['label'] < 10
      np.testing.assert_allclose(r['image'], digits.data[int(r['id'].split('-')[1])] / 16,
                                 rtol=1e-6)


def test_same_seed_same_data_other_seed_other_flips(written, tmp_path):
  _, _, rows = written
  again = demo_data.write_demo_data(str(tmp_path / 'a'), flip_fraction=0.1, seed=7)
  other = demo_data.write_demo_data(str(tmp_path / 'b'), flip_fraction=0.1, seed=8)
  key = lambda rs: [(r['id'], r['label'], r['flipped']) for r in rs]
  assert key(_read(again['train'].path)) == key(rows['train'])
  assert key(_read(other['train'].path)) != key(rows['train'])


def test_summary_file_and_small_sample(tmp_path):
  summary = demo_data.write_demo_data(str(tmp_path), flip_fraction=0.2, seed=1,
                                      num_examples=100)
  assert summary['eval'].examples == 25 and summary['train'].examples == 75
  assert summary['eval'].flipped == 5 and summary['train'].flipped == 15
  with open(os.path.join(tmp_path, demo_data.SUMMARY_FILE)) as f:
    recorded = json.load(f)
  assert recorded['splits']['train']['flipped'] == 15 and recorded['seed'] == 1
  assert 'extra_flipped' not in recorded['splits']['train']
  assert 'extra_flips_to_class' not in recorded


@pytest.mark.parametrize('kwargs, message', [
    ({'flip_fraction': 1.5}, 'flip_fraction=1.5 must be in'),
    ({'eval_fraction': 0.0}, 'eval_fraction=0 leaves the eval split empty'),
    ({'num_examples': 5000}, 'num_examples=5000; choose between 4 and 1797'),
])
def test_bad_settings_are_refused_by_name(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    demo_data.write_demo_data(str(tmp_path), **kwargs)


def test_extra_flips_corrupt_one_class_and_leave_the_rest_as_it_was(written, tmp_path):
  _, summary, rows = written
  corrupted = demo_data.write_demo_data(str(tmp_path), flip_fraction=0.1, seed=7,
                                        extra_flips_to_class=3, extra_flip_fraction=0.25)
  digits = datasets.load_digits()
  for split, before in rows.items():
    after = _read(corrupted[split].path)
    assert [r['id'] for r in after] == [r['id'] for r in before]
    changed = [(b, a) for b, a in zip(before, after) if b['label'] != a['label']]
    # A quarter of the examples that were neither flipped nor labeled 3 are now labeled 3.
    eligible = [r for r in before if not r['flipped'] and r['label'] != 3]
    assert len(changed) == round(0.25 * len(eligible)) == corrupted[split].extra_flipped
    assert all(not b['flipped'] and a['label'] == 3 and a['flipped'] for b, a in changed)
    assert corrupted[split].flipped == summary[split].flipped + len(changed)
    for r in after:  # label_flipped still says exactly which labels are wrong
      assert (r['label'] != digits.target[int(r['id'].split('-')[1])]) == bool(r['flipped'])
  assert summary['train'].extra_flipped == 0
  with open(os.path.join(tmp_path, demo_data.SUMMARY_FILE)) as f:
    recorded = json.load(f)
  assert recorded['extra_flips_to_class'] == 3 and recorded['extra_flip_fraction'] == 0.25
  assert recorded['splits']['eval']['extra_flipped'] == corrupted['eval'].extra_flipped


@pytest.mark.parametrize('kwargs, message', [
    ({'extra_flips_to_class': 10, 'extra_flip_fraction': 0.2},
     'extra_flips_to_class=10 must be a class 0..9'),
    ({'extra_flips_to_class': True, 'extra_flip_fraction': 0.2},
     'extra_flips_to_class=True must be a class 0..9'),
    ({'extra_flips_to_class': 3, 'extra_flip_fraction': 0.0},
     r'extra_flip_fraction=0.0 must be in \(0, 1\] with extra_flips_to_class=3'),
    ({'extra_flips_to_class': 3, 'extra_flip_fraction': 1.5},
     r'extra_flip_fraction=1.5 must be in \(0, 1\]'),
    ({'extra_flip_fraction': 0.2}, 'extra_flip_fraction=0.2 needs extra_flips_to_class'),
])
def test_bad_extra_flips_are_refused_by_name(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    demo_data.write_demo_data(str(tmp_path), num_examples=100, **kwargs)
