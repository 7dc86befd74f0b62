"""Drift against the audit of the last shipped model: per example, per class, run after run.

Three audits of changing data with the same checkpoints: the first has no baseline, the
second compares with the first (examples dropped, added, and labels of one class
corrupted), the third with the second. Every count is checked against sets computed from
the scored examples the audits wrote.
"""

import glob
import gzip
import json
import math
import os
import shutil

import apache_beam as beam
import numpy as np
import pytest

from components.vog import audit
from components.vog import audit_plan
from components.vog.dataflow import drift as drift_lib
from components.vog.report import drift_model
from components.vog.report import json_checks
from components.vog.report import report_format as fmt
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.report import score_table
from components.vog.settings import VogSettings
import fixtures

N = 320
CORRUPTED = 3


def _records(images, labels, ids):
  return [fixtures.example(im, lab, i).SerializeToString()
          for im, lab, i in zip(images, labels, ids)]


def _write_data(root, rows):
  """rows: {split: [(image, label, id)]}; train goes to two files, eval to one."""
  patterns = {}
  for split, items in rows.items():
    images, labels, ids = zip(*items) if items else ((), (), ())
    records = _records(images, labels, ids)
    parts = [records[:len(records) // 2], records[len(records) // 2:]] if split == 'train' \
        else [records]
    for k, part in enumerate(parts):
      fixtures.write_records(os.path.join(root, split, f'part-{k}.gz'), part)
    patterns[split] = os.path.join(root, split, '*')
  return patterns


def _scored(report_dir, raw=False):
  """{example_id: (split, flagged)} of an audit's score table; with `raw`,
  {example_id: (split, target class, vog_raw)}."""
  table = score_table.read_table(report_dir).to_pydict()
  out = {}
  for i, eid in enumerate(table['example_id']):
    if raw:
      out[eid] = (table['split'][i], table['vog_target_class'][i], table['vog_raw'][i])
    else:
      out[eid] = (table['split'][i], table['vog_flagged'][i])
  return out


def _audit(root, model_run, patterns, name, baseline=None):
  # Ranked by class-normalised VoG: the hard case for a per-class hard share (every class
  # keeps a tenth of itself in its own hard bucket). The default ranking's drift is run
  # by tests/pipeline/test_airflow_run.py and test_a_baseline_ranked_otherwise_is_not_compared.
  settings = VogSettings(inspection_budget=40, batch_size=64, rank_by='vog')
  plan = audit_plan.plan_audit(settings, model_run, patterns, baseline=baseline)
  out = os.path.join(root, name)
  summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(out, 'scored'),
                            os.path.join(out, 'report'))
  return summary, os.path.join(out, 'report'), _scored(os.path.join(out, 'report'))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('drift'))
  images, labels, _ = fixtures.digits(N, seed=5, flip_rate=0.1)
  model_run = os.path.join(root, 'run')
  fixtures.train_checkpoints(model_run, images, labels, epochs=3)
  ids = [f'd-{i:04d}' for i in range(N)]
  items = list(zip(images, labels, ids))
  first = {'train': items[:240], 'eval': items[240:]}
  r1 = _audit(root, model_run, _write_data(os.path.join(root, 'data1'), first), 'a1')

  # Second run: 20 examples gone, 30 new ones, and CORRUPTED given a quarter more
  # examples, other classes' relabelled (its labels a third wrong, the others a tenth).
  extra, extra_labels, _ = fixtures.digits(N + 30, seed=5)
  new_items = [(extra[N + k], extra_labels[N + k], f'n-{k:04d}') for k in range(30)]
  train = [(image, label, i) for image, label, i in items[20:240]]
  others = [k for k, (_, label, _) in enumerate(train) if label != CORRUPTED]
  size = sum(1 for _, label, _ in train if label == CORRUPTED)
  for k in np.random.default_rng(0).choice(others, size // 4 + 1, replace=False):
    train[k] = (train[k][0], CORRUPTED, train[k][2])
  second = {'train': train + new_items, 'eval': items[240:]}
  data2 = _write_data(os.path.join(root, 'data2'), second)
  r2 = _audit(root, model_run, data2, 'a2', baseline={'uri': r1[1], 'artifact_id': 1})
  r3 = _audit(root, model_run, data2, 'a3', baseline={'uri': r2[1]})
  return {'root': root, 'model_run': model_run, 'data2': data2, 'r1': r1, 'r2': r2, 'r3': r3}


def _flagged(scored):
  return {i for i, (_, f) in scored.items() if f}


def test_the_first_audit_has_no_drift_and_starts_the_history(runs):
  summary, report_dir, scored = runs['r1']
  assert summary['drift'] is None
  report = fmt.load_report(report_dir)
  assert report.summary.drift is None
  assert all(row.drift_status is None for row in report.flagged)
  paths = fmt.history_files(report_dir)
  assert len(paths) == 3  # one per work unit, here each input file: train in two, eval in one
  rows = [r for p in paths for r in drift_lib.read_history_shard(p)]
  assert {eid for eid, _ in rows} == set(scored)
  for eid, row in rows:
    assert row.flagged == scored[eid][1] and row.streak == row.flagged


def test_the_second_audit_counts_what_changed_by_example_id(runs):
  _, base_dir, before = runs['r1']
  summary, report_dir, now = runs['r2']
  drift = fmt.load_report(report_dir).summary.drift
  assert drift.unavailable is None and drift.baseline_uri == base_dir
  flagged_then, flagged_now = _flagged(before), _flagged(now)
  for s in drift.splits:
    ids_now = {i for i, (split, _) in now.items() if split == s.split}
    ids_then = {i for i, (split, _) in before.items() if split == s.split}
    fl_now = flagged_now & ids_now
    assert s.matched == len(ids_now & set(before))
    assert s.new_examples == len(ids_now - set(before))
    assert s.gone_examples == len(ids_then - set(now))
    assert s.newly_flagged == len((fl_now & set(before)) - flagged_then)
    assert s.still_flagged == len(fl_now & flagged_then)
    assert s.flagged_new_data == len(fl_now - set(before))
    assert s.no_longer_flagged == len((flagged_then & ids_now) - flagged_now)
    counts = summary['splits'][s.split]
    assert s.flagged_share_now == pytest.approx(counts['flagged'] / counts['scored'])
  train = [s for s in drift.splits if s.split == 'train'][0]
  assert (train.gone_examples, train.new_examples) == (20, 30)
  assert drift.still_flagged > 0 and drift.newly_flagged > 0


def test_flagged_rows_say_whether_they_are_new_newly_or_still_flagged(runs):
  _, _, before = runs['r1']
  _, report_dir, _ = runs['r2']
  flagged_then = _flagged(before)
  for row in fmt.load_report(report_dir).flagged:
    if row.example_id not in before:
      assert (row.drift_status, row.flagged_streak) == (vocab.NEW_DATA, 1)
    elif row.example_id in flagged_then:
      assert (row.drift_status, row.flagged_streak) == (vocab.STILL_FLAGGED, 2)
    else:
      assert (row.drift_status, row.flagged_streak) == (vocab.NEWLY_FLAGGED, 1)


def test_the_corrupted_class_shows_the_largest_hard_share_increase(runs):
  drift = fmt.load_report(runs['r2'][1]).summary.drift
  top = drift.largest_hard_share_increase
  assert (top.split, top.class_id) == ('train', CORRUPTED)
  corrupted = [c for c in drift.per_class if (c.split, c.class_id) == ('train', CORRUPTED)][0]
  assert corrupted.count_now > corrupted.count_then
  # Its decile histogram moved the most of any train class.
  train = [c for c in drift.per_class if c.split == 'train']
  assert max(train, key=lambda c: c.psi) == corrupted
  # The eval split did not change, so neither did its classes.
  assert all(abs(c.hard_share_change) < 1e-9 and c.psi < 1e-9
             for c in drift.per_class if c.split == 'eval')


def test_hard_counts_are_the_examples_above_the_hard_cut_of_raw_vog(runs):
  # With class normalisation every class keeps about a tenth of itself in the hard bucket,
  # so the per-class hard share is taken on raw VoG ranked within the split.
  summary, report_dir, _ = runs['r2']
  rows = _scored(report_dir, raw=True)
  for split in ('train', 'eval'):
    raw = np.array([r for s, _, r in rows.values() if s == split])
    for c in range(10):
      mine = [r for s, k, r in rows.values() if s == split and k == c]
      expected = sum(1 for r in mine if 100.0 * np.mean(raw <= r) > 90.0)
      [row] = [p for p in summary['per_class'] if (p['split'], p['class']) == (split, c)]
      assert abs(row['hard'] - expected) <= 1, (split, c, row['hard'], expected)
  assert sum(p['hard'] for p in summary['per_class']) > 0


def test_a_streak_grows_only_while_an_example_stays_flagged(runs):
  flagged = [_flagged(runs[k][2]) for k in ('r1', 'r2', 'r3')]
  drift = fmt.load_report(runs['r3'][1]).summary.drift
  three = flagged[0] & flagged[1] & flagged[2]
  two = (flagged[1] & flagged[2]) - flagged[0]
  assert drift.streaks.get(3, 0) == len(three) and len(three) > 0
  assert drift.streaks.get(2, 0) == len(two)
  assert drift.longest_streak == 3
  rows = {r.example_id: r for r in fmt.load_report(runs['r3'][1]).flagged}
  for eid in three:
    assert rows[eid].flagged_streak == 3


def test_the_drift_headline_is_in_the_summary_properties(runs):
  drift = fmt.load_report(runs['r2'][1]).summary.drift
  props = drift.properties()
  assert props[vocab.NEWLY_FLAGGED] == drift.newly_flagged
  assert props[vocab.MAX_HARD_SHARE_CLASS] == f'train/{CORRUPTED}'
  assert props[vocab.FLAGGED_SHARE_CHANGE] == pytest.approx(
      drift.flagged_share_now - drift.flagged_share_then)


def _copy_report(src, dst):
  shutil.copytree(src, dst)
  return dst


def test_a_tampered_history_makes_drift_unavailable_and_the_audit_still_publishes(runs):
  root = runs['root']
  bad = _copy_report(runs['r1'][1], os.path.join(root, 'tampered'))
  path = fmt.history_files(bad)[0]
  with gzip.open(path, 'rb') as f:
    lines = f.read().splitlines()
  row = json.loads(lines[0])
  row['streak'] = 7  # an unflagged example cannot have a streak
  row['flagged'] = 0
  lines[0] = json.dumps(row).encode()
  with gzip.open(path, 'wb') as f:
    f.write(b'\n'.join(lines) + b'\n')
  summary, report_dir, scored = _audit(root, runs['model_run'], runs['data2'], 'a4',
                                       baseline={'uri': bad})
  drift = fmt.load_report(report_dir).summary.drift
  assert 'refused' in drift.unavailable and f'{path} line 1' in drift.unavailable
  assert drift.per_class == ()
  assert drift.properties() == {vocab.DRIFT_UNAVAILABLE: drift.unavailable,
                                vocab.DRIFT_BASELINE_URI: bad}
  assert summary['counts']['scored'] == len(scored)
  assert all(r.drift_status is None for r in fmt.load_report(report_dir).flagged)
  # The history starts again, so the next audit can compare.
  assert sum(1 for p in fmt.history_files(report_dir)
             for _ in drift_lib.read_history_shard(p)) == len(scored)


@pytest.mark.parametrize('break_it, reason', [
    (lambda d: shutil.rmtree(d), 'cannot be read'),
    (lambda d: [os.remove(p) for p in glob.glob(os.path.join(d, 'history-*'))], 'no history'),
    (lambda d: os.remove(glob.glob(os.path.join(d, 'history-00001-*'))[0]), 'incomplete'),
])
def test_a_lost_baseline_is_named_not_fatal(runs, break_it, reason, tmp_path):
  bad = _copy_report(runs['r1'][1], str(tmp_path / 'baseline'))
  break_it(bad)
  baseline = drift_lib.load_baseline({'uri': bad})
  assert reason in baseline.unavailable
  assert drift_lib.class_drift({}, baseline).unavailable == baseline.unavailable


def test_a_baseline_from_before_format_3_is_named():
  # The loader reads format 2 (no hard counts, no history): drift says why it cannot compare.
  baseline = drift_lib.Baseline({'uri': 'x'}, None, (), 'has format_version 2')
  assert 'format_version 2' in drift_lib.class_drift({}, baseline).unavailable


def test_psi_is_zero_for_the_same_histogram_and_grows_with_the_shift():
  same = drift_lib.psi([10] * 10, [20] * 10)
  assert same == pytest.approx(0.0, abs=1e-12)
  small = drift_lib.psi([12, 10, 10, 10, 10, 10, 10, 10, 10, 8], [10] * 10)
  large = drift_lib.psi([0, 0, 0, 0, 0, 0, 0, 0, 0, 100], [10] * 10)
  assert 0 < small < 0.1 < 0.25 < large
  # By hand for two bins: p = (a + .5) / (n + 1), q likewise.
  p, q = (3.5 / 5, 1.5 / 5), (1.5 / 5, 3.5 / 5)
  expected = sum((a - b) * math.log(a / b) for a, b in zip(p, q))
  assert drift_lib.psi([3, 1], [1, 3]) == pytest.approx(expected)


@pytest.mark.parametrize('row, problem', [
    ({'example_id': 'a', 'split': 't', 'class': 1, 'flagged': 2, 'streak': 1,
      'percentile': 3.0}, 'flagged=2'),
    ({'example_id': 'a', 'split': 't', 'class': 1, 'flagged': 1, 'streak': 0,
      'percentile': 3.0}, 'streak=0'),
    ({'example_id': 'a', 'split': 't', 'class': 1, 'flagged': 0, 'streak': 0,
      'percentile': 300.0}, 'percentile 300'),
    ({'example_id': 5, 'split': 't', 'class': 1, 'flagged': 0, 'streak': 0,
      'percentile': 3.0}, "'example_id' is an integer"),
    ({'example_id': 'a', 'split': 't', 'class': 1, 'flagged': 1, 'streak': 2 ** 63 - 1,
      'percentile': 3.0}, 'more audits in a row than any schedule makes'),
    ([], 'expected an object'),
])
def test_history_rows_are_checked_like_outside_input(row, problem):
  with pytest.raises(json_checks.ReportFormatError, match=problem):
    report_rows.history_row_from_json(row, 'h line 1')


def test_score_command_compares_with_a_baseline_folder(runs, tmp_path):
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  pattern = os.path.join(os.path.dirname(runs['data2']['train']), '*.gz')
  args = ['score', '--model-run', runs['model_run'], '--examples', pattern,
          '--inspection-budget', '20']
  first = CliRunner().invoke(cli, args + ['--output', str(tmp_path / 'one')])
  assert first.exit_code == 0, first.output
  second = CliRunner().invoke(cli, args + ['--output', str(tmp_path / 'two'), '--baseline',
                                           str(tmp_path / 'one' / 'difficulty_report')])
  assert second.exit_code == 0, second.output
  # The same checkpoints on the same 250 examples: the 20 flagged are flagged again.
  assert ('Since the last shipped model: flagged 8.0% → 8.0% (+0.0 pts); no class\'s hard '
          'share rose; 0 newly flagged, 20 still flagged (up to 2 audits in a row)'
          ) in second.output.splitlines()


def test_the_largest_rise_is_weighed_against_chance():
  def cls(split, c, n_then, n_now, then, now):
    return drift_model.DriftClass(split, c, n_now, n_then, 0.1, 0.1, now, then, 0.0)
  jitter = cls('eval', 1, 13, 12, 1 / 13, 2 / 12)  # one example more: +9.0 points
  real = cls('train', 3, 200, 210, 0.10, 0.16)  # 13 examples more: +6.0 points
  drift = drift_model.Drift('b', None, None, 0.1, 0.1, (), (jitter, real), {})
  assert jitter.hard_share_change > real.hard_share_change
  assert real.hard_share_z > 1.5 > 0.7 > jitter.hard_share_z
  assert drift.largest_hard_share_increase == real
  falling = drift_model.Drift('b', None, None, 0.1, 0.1, (), (cls('t', 0, 50, 50, 0.2, 0.1),), {})
  assert falling.largest_hard_share_increase is None


def test_a_baseline_ranked_otherwise_is_not_compared(runs):
  # The default ranks by label confidence; a baseline ranked by VoG flagged other examples
  # for other reasons, so comparing flagged sets or hard shares would report a false change.
  settings = VogSettings(inspection_budget=40, batch_size=64)
  assert settings.ranked_by == 'confidence'
  plan = audit_plan.plan_audit(settings, runs['model_run'], runs['data2'],
                               baseline={'uri': runs['r2'][1]})
  out = os.path.join(runs['root'], 'other-ranking')
  summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(out, 'scored'),
                            os.path.join(out, 'report'))
  report = fmt.load_report(os.path.join(out, 'report'))
  assert report.summary.ranked_by == 'confidence'
  assert fmt.load_report(runs['r2'][1]).summary.ranked_by == 'vog'
  reason = report.summary.drift.unavailable
  assert 'ranked its examples by vog and this audit ranks them by confidence' in reason
  assert summary['drift']['splits'] == [] and report.summary.drift.per_class == ()
  # It still wrote its own history, so the audit after it can compare with it.
  assert len(fmt.history_files(os.path.join(out, 'report'))) == 3


