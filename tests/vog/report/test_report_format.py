"""The DifficultyReport loader, on report folders written by hand as the audit writes them."""

import base64
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from components.vog.report import report_format
from components.vog.report import report_rows
from components.vog.report import summary_model

from components.vog import vocabulary as vocab
from components.vog.report.json_checks import ReportFormatError

SUMMARY = {
    'format_version': 2, 'created_at': '2026-11-24T12:00:00Z',
    'settings': {'label_key': 'label', 'inspection_budget': 3, 'splits': ['train', 'eval']},
    'checkpoints': [{'path': '/run/ckpt-epoch003.keras', 'epoch': 3, 'step': 96},
                    {'path': '/run/ckpt-epoch006.keras', 'epoch': 6, 'step': 192}],
    'num_classes': 10,
    'model_inputs': [{'name': 'pixels', 'shape': [8, 8], 'dtype': 'float32'}],
    'counts': {'seen': 20, 'scored': 17, 'quarantined': 3, 'flagged': 3},
    'splits': {'train': {'seen': 12, 'scored': 10, 'quarantined': 2, 'flagged': 2},
               'eval': {'seen': 8, 'scored': 7, 'quarantined': 1, 'flagged': 1}},
    'quarantine_kinds': {'train': {'missing label': 2}, 'eval': {'wrong shape': 1}},
    'per_class': [{'split': 'train', 'class': 8, 'count': 10, 'flagged': 2,
                   'flagged_share': 0.2, 'vog_raw_mean': 0.01, 'vog_raw_std': 0.003,
                   'error_rate': None}],
    'error_rate_by_decile': [{'split': 'train', 'decile': 10, 'count': 4, 'errors': 1,
                              'error_rate': 0.25}],
    'baseline': {'artifact_id': 7}, 'drift': None, 'beam_counters': {'batches': 2},
}
FLAGGED = [
    {'rank': 1, 'example_id': 'digit-0412', 'split': 'train', 'label': 8,
     'predicted_class': 1, 'target_class': 8, 'vog_score': 4.2, 'vog_raw': 0.03,
     'vog_percentile': 99.9, 'vog_bucket': 'hard'},
    {'rank': 2, 'example_id': 'digit-0099', 'split': 'eval', 'label': None,
     'predicted_class': 5, 'target_class': 5, 'vog_score': 3, 'vog_raw': 0.028,
     'vog_percentile': 99.8, 'vog_bucket': 'hard'},
    {'rank': 4, 'example_id': 'digit-0007', 'split': 'train', 'label': 3,
     'predicted_class': 3, 'target_class': 3, 'vog_score': 2.5, 'vog_raw': 0.02,
     'vog_percentile': 95.0, 'vog_bucket': 'hard'},
]
RECORDS = [tf.train.Example(features=tf.train.Features(feature={
    'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[r['example_id'].encode()]))
})).SerializeToString() for r in FLAGGED]


def _quarantine_line(split, example_id, kind, record=b'\x00bad'):
  return {'split': split, 'example_id': example_id, 'kind': kind,
          'reason': f'{kind}: details', 'record_base64': base64.b64encode(record).decode()}


QUARANTINE = [  # two shards, the way Beam writes them
    [_quarantine_line('train', 'q-1', 'missing label'),
     _quarantine_line('train', 'q-2', 'missing label')],
    [_quarantine_line('eval', 'q-3', 'wrong shape', b'\xff\xfe')],
]


def _write_lines(path, lines):
  with open(path, 'w') as f:
    for line in lines:
      f.write((line if isinstance(line, str) else json.dumps(line)) + '\n')


