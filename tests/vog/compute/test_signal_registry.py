"""A signal added to signals.REGISTRY reaches every output of an audit, under its name.

Two toy signals are registered for one audit: `toy`, the loss of the label at the
earliest checkpoint, ahead of every other signal, and `toy_fits`, a count (how many
checkpoints predict the label), after them. Both must show up in the scored examples,
the score table, flagged.jsonl, summary.json and the review page, and every other signal
must keep its own values although its position changed.
"""

import glob
import subprocess
import sys
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.vog import audit
from components.vog import audit_plan
from components.vog.inputs import checkpoints
from components.vog.report import report_format as fmt
from components.vog import vocabulary as vocab
from components.vog.report import score_table
from components.vog.compute import scoring
from components.vog.compute import signals
from components.vog.settings import VogSettings
import fixtures

N = 90
BUDGET = 12


def _first_loss(d: signals.Dynamics) -> np.ndarray:
  return -d.log_p_target[0]


def _fits(d: signals.Dynamics) -> np.ndarray:
  return d.correct.sum(axis=0)


TOY = signals.Signal('toy', signals.HIGH, signals.FLOAT, _first_loss,
                     'cross-entropy of the label at the earliest checkpoint')
TOY_FITS = signals.Signal('toy_fits', signals.LOW, signals.COUNT, _fits,
                          'how many checkpoints predict the label')


@pytest.fixture(scope='module')
def audited(tmp_path_factory):
  """(plan, summary, {example id: features}, report dir, images, labels, ids), audited
  with the toy signals registered; the registry stays patched while the module's tests
  read what the audit wrote."""
  root = str(tmp_path_factory.mktemp('signal_registry'))
  images, labels, _ = fixtures.digits(N, seed=5, flip_rate=0.2)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  ids = [f'r-{i:03d}' for i in range(N)]
  records = [fixtures.example(im, lab, i).SerializeToString()
             for im, lab, i in zip(images, labels, ids)]
  patterns = fixtures.write_examples_artifact(os.path.join(root, 'examples'),
                                              {'train': records[:60], 'eval': records[60:]})
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(signals, 'REGISTRY', (TOY,) + signals.REGISTRY + (TOY_FITS,))
    plan = audit_plan.plan_audit(
        VogSettings(batch_size=32, inspection_budget=BUDGET, copy_splits='all'),
        os.path.join(root, 'run'), patterns)
    out = os.path.join(root, 'out')
    report_dir = os.path.join(out, 'report')
    summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(out, 'scored'),
                              report_dir)
    rows = {}
    for path in glob.glob(os.path.join(out, 'scored', 'Split-*', '*.gz')):
      for record in tf.data.TFRecordDataset(path, compression_type='GZIP'):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        rows[feature['example_id'].bytes_list.value[0].decode()] = feature
    yield plan, summary, rows, report_dir, images, labels, ids


def _value(feature, name):
  kind = feature[name].WhichOneof('kind')
  return getattr(feature[name], kind).value[0]


def _expected(plan, images, labels, ids):
  """Every signal by example id, from the plan's checkpoints loaded here: the toys from
  their definitions, the others as signals.py computes them."""
  models = checkpoints.load_checkpoint_models(plan.entries, {})
  logits = np.stack([scoring.as_logits_model(m)(images, training=False).numpy()
                     for m in models]).astype(np.float64)
  rows = np.arange(len(labels))
  shifted = logits[0] - logits[0].max(axis=-1, keepdims=True)
  first_loss = np.log(np.exp(shifted).sum(axis=-1)) - shifted[rows, labels]
  others = logits.copy()
  others[:, rows, labels] = -np.inf
  fits = (logits[:, rows, labels] > others.max(axis=-1)).sum(axis=0)
  found = signals.compute_signals(logits, labels)
  found.update({TOY.field: first_loss, TOY_FITS.field: fits})
  return {eid: {name: found[name][i] for name in found} for i, eid in enumerate(ids)}


def test_the_registry_names_the_toys_in_its_order(audited):
  del audited  # the registry is patched while it is in use
  assert vocab.SIGNAL_FIELDS[0] == 'audit_toy' and vocab.SIGNAL_FIELDS[-1] == 'audit_toy_fits'
  assert vocab.INT_SIGNALS[-1] == 'audit_toy_fits' and 'audit_toy' not in vocab.INT_SIGNALS
  assert vocab.AGREEMENT_NAMES[0] == 'toy' and vocab.AGREEMENT_NAMES[-2:] == ('toy_fits', 'vog')
  assert signals.SIGNALS == vocab.SIGNAL_FIELDS