@pytest.mark.parametrize('row', [
    report_rows.HistoryRow('ex-1', 'train', 3, 1, 2, 97.5),
    report_rows.HistoryRow('quote " and é and \\\\ and \u2028', 'eval', 0, 0, 0, 1e-07),
    report_rows.HistoryRow('', 's', 12, 0, 0, 100.0)])
def test_a_history_line_is_the_rows_json_and_reads_back(row):
  line = report_rows.history_row_line(row)
  assert line == json.dumps(report_rows.history_row_to_json(row), sort_keys=True,
                            separators=(',', ':'))
  assert report_rows.history_row_from_json(json.loads(line)) == row


# Hostile or broken baseline files: each ends in `drift.unavailable` with its reason,
# never in a traceback, a hang or a worker's memory.

def _summary(report_dir):
  with open(os.path.join(report_dir, vocab.SUMMARY_FILE)) as f:
    return json.load(f)


def _write_summary(report_dir, summary):
  with open(os.path.join(report_dir, vocab.SUMMARY_FILE), 'w') as f:
    json.dump(summary, f)


def _replace_with_folder(path):
  os.remove(path)
  os.mkdir(path)


def _replace_with_fifo(path):
  os.remove(path)
  os.mkfifo(path)


def _flag_more_than_scored(report_dir):
  summary = _summary(report_dir)
  for counts in (summary['counts'], summary['splits']['eval']):
    counts['flagged'] += 10 ** 9
  _write_summary(report_dir, summary)


