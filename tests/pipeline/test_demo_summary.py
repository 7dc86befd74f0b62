"""What the demo prints of the flags' kinds and of what the flagged examples have in common,
from summaries written by hand as the demo reads them (the run itself: test_demo.py)."""

from components.vog.compute import slice_stats as ss
from components.vog.report import report_format
from pipeline import demo_summary
from pipeline.reference import tabular_data
from pipeline.reference import text_data

DIGITS = tuple(str(d) for d in range(10))


def _split(candidates, sizes, features='examined'):
  rows, tests = ss.slice_rows(candidates, ss.GroupSizes(*sizes))
  return {'examples': sizes[0], 'flagged': sizes[1], 'hard': sizes[2], 'features': features,
          'tests': tests, 'rows': rows}


def _pair(label, predicted, count, flagged):
  return ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, f'{label} -> {predicted}', count,
                        flagged, flagged, False, classes=(label, predicted))


def _summary(slices, kinds=None, class_names=DIGITS):
  return demo_summary.DemoSummary(
      run_id='run-1', node_states={}, splits={}, flagged=50, flipped_in_flagged=37,
      flipped=50, scored=500, accuracy={}, evaluator_blessed=True, evaluator_failures=[],
      review={'review_decision': 'approved', 'reviewer': 'auto_policy',
              'review_comment': '', 'review_backend': 'auto', 'review_reason': ''},
      blessed=True, pushed_to=None, report_html='/r/report.html', drift=None,
      slices=None if slices is None else report_format.parse_slices(slices),
      flag_kinds=kinds, class_names=class_names)


def _after(lines, start):
  return lines[lines.index(start) + 1:]


def test_the_digits_demo_prints_its_most_confused_class_pairs_and_the_kinds():
  slices = {'format_version': 1, 'settings': {}, 'splits': {
      'train': _split([_pair(3, 5, 12, 10), _pair(7, 1, 10, 8), _pair(9, 4, 9, 6),
                       _pair(2, 8, 9, 5)], (375, 38, 38),
                      'not examined: the split is not copied'),
      'eval': _split([_pair(1, 7, 5, 5)], (125, 12, 12))}}
  lines = demo_summary.format_summary(_summary(
      slices, {'wrong label': 41, 'atypical': 2, 'unclear': 7}))
  assert lines[lines.index('flags: 41 wrong label, 2 atypical, 7 unclear') - 1].startswith(
      'flipped labels in the flagged set: 37 of 50 flagged')
  assert _after(lines, 'what the flagged examples have in common:')[:3] == [
      '  train: most confused class pairs: 3 -> 5 (10 flagged), 7 -> 1 (8 flagged), '
      '9 -> 4 (6 flagged)',
      '  train: features not examined: the split is not copied',
      '  eval: most confused class pairs: 1 -> 7 (5 flagged)']


def test_the_tabular_demo_prints_its_planted_slice_a_range_and_class_names():
  feature, value = tabular_data.PLANTED
  slices = {'format_version': 1, 'settings': {}, 'splits': {'eval': _split(
      [ss.SliceCounts(feature, ss.CATEGORICAL, value, 80, 30, 12, False),
       ss.SliceCounts('income_k', ss.NUMERIC, '>= 80', 60, 12, 20, True, 80.0, None),
       _pair(0, 2, 10, 9)], (600, 60, 60))}}
  lines = demo_summary.format_summary(_summary(slices, class_names=tabular_data.CLASS_NAMES))
  shared = _after(lines, 'what the flagged examples have in common:')
  assert shared[0] == ('  eval: channel=partner, 30 of 60 flagged (50.0% against 13.3% of '
                       'the split, 3.8x)')
  assert shared[1] == ('  eval: income_k >= 80, 20 of 60 hard (33.3% against 10.0% of the '
                       'split, 3.3x)')
  assert shared[2] == '  eval: most confused class pairs: saver -> premium (9 flagged)'
  assert not [line for line in lines if line.startswith('flags:')]  # no kinds: no line


def test_the_text_demo_prints_its_planted_token():
  slices = {'format_version': 1, 'settings': {}, 'splits': {'eval': _split(
      [ss.SliceCounts('text', ss.TOKEN, text_data.PLANTED_TOKEN, 50, 25, 10, False)],
      (400, 40, 40))}}
  lines = demo_summary.format_summary(_summary(slices, class_names=text_data.CLASS_NAMES))
  assert _after(lines, 'what the flagged examples have in common:')[0] == (
      '  eval: "news" in text, 25 of 40 flagged (62.5% against 12.5% of the split, 5.0x)')


def test_a_split_where_nothing_stands_out_and_an_older_report():
  slices = {'format_version': 1, 'settings': {}, 'splits': {'eval': _split([], (10, 1, 1))}}
  lines = demo_summary.format_summary(_summary(slices))
  assert _after(lines, 'what the flagged examples have in common:')[0] == (
      '  eval: nothing stands out among the flagged or hard examples')
  older = demo_summary.format_summary(_summary(None))
  assert 'what the flagged examples have in common:' not in older
  assert not [line for line in older if line.startswith('flags:')]


def test_text_from_the_slices_file_cannot_rewrite_the_terminal():
  slices = {'format_version': 1, 'settings': {}, 'splits': {'ev\x1b[2Jal': _split(
      [ss.SliceCounts('a\rb', ss.CATEGORICAL, 'x\x1b]0;owned\x07' + 'y' * 500, 80, 30, 12,
                      False)], (600, 60, 60))}}
  line = _after(demo_summary.format_summary(_summary(slices)),
                'what the flagged examples have in common:')[0]
  assert '\x1b' not in line and '\r' not in line and '\x07' not in line
  assert line.startswith('  ev [2Jal: a b=x ]0;owned yyy')  # control characters: spaces
  assert 'y' * 40 not in line and '…, 30 of 60 flagged' in line