def test_every_scored_example_carries_every_signal_under_its_own_name(audited):
  plan, _, rows, _, images, labels, ids = audited
  assert len(rows) == N
  expected = _expected(plan, images, labels, ids)
  for eid, feature in rows.items():
    for s in signals.REGISTRY:
      if s.kind == signals.COUNT:
        assert feature[s.field].int64_list.value[0] == expected[eid][s.field], (eid, s.name)
      else:
        assert feature[s.field].float_list.value[0] == pytest.approx(
            expected[eid][s.field], rel=1e-4, abs=1e-5), (eid, s.name)


def test_the_score_table_has_a_column_per_signal_in_registry_order(audited):
  _, _, rows, report_dir, _, _, _ = audited
  table = score_table.read_table(report_dir)
  signal_columns = [n for n in table.column_names if n.startswith('audit_')]
  assert signal_columns == list(signals.fields())
  assert str(table.schema.field('audit_toy').type) == 'float'
  assert str(table.schema.field('audit_toy_fits').type) == 'int32'
  for row in table.to_pylist():
    feature = rows[row['example_id']]
    for s in signals.REGISTRY:
      assert row[s.field] == pytest.approx(_value(feature, s.field), rel=1e-6), s.name


def test_summary_and_flagged_rows_name_the_toys(audited):
  _, summary, rows, report_dir, _, _, _ = audited
  assert summary['signals'] == {'fields': list(signals.fields()), 'left_out': None}
  report = fmt.load_report(report_dir)
  assert len(report.flagged) == BUDGET
  for row in report.flagged:
    assert set(row.signals) == set(signals.fields())
    for name, value in row.signals.items():
      assert value == pytest.approx(_value(rows[row.example_id], name), rel=1e-6)
    assert set(row.agreeing) <= set(vocab.AGREEMENT_NAMES)
  splits = {eid: ('train' if int(eid[2:]) < 60 else 'eval') for eid in rows}
  for row in report.summary.per_class:
    members = [f for eid, f in rows.items() if splits[eid] == row.split
               and _value(f, 'vog_target_class') == row.class_id]
    assert set(row.signal_means) == set(signals.fields())
    for s in signals.REGISTRY:
      assert row.signal_means[s.field] == pytest.approx(
          np.mean([_value(f, s.field) for f in members]), rel=1e-4, abs=1e-6), s.name


def test_the_review_page_counts_the_toys_among_the_signals_that_agree(audited):
  _, _, _, report_dir, _, _, _ = audited
  with open(os.path.join(report_dir, vocab.REPORT_FILE)) as f:
    page = f.read()
  table = page.split('<table class="agreement">', 1)[1].split('</table>', 1)[0]
  for name in vocab.AGREEMENT_NAMES:
    assert f'<tr><td>{name}' in table, name
  assert f' of {len(vocab.AGREEMENT_NAMES)}</b>' in page


def test_rank_by_takes_a_registered_signal_and_the_command_line_help_names_it():
  without = tuple(s for s in signals.REGISTRY if s.name not in ('toy', 'toy_fits'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(signals, 'REGISTRY', without + (TOY,))
    assert VogSettings(rank_by='toy').validate().ranked_by == 'toy'
    patch.setattr(signals, 'REGISTRY', without)
    with pytest.raises(ValueError, match="rank_by='toy'"):
      VogSettings(rank_by='toy').validate()
  # The command line's options are built when it is imported: register first, then import.
  code = ('from components.vog.compute import signals\n'
          'signals.REGISTRY += (signals.Signal("toy", signals.HIGH, signals.FLOAT,\n'
          '                     lambda d: -d.log_p_target[0], "toy"),)\n'
          'from click.testing import CliRunner\n'
          'from pipeline.cli import main\n'
          'print(CliRunner().invoke(main, ["score", "--help"], terminal_width=400).output)\n')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, env=dict(os.environ, TF_USE_LEGACY_KERAS='1')).stdout
  rank_by = ' '.join(out.split('--rank-by', 1)[1].split())
  assert 'forgetting, toy)' in rank_by