def _inflate_a_class(report_dir):
  # Every total agrees; one class claims more examples than its split scored.
  summary = _summary(report_dir)
  row = summary['per_class'][0]
  row['count'] += 1000
  row['decile_counts'][0] += 1000
  _write_summary(report_dir, summary)


def _summary_path(d):
  return os.path.join(d, vocab.SUMMARY_FILE)


@pytest.mark.parametrize('break_it, reason', [
    (lambda d: _replace_with_folder(_summary_path(d)),
     'the baseline report cannot be read: {d}/summary.json is a folder, not a file'),
    (lambda d: _replace_with_fifo(_summary_path(d)),
     'the baseline report cannot be read: {d}/summary.json is not a regular file (a FIFO'),
    (lambda d: open(_summary_path(d), 'w').write('[' * 100_000 + ']' * 100_000),
     'the baseline report cannot be read: {d}/summary.json nests 100000 levels deep, more '
     'than the 32 this file ever has'),
    (lambda d: _replace_with_folder(fmt.history_files(d)[1]),
     'a history shard of the baseline cannot be read: {d}/history-00001-of-00003.jsonl.gz '
     'is a folder, not a file'),
    (lambda d: _replace_with_fifo(fmt.history_files(d)[2]),
     'a history shard of the baseline cannot be read: {d}/history-00002-of-00003.jsonl.gz '
     'is not a regular file'),
    (_flag_more_than_scored,
     "the baseline report {d} has counts that cannot be true: counts flags 1,000,000,"),
    (_inflate_a_class,
     "has counts that cannot be true: the class rows of split 'eval' count "),
], ids=['summary folder', 'summary fifo', 'summary nested', 'shard folder', 'shard fifo',
        'flagged above scored', 'class above its split'])
