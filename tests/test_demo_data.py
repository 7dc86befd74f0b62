"""Demo data: exact, seeded label flips recorded in `label_flipped`, two splits, unique ids."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn import datasets

from pipeline import demo_data


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


@pytest.mark.parametrize('kwargs, message', [
    ({'flip_fraction': 1.5}, 'flip_fraction=1.5 must be in'),
    ({'eval_fraction': 0.0}, 'eval_fraction=0 leaves the eval split empty'),
    ({'num_examples': 5000}, 'num_examples=5000; choose between 4 and 1797'),
])
def test_bad_settings_are_refused_by_name(tmp_path, kwargs, message):
  with pytest.raises(ValueError, match=message):
    demo_data.write_demo_data(str(tmp_path), **kwargs)
