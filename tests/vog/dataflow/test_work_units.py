"""Work units: many small input files are read and written as few units, one large
file stays one unit, and what a user reads is the same however the files are grouped.
"""

import glob
import os

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
import pytest
import tensorflow as tf

from components.vog import audit
from components.vog import audit_plan
from components.vog.dataflow import beam_audit
from components.vog.inputs import record_files
from components.vog.report import report_format
from components.vog.report import score_table
from components.vog.dataflow.beam_audit import InputFile, WorkUnit
from components.vog.inputs.examples_io import InputRecord
from components.vog.settings import VogSettings
import fixtures

N = 60


def _files(sizes):
  return [InputFile('train', i, f'f{i}', None, None, size) for i, size in enumerate(sizes)]


def test_small_files_are_grouped_in_order_and_a_large_file_is_a_unit_of_its_own():
  units = beam_audit.work_units(_files([10] * 8 + [500] + [10] * 4), max_bytes=40,
                                target=1)
  assert [[f.file_index for f in u.files] for u in units] == [
      [0, 1, 2, 3], [4, 5, 6, 7], [8], [9, 10], [11, 12]]
  assert [u.unit_index for u in units] == [0, 1, 2, 3, 4]
  # The split's size over the target bounds a unit too, so a small split still spreads.
  spread = beam_audit.work_units(_files([10] * 8), max_bytes=1000, target=4)
  assert [len(u.files) for u in spread] == [2, 2, 2, 2]
  # So does the number of files.
  capped = beam_audit.work_units(_files([0] * 7), max_bytes=1000, target=1, max_files=3)
  assert [len(u.files) for u in capped] == [3, 3, 1]
  assert beam_audit.work_units([]) == []


def test_ten_thousand_one_record_files_make_at_most_the_target_number_of_units():
  units = beam_audit.work_units(_files([3000] * 10_000))
  assert len(units) <= beam_audit.UNIT_TARGET
  assert [f.file_index for u in units for f in u.files] == list(range(10_000))


def test_a_unit_is_read_as_one_stream_across_its_files(tmp_path):
  a = fixtures.write_records(str(tmp_path / 'a'), [b'a0', b'a1'])
  empty = fixtures.write_records(str(tmp_path / 'e'), [], gzip=False)
  full = fixtures.write_records(str(tmp_path / 'c'), [b'c0', b'c1'], gzip=False)
  with open(full, 'rb') as f:
    data = f.read()
  cut = str(tmp_path / 'cut')
  with open(cut, 'wb') as f:
    f.write(data[:-3])  # its second record is cut short
  d = fixtures.write_records(str(tmp_path / 'd'), [b'd0'])
  files = [InputFile('train', i, p, None) for i, p in enumerate([a, empty, cut, d])]
  unit = WorkUnit('train', 3, tuple(files))
  with beam.Pipeline() as p:
    read = p | beam.Create([unit]) | beam_audit.ReadRecordBatches(batch_size=2)
    assert_that(read['batches'], equal_to([
        [InputRecord('train', 3, 0, b'a0'), InputRecord('train', 3, 1, b'a1')],
        # A batch spans files; a damaged file ends at its damage and the next follows.
        [InputRecord('train', 3, 2, b'c0'), InputRecord('train', 3, 3, b'd0')]]),
                label='batches')
    assert_that(read['files'] | beam.Map(lambda r: (r.file_index, r.records, r.unit_index,
                                                    r.first_record, r.damage is not None)),
                equal_to([(0, 2, 3, 0, False), (1, 0, 3, 2, False), (2, 1, 3, 2, True),
                          (3, 1, 3, 3, False)]), label='files')


@pytest.fixture(scope='module')
def audits(tmp_path_factory):
  """The same examples audited as one file and as N one-record files."""
  root = str(tmp_path_factory.mktemp('units'))
  images, labels, _ = fixtures.digits(N, seed=5)
  fixtures.train_checkpoints(os.path.join(root, 'run'), images, labels, epochs=3)
  records = [fixtures.example(im, lab, f'id-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  settings = VogSettings(batch_size=8, inspection_budget=6, copy_splits='all')
  out = {}
  for name, shards in (('one', [records]), ('many', [[r] for r in records])):
    pattern = fixtures.write_split(os.path.join(root, name, 'examples'), 'train', shards)
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(beam_audit, 'UNIT_TARGET', 8)  # about 8 units of the 60 files
      plan = audit_plan.plan_audit(settings, os.path.join(root, 'run'), {'train': pattern})
    folder = os.path.join(root, name)
    summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(folder, 'scored'),
                              os.path.join(folder, 'report'))
    out[name] = (plan, summary, folder)
  return records, out


def test_many_small_files_give_few_output_files(audits):
  _, out = audits
  plan, summary, folder = out['many']
  units = len(plan.split_units['train'])
  assert len(plan.split_files['train']) == N and 1 < units < N
  assert summary['input_files'] == {'train': N}
  scored = glob.glob(os.path.join(folder, 'scored', 'Split-train', '*'))
  assert len(scored) == units
  parts = glob.glob(os.path.join(folder, 'report', 'score_table', 'split=train', '*'))
  assert len(parts) == units
  # Nothing is left where writers wrote before renaming, nor in the report's folder.
  assert not os.path.exists(record_files.temp_folder(os.path.join(folder, 'scored')))
  names = os.listdir(os.path.join(folder, 'report'))
  assert not [n for n in names if n.startswith('.')]
  assert len([n for n in names if n.startswith('history-')]) == units


def test_grouping_changes_no_score_rank_or_flag(audits):
  records, out = audits
  rows = {}
  for name in ('one', 'many'):
    table = score_table.read_table(os.path.join(out[name][2], 'report')).to_pydict()
    rows[name] = {table['example_id'][i]: (table['file_index'][i], table['record_index'][i],
                                           table['review_rank'][i], table['vog_flagged'][i],
                                           table['vog_percentile'][i])
                  for i in range(len(table['example_id']))}
  assert len(rows['one']) == len(rows['many']) == N
  for i in range(N):
    one, many = rows['one'][f'id-{i}'], rows['many'][f'id-{i}']
    # The score table names each example's own input file and its record there.
    assert one[:2] == (0, i) and many[:2] == (i, 0)
    assert one[2:4] == many[2:4]
    assert one[4] == pytest.approx(many[4], abs=1e-4)
  flagged = {name: [(r.rank, r.example_id) for r in
                    report_format.load_report(os.path.join(out[name][2], 'report')).flagged]
             for name in ('one', 'many')}
  assert flagged['one'] == flagged['many'] and len(flagged['one']) == 6
  # The scored copies hold every example once, in input order.
  copies = tf.io.gfile.glob(os.path.join(out['many'][2], 'scored', 'Split-train', '*'))
  ids = [tf.train.Example.FromString(r.numpy()).features.feature['example_id']
         .bytes_list.value[0].decode() for r in tf.data.TFRecordDataset(sorted(copies), 'GZIP')]
  assert ids == [f'id-{i}' for i in range(N)]