def test_a_hostile_baseline_file_makes_drift_unavailable(runs, tmp_path, break_it, reason):
  bad = _copy_report(runs['r1'][1], str(tmp_path / 'baseline'))
  break_it(bad)
  baseline = _within(30, lambda: drift_lib.load_baseline({'uri': bad}, 'vog'), bad)
  assert reason.format(d=bad) in baseline.unavailable
  assert baseline.history_paths == ()
  drift = drift_lib.class_drift({}, baseline)
  assert drift.unavailable == baseline.unavailable and drift.per_class == ()


def test_a_summary_above_its_size_limit_is_not_read(runs, tmp_path, monkeypatch):
  bad = _copy_report(runs['r1'][1], str(tmp_path / 'baseline'))
  monkeypatch.setattr(drift_lib, 'MAX_SUMMARY_BYTES', 1000)
  reason = drift_lib.load_baseline({'uri': bad}).unavailable
  assert f'{bad}/summary.json is ' in reason and 'above the limit of 1,000' in reason


def _within(seconds, fn, folder):
  """fn(), failing the test (not hanging it) when a FIFO under `folder` keeps it waiting."""
  import threading  # pylint: disable=g-import-not-at-top
  result = []
  worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
  worker.start()
  worker.join(seconds)
  if worker.is_alive():
    for path in glob.glob(os.path.join(folder, '**'), recursive=True):
      if os.path.exists(path) and not os.path.isdir(path) and not os.path.isfile(path):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
    pytest.fail(f'reading {folder} waited on a FIFO for {seconds}s')
  return result[0]