def write_folder(folder, summary=None, flagged=None, records=None, quarantine=None):
  """A report folder as the audit writes it; arguments replace the good parts."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, 'summary.json'), 'w') as f:
    f.write(summary if isinstance(summary, str) else json.dumps(summary or SUMMARY))
  _write_lines(os.path.join(folder, 'flagged.jsonl'), FLAGGED if flagged is None else flagged)
  with tf.io.TFRecordWriter(os.path.join(folder, 'flagged_examples.tfrecord')) as writer:
    for record in RECORDS if records is None else records:
      writer.write(record)
  shards = QUARANTINE if quarantine is None else quarantine
  for i, lines in enumerate(shards):
    _write_lines(os.path.join(folder, f'quarantine-{i:05d}-of-{len(shards):05d}.jsonl'), lines)
  with open(os.path.join(folder, 'report.html'), 'w') as f:
    f.write('<html></html>')
  return str(folder)


def test_a_good_folder_loads_typed(tmp_path):
  report = report_format.load_report(write_folder(tmp_path / 'r'))
  s = report.summary
  assert report.uri == str(tmp_path / 'r')
  assert s.format_version == 2 and s.created_at == '2026-11-24T12:00:00Z'
  assert s.counts == {'seen': 20, 'scored': 17, 'quarantined': 3, 'flagged': 3}
  assert s.splits['eval'] == {'seen': 8, 'scored': 7, 'quarantined': 1, 'flagged': 1}
  assert s.per_class == (report_rows.ClassRow('train', 8, 10, 2, 0.2, 0.01, 0.003, None),)
  assert s.per_class[0].to_json() == SUMMARY['per_class'][0]
  assert s.error_rate_by_decile[0].error_rate == 0.25
  assert s.quarantine_kinds == SUMMARY['quarantine_kinds']
  assert s.settings['inspection_budget'] == 3
  assert s.checkpoints[1] == summary_model.Checkpoint('/run/ckpt-epoch006.keras', 6, 192)
  assert s.num_classes == 10
  assert s.model_inputs == (summary_model.ModelInput('pixels', (8, 8), 'float32'),)
  assert s.baseline == {'artifact_id': 7} and s.drift is None
  assert s.raw['beam_counters'] == {'batches': 2}
  assert [r.rank for r in report.flagged] == [1, 2, 4]
  assert report.flagged[1].label is None and report.flagged[1].vog_score == 3.0
  assert isinstance(report.flagged[1].vog_score, float)
  assert report.flagged[0] == report_rows.flagged_row_from_json(FLAGGED[0])
  assert report.flagged_examples() == RECORDS
  assert report.page_path == os.path.join(report.uri, 'report.html')
  assert report.montage_path is None
  open(os.path.join(report.uri, 'flagged.png'), 'wb').close()
  assert report.montage_path == os.path.join(report.uri, 'flagged.png')


def test_quarantine_rows_span_the_shards_in_order_and_stop_at_the_limit(tmp_path):
  report = report_format.load_report(write_folder(tmp_path))
  rows = list(report.quarantine_rows())
  assert [(r.split, r.example_id, r.kind) for r in rows] == [
      ('train', 'q-1', 'missing label'), ('train', 'q-2', 'missing label'),
      ('eval', 'q-3', 'wrong shape')]
  assert rows[2].record == b'\xff\xfe' and rows[2].reason == 'wrong shape: details'
  assert [r.example_id for r in report.quarantine_rows(limit=2)] == ['q-1', 'q-2']
  assert list(report.quarantine_rows(limit=0)) == []
  with pytest.raises(ValueError, match='limit=-1'):
    report.quarantine_rows(limit=-1)


def test_loading_reads_neither_the_quarantine_nor_the_example_bytes(tmp_path):
  folder = write_folder(tmp_path, quarantine=[['not json']], records=[b'x'])
  with open(os.path.join(folder, 'flagged_examples.tfrecord'), 'r+b') as f:
    f.truncate(5)
  report = report_format.load_report(folder)  # the broken files are not touched
  assert len(report.flagged) == 3
  with pytest.raises(ReportFormatError):
    report.flagged_examples()
  with pytest.raises(ReportFormatError):
    list(report.quarantine_rows())


def test_nothing_quarantined_needs_no_shard(tmp_path):
  summary = dict(SUMMARY, counts=dict(SUMMARY['counts'], quarantined=0))
  report = report_format.load_report(write_folder(tmp_path, summary=summary, quarantine=[]))
  assert report.quarantine_files() == [] and list(report.quarantine_rows()) == []


def test_a_format_version_1_folder_reads_its_single_quarantine_file(tmp_path):
  folder = write_folder(tmp_path, summary=dict(SUMMARY, format_version=1), quarantine=[])
  _write_lines(os.path.join(folder, 'quarantine.jsonl'), QUARANTINE[1])
  assert [r.example_id for r in report_format.load_report(folder).quarantine_rows()] == ['q-3']


def test_writer_helpers_round_trip():
  row = report_rows.flagged_row_from_json(FLAGGED[1])
  assert report_rows.flagged_row_to_json(row) == dict(FLAGGED[1], vog_score=3.0)
  with_bytes = report_rows.flagged_row_to_json(row, record=b'\x01\x02')
  assert report_rows.record_from_json(with_bytes, 'work file') == b'\x01\x02'
  assert report_rows.flagged_row_from_json(with_bytes) == row
  q = report_rows.QuarantineRow('eval', 'q-9', 'not an example', 'why', b'\x00\x01')
  line = report_rows.quarantine_row_to_json(q)
  assert report_rows.quarantine_row_from_json(json.loads(json.dumps(line))) == q
  assert vocab.quarantine_shard_name(3, 8) == 'quarantine-00003-of-00008.jsonl'


def test_the_writer_helpers_turn_numpy_scalars_into_json():
  row = report_rows.FlaggedRow(np.int64(1), 'id', 'train', None, np.int64(2), np.int64(2),
                               np.float32(1.5), np.float64(0.25), np.float32(99.5), 'hard')
  line = json.loads(json.dumps(report_rows.flagged_row_to_json(row)))
  assert line['rank'] == 1 and line['vog_score'] == 1.5 and line['label'] is None
  assert report_rows.flagged_row_from_json(line) == row


def _summary_with(**changes):
  return dict(SUMMARY, **changes)


def _without(mapping, key):
  return {k: v for k, v in mapping.items() if k != key}


LOAD_ERRORS = {
    # case: (write_folder arguments, file named, the words that say what is wrong)
    'summary is not JSON': (dict(summary='{"counts": '), 'summary.json', 'not valid JSON'),
    'summary is a list': (dict(summary='[1, 2]'), 'summary.json', 'is a list; expected an object'),
    'count is a string': (dict(summary=_summary_with(counts=dict(SUMMARY['counts'], seen='20'))),
                          'summary.json', "counts: 'seen' is a string ('20'); expected an integer"),
    'count is missing': (dict(summary=_summary_with(counts=_without(SUMMARY['counts'], 'flagged'))),
                         'summary.json', "counts: has no 'flagged'"),
    'split is a number': (dict(summary=_summary_with(splits={'train': 3})), 'summary.json',
                          "splits['train'] is an integer (3); expected an object"),
    'no settings': (dict(summary=_without(SUMMARY, 'settings')), 'summary.json',
                    "has no 'settings'"),
    'per_class row lacks class': (
        dict(summary=_summary_with(per_class=[_without(SUMMARY['per_class'][0], 'class')])),
        'summary.json', "per_class[0]: has no 'class'"),
    'kinds hold a string': (dict(summary=_summary_with(quarantine_kinds={'train': {'x': '2'}})),
                            'summary.json', "quarantine_kinds['train']['x'] is a string"),
    'shape is text': (dict(summary=_summary_with(model_inputs=[
        {'name': 'pixels', 'shape': '8x8', 'dtype': 'float32'}])), 'summary.json',
                      "model_inputs[0]: 'shape' is a string"),
    'newer format': (dict(summary=_summary_with(format_version=5)), 'summary.json',
                     'format_version 5'),
    'flagged line is not JSON': (dict(flagged=[FLAGGED[0], '{"rank": 2,']),
                                 'flagged.jsonl line 2', 'not valid JSON'),
    'flagged line is a list': (dict(flagged=[FLAGGED[0], '', '[1, 2]']),
                               'flagged.jsonl line 3', 'is a list; expected an object'),
    'flagged line lacks rank': (dict(flagged=[_without(FLAGGED[0], 'rank')]),
                                'flagged.jsonl line 1', "has no 'rank'"),
    'label is text': (dict(flagged=[dict(FLAGGED[0], label='8')]), 'flagged.jsonl line 1',
                      "'label' is a string ('8'); expected an integer"),
    'rank is a boolean': (dict(flagged=[dict(FLAGGED[0], rank=True)]), 'flagged.jsonl line 1',
                          "'rank' is a boolean"),
    'ranks out of order': (dict(flagged=[FLAGGED[1], FLAGGED[0]]), 'flagged.jsonl line 2',
                           'rank 1 after rank 2'),
}


@pytest.mark.parametrize('case', sorted(LOAD_ERRORS))
def test_a_broken_summary_or_flagged_file_is_refused_naming_it(tmp_path, case):
  arguments, where, what = LOAD_ERRORS[case]
  folder = write_folder(tmp_path, **arguments)
  with pytest.raises(ReportFormatError) as refused:
    report_format.load_report(folder)
  message = str(refused.value)
  assert os.path.join(folder, where) in message and what in message
  assert ' - ' in message  # then what to do


@pytest.mark.parametrize('name', ['summary.json', 'flagged.jsonl'])
def test_a_missing_file_is_refused_naming_it(tmp_path, name):
  folder = write_folder(tmp_path)
  os.remove(os.path.join(folder, name))
  with pytest.raises(ReportFormatError, match=f'{name}: does not exist'):
    report_format.load_report(folder)


def _corrupt(path):
  data = bytearray(open(path, 'rb').read())
  data[20] ^= 0xFF  # inside the first record's bytes: its CRC no longer matches
  open(path, 'wb').write(bytes(data))


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 7)


EXAMPLE_ERRORS = {
    'missing': (os.remove, 'does not exist'),
    'truncated': (_truncate, 'is truncated or corrupt (truncated record'),
    'corrupt': (_corrupt, 'is truncated or corrupt (corrupted record'),
}


@pytest.mark.parametrize('case', sorted(EXAMPLE_ERRORS))
def test_broken_flagged_examples_are_refused_naming_the_file(tmp_path, case):
  damage, what = EXAMPLE_ERRORS[case]
  report = report_format.load_report(write_folder(tmp_path))
  path = os.path.join(report.uri, 'flagged_examples.tfrecord')
  damage(path)
  with pytest.raises(ReportFormatError, match=re.escape(f'flagged_examples.tfrecord: {what}')):
    report.flagged_examples()


def test_flagged_examples_must_match_the_flagged_rows_in_count(tmp_path):
  report = report_format.load_report(write_folder(tmp_path, records=RECORDS[:2]))
  with pytest.raises(ReportFormatError, match='holds 2 examples but flagged.jsonl lists 3'):
    report.flagged_examples()


QUARANTINE_ERRORS = {
    'line is not JSON': ([QUARANTINE[0], ['{"split": ']], 'quarantine-00001-of-00002.jsonl line 1',
                         'is not valid JSON'),
    'line is a string': ([['"oops"']], 'quarantine-00000-of-00001.jsonl line 1',
                         'is a string'),
    'line lacks kind': ([[_without(QUARANTINE[0][0], 'kind')]],
                        'quarantine-00000-of-00001.jsonl line 1', "has no 'kind'"),
    'bad base64': ([[QUARANTINE[0][0], dict(QUARANTINE[0][1], record_base64='%%%')]],
                   'quarantine-00000-of-00001.jsonl line 2',
                   'has record_base64 that is not valid base64'),
    'no record': ([[_without(QUARANTINE[0][0], 'record_base64')]],
                  'quarantine-00000-of-00001.jsonl line 1', "has no 'record_base64'"),
    'no shard though counted': ([], '', 'has no quarantine-*-of-*.jsonl though summary.json '
                                        'counts 3 quarantined'),
}


@pytest.mark.parametrize('case', sorted(QUARANTINE_ERRORS))
def test_a_bad_quarantine_shard_is_refused_naming_shard_and_line(tmp_path, case):
  shards, where, what = QUARANTINE_ERRORS[case]
  report = report_format.load_report(write_folder(tmp_path, quarantine=shards))
  with pytest.raises(ReportFormatError) as refused:
    list(report.quarantine_rows())
  message = str(refused.value)
  assert f'{os.path.join(report.uri, where).rstrip("/")}: {what}' in message


def test_an_incomplete_or_mixed_shard_set_is_refused(tmp_path):
  folder = write_folder(tmp_path)
  os.remove(os.path.join(folder, 'quarantine-00000-of-00002.jsonl'))
  report = report_format.load_report(folder)
  with pytest.raises(ReportFormatError, match=re.escape(
      'lacks quarantine shard(s) quarantine-00000-of-00002.jsonl')):
    report.quarantine_files()
  _write_lines(os.path.join(folder, 'quarantine-00000-of-00003.jsonl'), [])
  with pytest.raises(ReportFormatError, match='mixes quarantine shards'):
    report.quarantine_files()


@pytest.mark.parametrize('extra, problem', [
    ({'hard': 11}, "'hard' 11; expected 0 to the class's count 10"),
    ({'hard': -1}, "'hard' -1"),
    ({'decile_counts': [1] * 10 + [0]}, 'expected 10 counts'),
    ({'decile_counts': [2] * 10}, "adding up to the class's count 10"),
])
def test_a_class_row_whose_counts_contradict_each_other_is_refused(extra, problem):
  # What drift compares a later audit with: a baseline summary on disk is outside input.
  row = dict(SUMMARY['per_class'][0], **extra)
  with pytest.raises(ReportFormatError, match=re.escape(problem)):
    summary_model.parse_summary(dict(SUMMARY, per_class=[row]))


def test_history_lines_of_a_file_are_the_lines_one_at_a_time():
  # Ids with quotes, backslashes, control characters, non-ASCII and a percent sign,
  # a split name with a percent sign, and percentiles that are not finite: the batch
  # formatter writes what the one-line formatter writes, which parses back.
  ids = ['plain', 'quote"d', 'back\\slash', 'tab\there', 'nl\n', 'ünï', '😀', '50%', '']
  percentiles = [0.0, 100.0, 1 / 3, 99.99999999999999, 5e-324, float('nan'),
                 float('inf'), 12.5, 42.0]
  classes = list(range(len(ids)))
  flagged = [i % 2 for i in range(len(ids))]
  for split in ('train', 'ev%sal', 'spé'):
    lines = report_rows.history_lines(ids, split, classes, flagged, flagged, percentiles)
    assert lines == [report_rows.history_line(i, split, c, f, f, p)
                     for i, c, f, p in zip(ids, classes, flagged, percentiles)]
    assert [json.loads(line)['example_id'] for line in lines] == ids


def _slices():
  """slices.json's content as the audit writes it (compute/slice_stats.slice_rows)."""
  from components.vog.compute import slice_stats as ss  # pylint: disable=g-import-not-at-top
  rows, tests = ss.slice_rows(
      [ss.SliceCounts('region', ss.CATEGORICAL, 'r3', 130, 42, 20, False),
       ss.SliceCounts('income_k', ss.NUMERIC, '>= 7.5', 100, 30, 12, True, 7.5, None),
       ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, '3 -> 5', 25, 20, 10, False,
                      classes=(3, 5))], ss.GroupSizes(1000, 200, 100))
  return {'format_version': 1, 'settings': {'alpha': 0.05},
          'splits': {'train': {'examples': 1000, 'flagged': 200, 'hard': 100,
                               'features': 'examined', 'tests': tests, 'rows': rows},
                     'eval': {'examples': 7, 'flagged': 1, 'hard': 1, 'tests': 0, 'rows': [],
                              'features': 'not examined: the split is not copied'}}}


