"""The label-error signals come out of the audit's own gradient pass, example by example.

The scored examples, flagged.jsonl and summary.json carry what signals.py computes from the
logits of the checkpoints the audit selected, read here independently by loading those
checkpoints and running the images through them.
"""

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.vog import audit
from components.vog import audit_plan
from components.vog.inputs import checkpoints
from components.vog.report import json_checks
from components.vog.report import report_format as fmt
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.report import score_table
from components.vog.compute import scoring
from components.vog.compute import signals
from components.vog.settings import VogSettings
import fixtures

N = 120


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('audit_signals'))
  images, labels, _ = fixtures.digits(N, seed=4, flip_rate=0.2)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=4)
  ids = [f's-{i:03d}' for i in range(N)]
  records = [fixtures.example(im, lab, i).SerializeToString()
             for im, lab, i in zip(images, labels, ids)]
  patterns = fixtures.write_examples_artifact(os.path.join(root, 'examples'),
                                              {'train': records[:90], 'eval': records[90:]})
  return root, images, labels, ids, patterns


def _audit(data, name, **settings):
  # Every split copied in full: these tests read what each scored example carries.
  root, _, _, _, patterns = data
  settings.setdefault('copy_splits', 'all')
  plan = audit_plan.plan_audit(VogSettings(batch_size=32, inspection_budget=15, **settings),
                               os.path.join(root, 'run'), patterns)
  out = os.path.join(root, name)
  summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(out, 'scored'),
                            os.path.join(out, 'report'))
  rows = {}
  for path in glob.glob(os.path.join(out, 'scored', 'Split-*', '*.gz')):
    for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
      feature = tf.train.Example.FromString(record.numpy()).features.feature
      rows[feature['example_id'].bytes_list.value[0].decode()] = feature
  # The score table holds what the copies carry, example by example.
  table = score_table.read_table(os.path.join(out, 'report')).to_pylist()
  assert len(table) == len(rows)
  for row in table:
    feature = rows[row['example_id']]
    for name in (vocab.VOG_RAW, vocab.VOG_SCORE, vocab.VOG_PERCENTILE, vocab.VOG_DECILE,
                 vocab.VOG_FLAGGED, vocab.VOG_TARGET_CLASS) + tuple(
                     n for n in signals.SIGNALS if n in row):
      assert row[name] == pytest.approx(_value(feature, name), rel=1e-6), (row, name)
    assert row[vocab.VOG_BUCKET].encode() == _value(feature, vocab.VOG_BUCKET)
  return plan, summary, rows, os.path.join(out, 'report')


@pytest.fixture(scope='module')
def labelled(data):
  return _audit(data, 'label')


def _expected(data, plan):
  """signals.py on the logits of the plan's checkpoints, loaded here, by example id."""
  _, images, labels, ids, _ = data
  models = checkpoints.load_checkpoint_models(plan.entries, {})
  logits = np.stack([scoring.as_logits_model(m)(images, training=False).numpy()
                     for m in models])
  found = signals.compute_signals(logits, labels)
  return {eid: {name: found[name][i] for name in signals.SIGNALS}
          for i, eid in enumerate(ids)}


def _value(feature, name):
  kind = feature[name].WhichOneof('kind')
  return getattr(feature[name], kind).value[0]


def test_every_scored_example_carries_the_signals_of_its_checkpoints(data, labelled):
  plan, _, rows, _ = labelled
  assert len(plan.entries) >= 2 and len(rows) == N
  expected = _expected(data, plan)
  for eid, feature in rows.items():
    for name in signals.SIGNALS:
      if name == signals.FORGETTING:
        assert feature[name].int64_list.value[0] == expected[eid][name], (eid, name)
      else:
        assert _value(feature, name) == pytest.approx(expected[eid][name], rel=1e-4,
                                                       abs=1e-5), (eid, name)


def test_flagged_rows_and_class_means_carry_them_too(labelled):
  _, summary, rows, report_dir = labelled
  report = fmt.load_report(report_dir)
  assert report.flagged
  for row in report.flagged:
    assert set(row.signals) == set(signals.SIGNALS)
    for name, value in row.signals.items():
      assert value == pytest.approx(_value(rows[row.example_id], name), rel=1e-6)
  for row in report.summary.per_class:
    members = [f for eid, f in rows.items()
               if _value(f, 'vog_target_class') == row.class_id
               and _split_of(report_dir, eid) == row.split]
    assert len(members) == row.count
    for name in signals.SIGNALS:
      assert row.signal_means[name] == pytest.approx(
          np.mean([_value(f, name) for f in members]), rel=1e-4, abs=1e-6), (row, name)
  assert summary['signals'] == {'fields': list(signals.SIGNALS), 'left_out': None}


_SPLITS = {}


def _split_of(report_dir, example_id):
  """The split an example was written to, from the scored examples' folders."""
  if report_dir not in _SPLITS:
    found = {}
    scored = os.path.join(os.path.dirname(report_dir), 'scored')
    for path in glob.glob(os.path.join(scored, 'Split-*', '*.gz')):
      split = os.path.basename(os.path.dirname(path))[len('Split-'):]
      for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        found[f['example_id'].bytes_list.value[0].decode()] = split
    _SPLITS[report_dir] = found
  return _SPLITS[report_dir][example_id]