def _shard_of(tmp_path, lines):
  path = str(tmp_path / vocab.history_shard_name(0, 1))
  with gzip.open(path, 'wb') as f:
    for line in lines:
      f.write(line + b'\n')
  return path


GOOD_ROW = b'{"class":1,"example_id":"a","flagged":0,"percentile":3.0,"split":"t","streak":0}'


def test_a_history_row_with_a_streak_beyond_any_schedule_is_refused_not_an_overflow(tmp_path):
  # The refusal is a tally, so the drift says why; no row with it reaches the match,
  # where a streak is an int32.
  row = json.loads(GOOD_ROW)
  row.update(flagged=1, streak=2 ** 63 - 1)
  path = _shard_of(tmp_path, [GOOD_ROW, json.dumps(row).encode()])
  out = list(drift_lib._ReadHistory(4).process(path))
  assert [tag for tag, _ in out] == ['tally', 'rows']
  (where, why), = [value for tag, value in out if tag == 'tally']
  assert where == f'{path} line 2'
  assert why.startswith('has streak=9223372036854775807, more audits in a row than any '
                        'schedule makes (at most 2,147,483,647)')
  summary = {'history_refused': {'count': 1, 'first': f'{where}: {why}'}}
  drift = drift_lib.class_drift(summary, drift_lib.Baseline({'uri': 'b'}, None, (), None))
  assert drift.unavailable.startswith(
      f'1 line(s) of the baseline history were refused, the first: {path} line 2: has '
      'streak=9223372036854775807')


