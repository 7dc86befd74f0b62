"""The review store keeps working when its folder holds things it did not write.

Records are typed (review_record.py) and checked field by field on every read: bad or foreign
files, and records with a field this version does not write, are skipped with a warning that
names them; review ids are checked against the pattern the store gives out; records are shared
with the group (as the umask allows) and are on disk before they replace the old version.
"""

import json
import logging as py_logging
import os
import time

import pytest
from click.testing import CliRunner

import review_gate_support as support

from components.review_gate import component as component_lib
from components.review_gate import local_backend
from components.review_gate import review_store


def _cli(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  return CliRunner().invoke(main, list(args))


# File name -> (contents, what the warning says about it).
LITTER = {
    '0000000a-1.json': (b'{"format_version": 2, "review_id": ', 'is not valid JSON'),
    '0000000b-1.json': (b'[1, 2, 3]', 'is not a JSON object but a list'),
    '0000000c-1.json': (json.dumps({'format_version': 2, 'status': 'pending'}).encode(),
                        'has no review_id'),
    '0000000d-1.json': (b'\xff\xfe\x00garbage', 'is not UTF-8 text'),
    '0000000e-1.json': (json.dumps({'format_version': 99, 'review_id': '0000000e-1'}).encode(),
                        'has format_version 99, which this version of vog-audit does not read'),
    # A well-formed record under another record's name.
    '0000000f-1.json': (json.dumps(support.record_json('0000000f-2')).encode(),
                        "holds review '0000000f-2'"),
    # The right fields with the wrong types.
    '00000010-1.json': (json.dumps(support.record_json('00000010-1', closed='no')).encode(),
                        'has a str for closed'),
    # Fields this version does not write, as someone editing the folder would add them.
    '00000012-1.json': (json.dumps(support.record_json(
        '00000012-1', reactions_seen={'white_check_mark/alice': 0})).encode(),
                        "has an unknown field 'reactions_seen'"),
    '00000013-1.json': (json.dumps(support.record_json(
        '00000013-1', state={'deadline_at': 1e12, 'answers': [], 'extra': 1})).encode(),
                        "has an unknown field 'state.extra'"),
    '00000014-1.json': (json.dumps(support.record_json('00000014-1', backend='teams')).encode(),
                        "is a review of backend 'teams', which this version of vog-audit does "
                        'not have'),
    '00000015-1.json': (json.dumps(support.record_json('00000015-1', quorum=0)).encode(),
                        'has quorum 0, which is less than 1'),
    '00000016-1.json': (json.dumps(support.record_json('00000016-1', state={
        'deadline_at': 'never', 'answers': []})).encode(), 'has a str for state.deadline_at'),
    # A record of the format before this one.
    '00000017-1.json': (json.dumps(dict(support.record_json('00000017-1'),
                                        format_version=1)).encode(),
                        'has format_version 1, which this version of vog-audit does not read '
                        '(it reads 2)'),
    # Another tool's file, and an editor's backup.
    'settings.json': (b'{"theme": "dark"}', 'its name is not a review ID'),
    '3fa9c21b-1.json~': (b'{}', None),
}


def _litter(folder):
  """Files a shared folder collects: damage, other tools' JSON, editors' leftovers."""
  os.makedirs(folder, exist_ok=True)
  for name, (data, _) in LITTER.items():
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(data)
  os.makedirs(os.path.join(folder, '00000011-1.json'))
  return sorted([name for name, (_, why) in LITTER.items() if why] + ['00000011-1.json'])


def test_list_skips_bad_files_with_a_warning_naming_each(tmp_path, caplog):
  caplog.set_level(py_logging.WARNING)
  reviews = str(tmp_path / 'reviews')
  names = _litter(reviews)
  store = review_store.ReviewStore(reviews)
  record, resumed = store.open_review(support.local_record('f' * 64))
  assert not resumed

  assert [r.review_id for r in store.list()] == [record.review_id]
  skipped = {os.path.basename(path): why for path, why in store.skipped}
  assert sorted(skipped) == names
  for name, (_, why) in LITTER.items():
    if why:
      assert why in skipped[name], (name, skipped[name])
  assert 'cannot be read' in skipped['00000011-1.json']
  warned = [r.getMessage() for r in caplog.records if r.levelno == py_logging.WARNING]
  for name in names:
    assert sum(name in line and 'skipped' in line for line in warned) == 1, name


def test_a_new_review_does_not_overwrite_a_damaged_file_with_its_id(tmp_path):
  reviews = tmp_path / 'reviews'
  reviews.mkdir()
  (reviews / 'aaaaaaaa-1.json').write_bytes(b'{broken')
  record, _ = review_store.ReviewStore(str(reviews)).open_review(support.local_record('a' * 64))
  assert record.review_id == 'aaaaaaaa-2'
  assert (reviews / 'aaaaaaaa-1.json').read_bytes() == b'{broken'


def test_cli_list_and_answer_work_beside_bad_files(tmp_path):
  reviews = tmp_path / 'reviews'
  names = _litter(str(reviews))
  store = review_store.ReviewStore(str(reviews))
  record, _ = store.open_review(support.local_record('e' * 64))

  listed = _cli('review', 'list', '--pipeline-root', str(tmp_path))
  assert listed.exit_code == 0, listed.output
  assert f'{record.review_id}  pending   local' in listed.stdout
  for name in names:
    assert f'warning: skipped {reviews / name}: ' in listed.stderr, name

  answered = _cli('review', 'approve', record.review_id, '--by', 'alice',
                  '--pipeline-root', str(tmp_path))
  assert answered.exit_code == 0, answered.output
  assert store.get(record.review_id).status == 'approved'


def test_gate_runs_beside_bad_files(tmp_path):
  _litter(str(tmp_path / 'reviews'))
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      backend='local', approvers=['alice'], slack_channel=None, timeout_seconds=0.3),
                              with_montage=False)
  assert blessing.get_string_custom_property('review_decision') == 'timeout'