def _write_slices(folder, content):
  with open(os.path.join(folder, 'slices.json'), 'w') as f:
    f.write(content if isinstance(content, str) else json.dumps(content))


def test_slices_load_typed_and_an_older_report_has_none(tmp_path):
  older = report_format.load_report(write_folder(tmp_path / 'older'))
  assert older.slices is None
  folder = write_folder(tmp_path / 'r')
  _write_slices(folder, _slices())
  slices = report_format.load_report(folder).slices
  assert slices.content == _slices()
  train, eval_ = slices.splits['train'], slices.splits['eval']
  assert (train.examples, train.flagged, train.hard, train.examined) == (1000, 200, 100, True)
  assert not eval_.examined and eval_.rows == ()
  pair, region, income = train.rows
  assert (pair.rank, pair.kind, pair.classes, pair.group_count) == (1, 'label_pair', (3, 5), 20)
  assert (region.feature, region.value, region.count, region.group) == ('region', 'r3', 130,
                                                                       'flagged')
  assert region.lift == pytest.approx(0.21 / 0.13) and not region.approximate
  assert income.range == (7.5, None) and income.approximate
  assert slices.top('train', 1) == (pair,) and slices.top('test') == ()


def _slices_with(**row_changes):
  content = _slices()
  content['splits']['train']['rows'][1].update(row_changes)
  return content


