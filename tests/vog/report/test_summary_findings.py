"""summary.json's findings (the auto ranking's evidence, the flag kinds, the slices) and a
flagged row's kind: written through their types, checked on read, optional for reports
written before them."""

import copy
import json

import pytest

from components.vog.report import report_rows
from components.vog.report import summary_model
from components.vog.report.json_checks import ReportFormatError

EVIDENCE = {'examples': 225, 'fitted': 183, 'non_finite': 0, 'fitted_share': 0.813333,
            'memorised': False}
SLICE_ROW = {'feature': 'source', 'kind': 'categorical', 'value': 'scanner-b', 'range': None,
             'classes': None, 'count': 30, 'flagged': 20, 'hard': 22,
             'share_in_split': 0.13, 'share_flagged': 0.8, 'share_hard': 0.4,
             'group': 'flagged', 'lift': 6.1, 'p_value': 1e-9, 'p_adjusted': 1e-7,
             'approximate': False, 'rank': 1}
PAIR_ROW = dict(SLICE_ROW, feature='label -> predicted', kind='label_pair', value='2 -> 5',
                classes=[2, 5], rank=2)
OLD = {
    'format_version': 4, 'created_at': '2026-12-01T12:00:00Z', 'ranked_by': 'confidence',
    'settings': {'label_key': 'label', 'rank_by': 'auto'},
    'checkpoints': [{'path': '/run/a.keras', 'epoch': 1, 'step': 10},
                    {'path': '/run/b.keras', 'epoch': 2, 'step': 20}],
    'counts': {'seen': 10, 'scored': 10, 'quarantined': 0, 'flagged': 3},
    'splits': {'train': {'seen': 10, 'scored': 10, 'quarantined': 0, 'flagged': 3}},
}
NEW = dict(
    OLD,
    auto_rank={'signal': 'confidence', 'chosen': 'confidence', 'rule': 'not memorised',
               'memorised': False, 'memorised_fit_share': 0.99, 'min_examples': 100,
               'evidence': EVIDENCE, 'split': 'train', 'sampled': 225, 'examples': 225,
               'fitted_share': 0.813333, 'reason': 'not memorised; 225 examples sampled'},
    memorisation={'split': 'train', 'sampled': 225, 'files': 1, 'evidence': EVIDENCE,
                  'memorised': False, 'note': '225 examples sampled'},
    flag_kind_rule={'rule': 'margin_mean', 'memorised': False, 'reason': 'margin_mean'},
    flag_kinds={'train': {'wrong label': 2, 'atypical': 0, 'unclear': 1}},
    slices={'file': 'slices.json', 'top': {'train': [SLICE_ROW, PAIR_ROW]}},
)


def test_a_summary_with_the_findings_reads_typed_and_writes_back_the_same():
  summary = summary_model.parse_summary(copy.deepcopy(NEW))
  assert summary.auto_rank.chosen == 'confidence'
  assert summary.auto_rank.evidence == summary_model.EvidenceCounts(225, 183, 0, 0.813333,
                                                                    False)
  assert summary.memorisation.memorised is False
  assert summary.flag_kind_rule == summary_model.FlagKindRule('margin_mean', False,
                                                              'margin_mean')
  assert summary.flag_kinds == NEW['flag_kinds']
  assert summary.slices.top['train'][1]['classes'] == [2, 5]
  written = json.loads(json.dumps(summary.to_json()))
  for key in ('auto_rank', 'memorisation', 'flag_kind_rule', 'flag_kinds', 'slices'):
    assert written[key] == NEW[key], key


def test_a_summary_written_before_the_findings_still_loads():
  summary = summary_model.parse_summary(copy.deepcopy(OLD))
  assert (summary.auto_rank, summary.memorisation, summary.flag_kind_rule,
          summary.flag_kinds, summary.slices) == (None, None, None, None, None)
  written = summary.to_json()
  assert 'slices' not in written and 'flag_kinds' not in written
  assert 'flag_kind_rule' not in written
  assert written['auto_rank'] is None and written['memorisation'] is None
  assert summary_model.parse_summary(written).counts == OLD['counts']