def test_unlabelled_audits_leave_the_signals_out_and_say_why(data):
  _, summary, rows, report_dir = _audit(data, 'predicted', label_mode='predicted',
                                        label_key=None)
  assert not any(name in f for f in rows.values() for name in signals.SIGNALS)
  assert summary['signals']['fields'] == []
  assert "label_mode='predicted'" in summary['signals']['left_out']
  report = fmt.load_report(report_dir)
  assert all(row.signals is None for row in report.flagged)
  assert all(row.signal_means is None for row in report.summary.per_class)


def test_a_flagged_row_naming_an_unknown_signal_is_refused():
  line = {'rank': 1, 'example_id': 'a', 'split': 't', 'label': 1, 'predicted_class': 1,
          'target_class': 1, 'vog_score': 1.0, 'vog_raw': 1.0, 'vog_percentile': 99.0,
          'vog_bucket': 'hard', 'signals': {'audit_confidence': 0.2, 'audit_magic': 1.0}}
  with pytest.raises(json_checks.ReportFormatError, match="unknown signal"):
    report_rows.flagged_row_from_json(line, 'flagged.jsonl line 1')
  line['signals'] = {'audit_confidence': 'high'}
  with pytest.raises(json_checks.ReportFormatError, match='expected a number'):
    report_rows.flagged_row_from_json(line, 'flagged.jsonl line 1')
  line['signals'] = {'audit_confidence': 0.25}
  assert report_rows.flagged_row_from_json(line).signals == {'audit_confidence': 0.25}
  assert json.loads(json.dumps(report_rows.flagged_row_to_json(
      report_rows.flagged_row_from_json(line))))['signals'] == {'audit_confidence': 0.25}


def _split_wide_share(values, value):
  return 100.0 * np.mean(np.asarray(values) <= value)


def _share_below(values, value):
  return 100.0 * np.mean(np.asarray(values) < value)


def test_the_default_ranks_by_confidence_across_each_split(data, labelled):
  # rank_by='auto' with labels: the inspection budget goes to the least confident labels
  # of the whole audit; percentiles and buckets are of confidence within the split, and
  # vog_score stays VoG normalised within its class.
  plan, summary, rows, report_dir = labelled
  assert plan.settings.ranked_by == 'confidence' and summary['ranked_by'] == 'confidence'
  report = fmt.load_report(report_dir)
  confidence = {eid: _value(f, signals.CONFIDENCE) for eid, f in rows.items()}
  least = sorted(confidence, key=lambda eid: confidence[eid])[:15]
  assert [row.example_id for row in report.flagged] == least
  assert {eid for eid, f in rows.items() if _value(f, 'vog_flagged')} == set(least)
  for split in ('train', 'eval'):
    mine = [eid for eid in rows if _split_of(report_dir, eid) == split]
    values = [-confidence[eid] for eid in mine]
    for eid in mine:
      assert _value(rows[eid], 'vog_percentile') == pytest.approx(
          _split_wide_share(values, -confidence[eid]), abs=0.1)
  # vog_score: VoG z-scored within (split, class).
  for eid, f in rows.items():
    peers = [_value(g, 'vog_raw') for e, g in rows.items()
             if _split_of(report_dir, e) == _split_of(report_dir, eid)
             and _value(g, 'vog_target_class') == _value(f, 'vog_target_class')]
    if len(peers) > 1 and np.std(peers) > 0:
      assert _value(f, 'vog_score') == pytest.approx(
          (_value(f, 'vog_raw') - np.mean(peers)) / np.std(peers), rel=1e-4, abs=1e-4)


def test_each_flag_says_which_signals_agree(labelled):
  _, _, rows, report_dir = labelled
  report = fmt.load_report(report_dir)
  for row in report.flagged:
    split = row.split
    peers = [f for eid, f in rows.items() if _split_of(report_dir, eid) == split]
    expected = []
    for short, field in zip(vocab.SIGNAL_NAMES, vocab.SIGNAL_FIELDS):
      sign = signals.ORIENTATION[field]
      share = _share_below([sign * _value(f, field) for f in peers],
                           sign * row.signals[field])
      expected.append((short, share))
    expected.append(('vog', _share_below([_value(f, 'vog_raw') for f in peers],
                                         row.vog_raw)))
    # A share within 0.5 of the 90th percentile may fall either side of the cut through
    # quantile rounding; every other one must be decided as the split's values say.
    clear = [(name, share > 90.0) for name, share in expected if abs(share - 90.0) > 0.5]
    assert all((name in row.agreeing) == agrees for name, agrees in clear), (row, expected)
  assert any(len(row.agreeing) >= 3 for row in report.flagged)
  # Forgetting agrees only with an example that was forgotten more often than 90% of its
  # split, never with one that was not forgotten at all.
  assert all(row.signals['audit_forgetting'] > 0 for row in report.flagged
             if 'forgetting' in row.agreeing)


def test_rank_by_vog_flags_the_highest_class_normalised_vog(data):
  plan, summary, rows, report_dir = _audit(data, 'by-vog', rank_by='vog')
  assert summary['ranked_by'] == 'vog'
  report = fmt.load_report(report_dir)
  scores = {eid: _value(f, 'vog_score') for eid, f in rows.items()}
  top = sorted(scores, key=lambda eid: -scores[eid])[:15]
  assert [row.example_id for row in report.flagged] == top
  # `vog` agrees by raw VoG across the split, the signals' way, not by the class-normalised
  # score that ranked these.
  for row in report.flagged:
    peers = [_value(f, 'vog_raw') for eid, f in rows.items()
             if _split_of(report_dir, eid) == row.split]
    share = _share_below(peers, row.vog_raw)
    if abs(share - 90.0) > 0.5:
      assert ('vog' in row.agreeing) == (share > 90.0), (row, share)