SLICES_ERRORS = {
    'not JSON': ('{"format_version": 1,', 'is not valid JSON'),
    'a list': ('[1, 2]', 'is a list; expected an object'),
    'newer format': (dict(_slices(), format_version=2), 'has format_version 2'),
    'kind unknown': (_slices_with(kind='<script>'), "rows[1]: has 'kind' '<script>'"),
    'count is text': (_slices_with(count='130'), "rows[1]: 'count' is a string ('130')"),
    'negative count': (_slices_with(flagged=-1), "rows[1]: has 'flagged' -1"),
    'share above 1': (_slices_with(share_flagged=3.0), "rows[1]: has 'share_flagged' 3.0"),
    'p-value NaN': (_slices_with(p_adjusted=float('nan')), "rows[1]: has 'p_adjusted' nan"),
    'ranks out of order': (_slices_with(rank=1), 'rows[1]: has rank 1 after rank 1'),
    'split without rows': ({'format_version': 1, 'splits': {'train': {'examples': 1}}},
                           "splits['train']: has no 'flagged'"),
    'more flagged than examples': (
        {'format_version': 1, 'splits': {'t': {'examples': 1, 'flagged': 5, 'hard': 0,
                                               'features': 'examined', 'rows': []}}},
        'has examples 1, flagged 5 and hard 0'),
    'nested deep': ('{"format_version": 1, "splits": {"t": ' + '[' * 100000 + ']' * 100000
                    + '}}', 'nests deeper than 8 levels'),
}


