"""`vog-audit review mark`, `verdicts` and `export` on a small real report folder.

An approver of the gate's review of a report marks its flagged examples; the latest verdict
on an example wins; everything else (a name that is no approver's, an example the report did
not flag, a label that is no class, a note of two lines...) exits 2 with one line. Listings are
terminal-safe, and the CSV export runs no formula in a spreadsheet.
"""

import csv
import hashlib
import json
import os

import pytest
import tensorflow as tf
from click.testing import CliRunner

import fixtures
import review_gate_support as support

from components.review_gate import review_store
from components.review_gate import verdicts

HOSTILE_ID = '=HYPERLINK("http://evil.example")\x1b[2J'
ROWS = support.FLAGGED + [
    {'rank': 3, 'example_id': HOSTILE_ID, 'split': 'eval', 'label': 1, 'predicted_class': 7,
     'target_class': 1, 'vog_score': 3.1, 'vog_raw': 0.02, 'vog_percentile': 99.1,
     'vog_bucket': 'hard'},
    # The same id in two splits.
    {'rank': 4, 'example_id': 'digit-0007', 'split': 'train', 'label': 2, 'predicted_class': 7,
     'target_class': 2, 'vog_score': 3.0, 'vog_raw': 0.02, 'vog_percentile': 99.0,
     'vog_bucket': 'hard'},
    {'rank': 5, 'example_id': 'digit-0007', 'split': 'eval', 'label': 2, 'predicted_class': 7,
     'target_class': 2, 'vog_score': 2.9, 'vog_raw': 0.02, 'vog_percentile': 98.9,
     'vog_bucket': 'hard'},
]