def test_answering_a_damaged_record_names_it(tmp_path):
  reviews = tmp_path / 'reviews'
  reviews.mkdir()
  (reviews / '0badf00d-1.json').write_text('{"format_version": 2,')
  result = _cli('review', 'approve', '0badf00d-1', '--by', 'alice',
                '--pipeline-root', str(tmp_path))
  assert result.exit_code == 2
  assert result.output.startswith(f'error: review file {reviews}/0badf00d-1.json is not valid '
                                  'JSON (')
  assert result.output.endswith('); move it out of the reviews folder\n')
  assert result.output.count('\n') == 1


@pytest.mark.parametrize('review_id', [
    'abc\x00def', 'a' * 300, '../reviews/x', 'a/b', '.lock', 'ABCDEF12-1', '3fa9c21b-1.json',
    '3fa9c21b', '3fa9c21b--1', ' 3fa9c21b-1',
])
def test_review_ids_outside_the_pattern_are_refused(tmp_path, review_id):
  (tmp_path / 'reviews').mkdir()
  result = _cli('review', 'approve', review_id, '--by', 'alice', '--pipeline-root', str(tmp_path))
  assert result.exit_code == 2
  assert result.output == (f'error: {review_id!r} is not a review ID (IDs look like 3fa9c21b-1); '
                           '`vog-audit review list` shows them\n')
  with pytest.raises(review_store.ReviewStoreError, match='is not a review ID'):
    review_store.ReviewStore(str(tmp_path / 'reviews')).get(review_id)


@pytest.mark.parametrize('umask, mode', [(0o002, 0o660), (0o022, 0o640), (0o077, 0o600)])
def test_records_are_shared_with_the_group_as_the_umask_allows(tmp_path, umask, mode):
  old = os.umask(umask)
  try:
    store = review_store.ReviewStore(str(tmp_path / 'reviews'))
    record, _ = store.open_review(support.local_record('a' * 64))
    local_backend.answer(store, record.review_id, approve=True, by='alice')
  finally:
    os.umask(old)
  path = tmp_path / 'reviews' / f'{record.review_id}.json'
  assert os.stat(path).st_mode & 0o777 == mode
  assert os.stat(tmp_path / 'reviews' / '.lock').st_mode & 0o777 == mode


def test_lock_file_needs_only_read_access(tmp_path):
  """A reviewer whose group may read the lock file, but not write it, can still take the lock."""
  store = review_store.ReviewStore(str(tmp_path / 'reviews'))
  record, _ = store.open_review(support.local_record('c' * 64))
  os.chmod(tmp_path / 'reviews' / '.lock', 0o440)
  opened = []
  real_open = os.open

  def tracking_open(path, flags, *args, **kwargs):
    if os.path.basename(str(path)) == '.lock':
      opened.append(flags)
    return real_open(path, flags, *args, **kwargs)

  import unittest.mock  # pylint: disable=g-import-not-at-top
  with unittest.mock.patch('os.open', tracking_open):
    assert local_backend.answer(store, record.review_id, approve=True,
                                by='alice').status == 'approved'
  assert opened and all(flags & (os.O_WRONLY | os.O_RDWR) == 0 for flags in opened)


def test_records_are_fsynced_before_the_rename(tmp_path, monkeypatch):
  events = []
  real_fsync, real_replace = os.fsync, os.replace
  monkeypatch.setattr(os, 'fsync', lambda fd: (events.append(('fsync', fd)), real_fsync(fd)))
  monkeypatch.setattr(os, 'replace', lambda a, b: (events.append(('replace', b)),
                                                   real_replace(a, b)))
  store = review_store.ReviewStore(str(tmp_path / 'reviews'))
  record, _ = store.open_review(support.local_record('b' * 64))
  kinds = [kind for kind, _ in events]
  assert 'replace' in kinds
  first_replace = kinds.index('replace')
  assert 'fsync' in kinds[:first_replace], events  # the file's data, before it takes the name
  assert 'fsync' in kinds[first_replace + 1:], events  # and the folder, after
  assert events[first_replace][1].endswith(f'{record.review_id}.json')


def test_docs_do_not_recommend_an_object_store_mount_for_reviews():
  for text in (review_store.__doc__, component_lib.HumanReviewGate.__init__.__doc__):
    assert 'GCS FUSE' not in text and '/gcs/' not in text
    assert 'object store' in text
  with pytest.raises(review_store.ReviewStoreError) as raised:
    review_store.ReviewStore('gs://bucket/reviews')
  assert '/gcs/' not in str(raised.value) and 'GCS FUSE' not in str(raised.value)


def test_an_answer_after_the_deadline_is_refused(tmp_path):
  """The gate died and never closed the review; its deadline still holds for the CLI."""
  store = review_store.ReviewStore(str(tmp_path / 'reviews'))
  record, _ = store.open_review(support.local_record('d' * 64, timeout_seconds=0.05))
  time.sleep(0.1)
  result = _cli('review', 'approve', record.review_id, '--by', 'alice',
                '--pipeline-root', str(tmp_path))
  assert result.exit_code == 2
  assert result.output.startswith(f'error: review {record.review_id} ran out of time at ')
  assert store.get(record.review_id).status == 'pending'