def test_a_history_line_nested_too_deep_is_refused(tmp_path):
  path = _shard_of(tmp_path, [b'[' * 100_000 + b']' * 100_000, GOOD_ROW])
  refused, row = list(drift_lib.read_history_shard(path))
  assert refused == drift_lib.Refused(f'{path} line 1', 'nests deeper than a history row, '
                                                        'a flat object, can')
  assert row[0] == 'a'


def test_one_huge_history_line_is_refused_without_being_held(tmp_path):
  # 64 MB of one line gzip to 64 KB; the reader holds at most MAX_HISTORY_LINE_BYTES.
  path = str(tmp_path / vocab.history_shard_name(0, 1))
  with gzip.open(path, 'wb') as f:
    f.write(GOOD_ROW + b'\n{"example_id": "')
    for _ in range(64):
      f.write(b'a' * (1 << 20))
    f.write(b'"}\n' + GOOD_ROW + b'\n')
  assert os.path.getsize(path) < 1 << 20
  import tracemalloc  # pylint: disable=g-import-not-at-top
  tracemalloc.start()
  try:
    items = list(drift_lib.read_history_shard(path))
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 8 << 20, peak
  assert items[0][0] == 'a'
  assert items[1:] == [drift_lib.Refused(f'{path} line 2', (
      'is longer than 1,048,576 bytes, which no history row is; the rest of the shard was '
      'not read'))]