@pytest.mark.parametrize('case', sorted(SLICES_ERRORS))
def test_a_hostile_slices_file_is_refused_naming_it(tmp_path, case):
  content, what = SLICES_ERRORS[case]
  folder = write_folder(tmp_path)
  _write_slices(folder, content)
  with pytest.raises(ReportFormatError) as refused:
    report_format.load_report(folder)
  message = str(refused.value)
  assert message.startswith(os.path.join(folder, 'slices.json')) and what in message, message
  assert ' - ' in message


def test_a_slices_folder_or_fifo_is_refused_without_opening_it(tmp_path):
  folder = write_folder(tmp_path)
  os.mkfifo(os.path.join(folder, 'slices.json'))
  with pytest.raises(ReportFormatError, match='slices.json: is not a regular file'):
    report_format.load_report(folder)


def test_flag_kind_totals_add_the_splits_known_kinds_first():
  assert report_format.flag_kind_totals(SUMMARY) is None
  summary = dict(SUMMARY, flag_kinds={'train': {'unclear': 2, 'wrong label': 5, 'zzz': 1},
                                      'eval': {'wrong label': 1}})
  assert list(report_format.flag_kind_totals(summary).items()) == [
      ('wrong label', 6), ('atypical', 0), ('unclear', 2), ('zzz', 1)]
  for bad, what in (({'train': {'unclear': -1}}, "flag_kinds['train']['unclear'] is -1"),
                    ({'train': {'unclear': 1.5}}, "flag_kinds['train']['unclear'] is a number"),
                    ([1], 'flag_kinds is a list')):
    with pytest.raises(ReportFormatError, match=re.escape(what)):
      report_format.flag_kind_totals(dict(SUMMARY, flag_kinds=bad))


def test_published_slices_replace_an_earlier_audits_whole(tmp_path):
  from components.vog.report import report_folder  # pylint: disable=g-import-not-at-top
  folder = write_folder(tmp_path)
  report_folder.write_slices(folder, _slices())
  assert json.load(open(os.path.join(folder, 'slices.json'))) == _slices()
  assert sorted(n for n in os.listdir(folder) if 'slices' in n) == ['slices.json']
  assert report_format.load_report(folder).slices.content == _slices()
  with pytest.raises(ReportFormatError, match="rows\\[1\\]: has 'kind' 'odd'"):
    report_folder.write_slices(folder, _slices_with(kind='odd'))
  assert json.load(open(os.path.join(folder, 'slices.json'))) == _slices()  # untouched
  report_folder.write_slices(folder, None)  # an audit without slices into the same folder
  assert not os.path.exists(os.path.join(folder, 'slices.json'))
  assert report_format.load_report(folder).slices is None