def _with(path, value):
  raw = copy.deepcopy(NEW)
  target = raw
  for key in path[:-1]:
    target = target[key]
  target[path[-1]] = value
  return raw


@pytest.mark.parametrize('path, value, message', [
    (('auto_rank',), 'el2n', "'auto_rank' is a string ('el2n'); expected an object"),
    (('auto_rank', 'chosen'), 'el2n', "has 'signal' 'confidence' and 'chosen' 'el2n'"),
    (('auto_rank', 'signal'), 'magic', "has 'signal' 'magic'"),
    (('auto_rank', 'memorised'), 'yes', "'memorised' is a string ('yes'); expected a boolean"),
    (('auto_rank', 'fitted_share'), 1.5, "has 'fitted_share' 1.5; expected a number from 0"),
    (('auto_rank', 'examples'), -3, "has 'examples' -3; expected a count >= 0"),
    (('auto_rank', 'evidence', 'fitted'), 300, 'no more fitted than examples'),
    (('auto_rank', 'sampled'), '225', "'sampled' is a string ('225'); expected an integer"),
    (('memorisation', 'memorised'), 1, "'memorised' is an integer (1); expected a boolean"),
    (('memorisation', 'evidence'), [], "the evidence is a list; expected an object"),
    (('flag_kind_rule', 'rule'), 'vibes', "has 'rule' 'vibes'; expected one of margin_mean"),
    (('flag_kinds', 'train'), {'wrong label': 2}, "has flag_kinds['train']"),
    (('flag_kinds', 'train', 'unclear'), -1, "has flag_kinds['train']"),
    (('flag_kinds', 'train', 'unclear'), 1.0, "flag_kinds['train']['unclear'] is a number"),
    (('slices', 'file'), '../../etc/passwd', "has 'file' '../../etc/passwd'; expected "
                                            "'slices.json'"),
    (('slices', 'top', 'train'), [SLICE_ROW] * 6, 'has 6 rows'),
    (('slices', 'top', 'train', 0, 'kind'), 'magic', "has 'kind' 'magic'"),
    (('slices', 'top', 'train', 0, 'lift'), 'high', "'lift' is a string ('high')"),
    (('slices', 'top', 'train', 0, 'share_flagged'), 2.0, "has 'share_flagged' 2.0"),
    (('slices', 'top', 'train', 0, 'approximate'), 'no', "'approximate' is a string"),
    (('slices', 'top', 'train', 1, 'classes'), [2], "has 'classes' a list; expected"),
    (('slices', 'top', 'train', 0, 'count'), -1, "has 'count' -1; expected a count >= 0"),
])
def test_hostile_findings_are_refused_naming_the_key(path, value, message):
  with pytest.raises(ReportFormatError, match=None) as refused:
    summary_model.parse_summary(_with(path, value), 'r/summary.json')
  assert str(refused.value).startswith('r/summary.json'), str(refused.value)
  assert message in str(refused.value), str(refused.value)


def test_a_flagged_row_keeps_its_kind_and_refuses_an_unknown_one():
  line = {'rank': 1, 'example_id': 'a', 'split': 't', 'label': 1, 'predicted_class': 2,
          'target_class': 1, 'vog_score': 1.0, 'vog_raw': 1.0, 'vog_percentile': 99.0,
          'vog_bucket': 'hard'}
  old = report_rows.flagged_row_from_json(line)
  assert old.kind is None and 'kind' not in report_rows.flagged_row_to_json(old)
  row = report_rows.flagged_row_from_json(dict(line, kind='wrong label'))
  assert report_rows.flagged_row_to_json(row)['kind'] == 'wrong label'
  with pytest.raises(ReportFormatError, match="has 'kind' 'mislabelled'; expected one of "
                                              'wrong label, atypical, unclear'):
    report_rows.flagged_row_from_json(dict(line, kind='mislabelled'), 'flagged.jsonl line 1')
  with pytest.raises(ReportFormatError, match="'kind' is an integer"):
    report_rows.flagged_row_from_json(dict(line, kind=3), 'flagged.jsonl line 1')