def _cli(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  return CliRunner().invoke(main, list(args))


@pytest.fixture(scope='module')
def report(tmp_path_factory):
  """A report folder of 5 flagged examples (10 classes) with their bytes, as the audit writes
  it; returns (report URI, the examples' serialized bytes)."""
  uri = str(tmp_path_factory.mktemp('audit') / 'difficulty_report')
  support.write_report(uri, with_montage=False, flagged=ROWS)
  path = os.path.join(uri, 'summary.json')
  with open(path) as f:
    summary = json.load(f)
  with open(path, 'w') as f:
    json.dump(dict(summary, num_classes=10), f)
  images, _, _ = fixtures.digits(len(ROWS))
  records = [fixtures.example(image, row['label'], row['example_id']).SerializeToString()
             for image, row in zip(images, ROWS)]
  with tf.io.TFRecordWriter(os.path.join(uri, 'flagged_examples.tfrecord')) as writer:
    for record in records:
      writer.write(record)
  return uri, records


@pytest.fixture
def root(tmp_path, report):
  """A pipeline root whose gate asked alice and bob about `report` (artifact 12)."""
  store = review_store.ReviewStore(str(tmp_path / 'reviews'))
  store.open_review(support.local_record('a' * 64, approvers=('alice', 'bob'),
                                         report_uri=report[0], report_id=12))
  return str(tmp_path)


def _mark(root, report_uri, *args):
  return _cli('review', 'mark', '--report', report_uri, '--pipeline-root', root, *args)


def _one_line_error(result, text):
  assert result.exit_code == 2, result.output
  assert result.stdout == ''
  assert result.stderr == f'error: {text}\n'


def test_an_approver_marks_a_wrong_label_and_a_later_verdict_supersedes_it(root, report):
  uri, records = report
  marked = _mark(root, uri, 'digit-0412', 'wrong label', '--label', '3', '--by', 'alice',
                 '--note', 'closed loop: a 3')
  assert marked.exit_code == 0, marked.output
  assert marked.output == 'verdict 1: alice marked digit-0412 (train) wrong label (8 -> 3)\n'

  [given] = verdicts.VerdictStore(os.path.join(root, 'verdicts')).history(('alice',))
  assert given.fingerprint == hashlib.sha256(records[0]).hexdigest()[:20]
  assert (given.report_uri, given.report_id) == (uri, 12)
  with open(os.path.join(uri, 'summary.json')) as f:
    canonical = json.dumps(json.load(f), sort_keys=True, separators=(',', ':'))
  assert given.summary_sha256 == hashlib.sha256(canonical.encode()).hexdigest()
  assert given.note == 'closed loop: a 3' and given.label == 8

  again = _mark(root, uri, 'digit-0412', 'correct', '--by', 'bob')
  assert again.exit_code == 0, again.output
  assert again.output == ('verdict 2: bob marked digit-0412 (train) correct; it supersedes '
                          'verdict 1 (wrong label (8 -> 3) by alice)\n')

  listed = _cli('review', 'verdicts', '--pipeline-root', root)
  assert listed.exit_code == 0, listed.output
  assert 'digit-0412 (train)  correct  by bob' in listed.output
  assert 'wrong label' not in listed.output
  assert f'fingerprint {given.fingerprint}; audit {uri} (artifact 12)' in listed.output

  everything = _cli('review', 'verdicts', '--all', '--pipeline-root', root)
  assert everything.exit_code == 0, everything.output
  lines = everything.output.splitlines()
  assert lines[0].endswith('digit-0412 (train)  wrong label (8 -> 3)  by alice  '
                           '[superseded by 2]')
  assert lines[1] == '      note: closed loop: a 3'
  assert [line for line in lines if 'by bob' in line][0].endswith('correct  by bob')


def test_verdicts_of_one_report_and_the_export(root, report, tmp_path):
  uri, _ = report
  for args in (('digit-0412', 'wrong-label', '--label', '5', '--by', 'alice'),
               ('digit-<0099>', 'exclude', '--by', 'bob', '--note', '-blurry scan'),
               (HOSTILE_ID, 'exclude', '--by', 'alice'),
               ('digit-0007', 'ambiguous', '--split', 'eval', '--by', 'alice')):
    result = _mark(root, uri, *args)
    assert result.exit_code == 0, result.output

  mine = _cli('review', 'verdicts', '--report', uri, '--pipeline-root', root)
  assert mine.exit_code == 0, mine.output
  assert 'digit-0007 (eval)  ambiguous  by alice' in mine.output
  assert '\x1b' not in mine.output
  assert '=HYPERLINK("http://evil.example")\\x1b[2J (eval)  exclude  by alice' in mine.output
  other = _cli('review', 'verdicts', '--report', str(tmp_path / 'other'), '--approvers', 'alice',
               '--pipeline-root', root)
  assert other.exit_code == 0, other.output
  assert other.stdout.startswith(f'no verdicts on {tmp_path / "other"} in ')

  out_csv = str(tmp_path / 'relabel.csv')
  exported = _cli('review', 'export', '--format', 'csv', '--output', out_csv,
                  '--pipeline-root', root)
  assert exported.exit_code == 0, exported.output
  assert exported.output == f'exported 3 verdicts (1 wrong label, 2 exclude) to {out_csv}\n'
  with open(out_csv, newline='') as f:
    table = list(csv.DictReader(f))
  assert [(r['example_id'], r['split'], r['verdict'], r['corrected_label'], r['by'])
          for r in table] == [
              ("'" + HOSTILE_ID, 'eval', 'exclude', '', 'alice'),
              ('digit-0412', 'train', 'wrong label', '5', 'alice'),
              ('digit-<0099>', 'train', 'exclude', '', 'bob')]
  assert table[2]['note'] == "'-blurry scan" and table[1]['audit'] == uri

  out_jsonl = str(tmp_path / 'relabel.jsonl')
  exported = _cli('review', 'export', '--format', 'jsonl', '--output', out_jsonl,
                  '--pipeline-root', root)
  assert exported.exit_code == 0, exported.output
  with open(out_jsonl) as f:
    lines = [json.loads(line) for line in f]
  assert [(r['example_id'], r['corrected_label']) for r in lines] == [
      (HOSTILE_ID, None), ('digit-0412', 5), ('digit-<0099>', None)]


def test_approvers_given_on_the_command_line(tmp_path, report):
  uri, _ = report
  root = str(tmp_path)  # no reviews here: the gate never asked
  nobody = _mark(root, uri, 'digit-0412', 'correct', '--by', 'carol')
  _one_line_error(nobody, f'no approvers known: the reviews folder {tmp_path / "reviews"} holds '
                          f'no review of the report {uri} to take them from; pass '
                          '--approvers A,B')
  marked = _mark(root, uri, 'digit-0412', 'correct', '--by', 'carol', '--approvers',
                 'alice, carol')
  assert marked.exit_code == 0, marked.output
  listed = _cli('review', 'verdicts', '--approvers', 'carol', '--pipeline-root', root)
  assert 'digit-0412 (train)  correct  by carol' in listed.output
  # The folder does not say who approves: whoever reads names them.
  listed = _cli('review', 'verdicts', '--approvers', 'alice', '--pipeline-root', root)
  assert listed.exit_code == 0, listed.output
  assert 'by carol' not in listed.stdout
  assert "it is by 'carol', who is not one of the approvers (alice)" in listed.stderr


@pytest.mark.parametrize('args,error', [
    (('digit-0412', 'correct', '--by', 'mallory'),
     "'mallory' is not an approver; approvers are: alice, bob"),
    (('digit-0412', 'correct'),
     'say who gives the verdict: pass --by NAME (one of the approvers: alice, bob)'),
    (('digit-9999', 'correct', '--by', 'alice'),
     "'digit-9999' is not a flagged example of the report {uri}; its flagged.jsonl lists the "
     'ones a verdict can be on'),
    (('digit-0007', 'correct', '--by', 'alice'),
     "'digit-0007' is flagged in several splits (train, eval) of the report; say which with "
     '--split'),
    (('digit-0412', 'wrong label', '--by', 'alice'),
     "a 'wrong label' verdict needs the right class: pass --label N"),
    (('digit-0412', 'correct', '--label', '3', '--by', 'alice'),
     "--label goes only with the verdict 'wrong label', not 'correct'"),
    (('digit-0412', 'wrong label', '--label', '10', '--by', 'alice'),
     '10 is not a class of the report (its classes: 0 to 9)'),
    (('digit-0412', 'wrong label', '--label', '8', '--by', 'alice'),
     "8 is the label 'digit-0412' already has; give the right class, or the verdict 'correct'"),
    (('digit-0412', 'wrong label', '--label', '-1', '--by', 'alice'),
     "--label '-1' is not a class (a whole number >= 0)"),
    (('digit-0412', 'wrong label', '--label', 'three', '--by', 'alice'),
     "--label 'three' is not a class (a whole number >= 0)"),
    (('digit-0412', 'mislabeled', '--by', 'alice'),
     "'mislabeled' is not a verdict; give one of: 'wrong label', 'correct', 'ambiguous', "
     "'exclude'"),
    (('digit-0412', 'correct', '--by', 'alice', '--note', 'one\nrm -rf /'),
     'the note holds a line break or control character; keep it to one line'),
    (('digit-0412', 'correct', '--by', 'alice', '--note', 'x' * 501),
     'the note is 501 characters; keep it under 500'),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(root, report, args, error):
  uri, _ = report
  result = _mark(root, uri, *args)
  _one_line_error(result, error.format(uri=uri))
  assert not os.path.exists(os.path.join(root, 'verdicts', '000000000001.json'))


def test_without_num_classes_the_classes_are_those_the_report_names(tmp_path):
  uri = support.write_report(str(tmp_path / 'old_report'), with_montage=False)
  result = _mark(str(tmp_path), uri, 'digit-0412', 'wrong label', '--label', '9', '--by',
                 'alice', '--approvers', 'alice')
  # Classes of its per-class rows (1, 3, 8) and of its flagged rows' labels and predictions.
  _one_line_error(result, '9 is not a class of the report (its classes: 1, 3, 5, 8)')


def test_a_folder_that_is_no_report_or_no_report_at_all(root, tmp_path):
  no_report = _cli('review', 'mark', 'digit-0412', 'correct', '--by', 'alice',
                   '--pipeline-root', root)
  _one_line_error(no_report, 'say which audit flagged the example: pass --report with its '
                             'difficulty_report folder')
  empty = tmp_path / 'empty'
  empty.mkdir()
  result = _mark(root, str(empty), 'digit-0412', 'correct', '--by', 'alice', '--approvers',
                 'alice')
  assert result.exit_code == 2 and result.stdout == ''
  assert result.stderr.startswith(f'error: {empty}/summary.json: does not exist')
  assert len(result.stderr.splitlines()) == 1


def test_listing_skips_a_damaged_verdict_with_a_warning(root, report):
  uri, _ = report
  assert _mark(root, uri, 'digit-0412', 'exclude', '--by', 'alice').exit_code == 0
  folder = os.path.join(root, 'verdicts')
  with open(os.path.join(folder, '000000000002.json'), 'w') as f:
    f.write('{"format_version": 1, "verdict": "correct"')
  listed = _cli('review', 'verdicts', '--pipeline-root', root)
  assert listed.exit_code == 0, listed.output
  assert 'digit-0412 (train)  exclude  by alice' in listed.stdout
  assert (f'warning: skipped {folder}/000000000002.json: is not valid JSON'
          in listed.stderr)
  # The next verdict does not reuse the damaged file's number.
  again = _mark(root, uri, 'digit-0412', 'correct', '--by', 'bob')
  assert again.output.startswith('verdict 3: bob marked digit-0412 (train) correct')


@pytest.mark.parametrize('args,error', [
    (('--output', 'x.csv'), 'pass --format csv or jsonl'),
    (('--format', 'xlsx', '--output', 'x.csv'), "--format 'xlsx' is not csv or jsonl"),
    (('--format', 'csv'), 'say where to write the export: pass --output FILE'),
])
def test_export_refuses_bad_options_in_one_line(root, args, error):
  _one_line_error(_cli('review', 'export', '--pipeline-root', root, *args), error)


def test_export_to_a_place_it_cannot_write(root, tmp_path):
  result = _cli('review', 'export', '--format', 'csv', '--output', str(tmp_path),
                '--pipeline-root', root)
  _one_line_error(result, f'cannot write {tmp_path} (Is a directory); give a file this user '
                          'can write')


def test_no_pipeline_root(tmp_path, report):
  missing = str(tmp_path / 'nowhere')
  listed = _cli('review', 'verdicts', '--approvers', 'alice', '--pipeline-root', missing)
  _one_line_error(listed, f'no verdicts folder at {missing}/verdicts; pass --pipeline-root of '
                          'the pipeline (or --verdicts-dir)')
  marked = _mark(missing, report[0], 'digit-0412', 'correct', '--by', 'alice', '--approvers',
                 'alice')
  _one_line_error(marked, f'no pipeline root at {missing}; pass --pipeline-root of the '
                          'pipeline whose audit you judge (or --verdicts-dir)')