def test_a_history_shard_that_is_no_file_is_refused_where_it_is_read(tmp_path):
  fifo = str(tmp_path / vocab.history_shard_name(0, 1))
  os.mkfifo(fifo)
  items = _within(30, lambda: list(drift_lib.read_history_shard(fifo)), str(tmp_path))
  assert items == [drift_lib.Refused(fifo, f'{fifo} is not a regular file (a FIFO, socket '
                                           'or device is never read)')]


def test_score_names_a_hostile_baseline_and_refuses_a_missing_one(runs, tmp_path):
  from click.testing import CliRunner  # pylint: disable=g-import-not-at-top
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  bad = _copy_report(runs['r1'][1], str(tmp_path / 'baseline'))
  _flag_more_than_scored(bad)
  args = ['score', '--model-run', runs['model_run'], '--examples', runs['data2']['eval'],
          '--inspection-budget', '5', '--rank-by', 'vog']
  result = CliRunner().invoke(cli, args + ['--output', str(tmp_path / 'a'),
                                           '--baseline', bad])
  assert result.exit_code == 0, result.output
  assert (f'Drift unavailable: the baseline report {bad} has counts that cannot be true: '
          'counts flags 1,000,000,') in result.output
  typo = str(tmp_path / 'basline')
  result = CliRunner().invoke(cli, args + ['--output', str(tmp_path / 'b'),
                                           '--baseline', typo])
  assert result.exit_code == 2, result.output
  assert result.stderr.splitlines() == [
      f'error: --baseline {typo} does not exist; give the difficulty_report folder of an '
      'earlier audit, e.g. OUT/difficulty_report']
  assert not os.path.exists(tmp_path / 'b')
