"""Publishing a difficulty report folder, and the review page built from it.

Everything written here goes through the report's types: summary.json through
summary_model.ReportSummary, flagged.jsonl through report_rows.FlaggedRow, slices.json through
report_format.parse_slices; the page renders their JSON.
"""

import gzip
import json
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components.vog.inputs import examples_io
from components.vog.report import report_format
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.report import report_html
from components.vog.report import score_table
from components.vog.report.report_rows import FlaggedRow
from components.vog.report.summary_model import ReportSummary
from components.vog.inputs import storage
from components.vog.vocabulary import (FLAGGED_EXAMPLES_FILE, FLAGGED_FILE, MONTAGE_FILE,
                                       QUARANTINE_GLOB, REPORT_FILE, SUMMARY_FILE)

QUARANTINE_SAMPLE = 50


def write_jsonl(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write('')  # GFile creates the file only once something is written.
    for row in rows:
      f.write(json.dumps(row, sort_keys=True) + '\n')


def read_flagged(path: str) -> Tuple[List[FlaggedRow], Dict[int, bytes]]:
  """Flagged rows of the audit's work file in rank order, and each rank's example bytes."""
  rows, records = [], {}
  if not tf.io.gfile.exists(path):  # Some runners write no file for no rows.
    return rows, records
  with tf.io.gfile.GFile(path) as f:
    for line_no, line in enumerate(f, 1):
      if line.strip():
        where = f'{path} line {line_no}'
        obj = json.loads(line)
        row = report_rows.flagged_row_from_json(obj, where)
        records[row.rank] = report_rows.record_from_json(obj, where)
        rows.append(row)
  rows.sort(key=lambda r: r.rank)
  return rows, records


def _short(values: np.ndarray) -> str:
  shown = [v.decode('utf-8', 'replace') if isinstance(v, bytes) else
           (f'{v:.4g}' if isinstance(v, (float, np.floating)) else str(v))
           for v in values[:6].tolist()]
  return ', '.join(shown) + (f' ... ({values.size} values)' if values.size > 6 else '')


def previews_of(parser: examples_io.ExampleParser,
                input_specs: Sequence[examples_io.InputSpec],
                flagged: Sequence[FlaggedRow],
                records: Mapping[int, bytes]) -> List[report_html.ExamplePreview]:
  """Thumbnails (the first float model input of rank 2 or 3 is an image) or the feature
  values of flagged examples (tabular rows; text as its text)."""
  image_input = next((s.name for s in input_specs
                      if s.kind == 'float' and len(s.shape) in (2, 3)), None)
  previews = []
  for row in flagged:
    serialized = records[row.rank]
    example = tf.train.Example.FromString(serialized)
    features = {k: _short(v) for k, v in sorted(examples_io.example_features(example).items())
                if not k.startswith('vog_')}
    image = None
    if image_input is not None:
      parsed = parser.parse(row.split, serialized)
      if isinstance(parsed, examples_io.ScorableExample):
        image = parsed.inputs[image_input]
    if image is not None:  # The page shows the image; the montage captions these.
      features = {'label': str(row.label), 'predicted_class': str(row.predicted_class)}
    previews.append(report_html.ExamplePreview(row.rank, row.example_id, image, features))
  return previews


def _move_shards(report_dir: str, pattern: str, shards: Sequence[str], num_shards: int,
                 name_of, empty: bytes) -> None:
  """Moves `shards` into `report_dir`, fills the rest of the `num_shards` with `empty`
  files so the set is complete, after removing shards of an earlier audit."""
  storage.each(report_dir, tf.io.gfile.remove,
               tf.io.gfile.glob(os.path.join(report_dir, pattern)))
  present = {os.path.basename(s): s for s in shards}

  def place(i: int) -> None:
    name = name_of(i, max(num_shards, 1))
    if name in present:
      tf.io.gfile.rename(present[name], os.path.join(report_dir, name), overwrite=True)
    else:
      with tf.io.gfile.GFile(os.path.join(report_dir, name), 'wb') as f:
        f.write(empty)

  storage.each(report_dir, place, range(max(num_shards, 1)))


def _move_score_table(work_dir: str, report_dir: str) -> None:
  """Moves the score table's shards from the work folder into the report, file by file
  (a folder cannot be renamed on every file system), after removing an earlier one."""
  published = score_table.table_dir(report_dir)
  if tf.io.gfile.exists(published):
    tf.io.gfile.rmtree(published)
  paths = tf.io.gfile.glob(os.path.join(score_table.table_dir(work_dir), '*', '*'))
  for split_folder in sorted({os.path.basename(os.path.dirname(p)) for p in paths}):
    tf.io.gfile.makedirs(os.path.join(published, split_folder))
  storage.each(report_dir, lambda path: tf.io.gfile.rename(
      path, os.path.join(published, os.path.basename(os.path.dirname(path)),
                         os.path.basename(path)), overwrite=True), paths)


def write_slices(report_dir: str, slices: Optional[Mapping[str, Any]]) -> None:
  """Writes `slices` (slices.json's content) as <report_dir>/slices.json, whole or not at
  all (a temporary file renamed over it); None removes the slices.json of an earlier audit
  into the same folder, so a report never shows another audit's slices. Refuses content
  that report_format.parse_slices refuses (ReportFormatError), before writing anything."""
  path = os.path.join(report_dir, report_format.SLICES_FILE)
  if slices is None:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
    return
  report_format.parse_slices(slices, 'the slices to publish')
  partial = path + '.partial'
  with tf.io.gfile.GFile(partial, 'w') as f:
    f.write(json.dumps(slices, indent=1, sort_keys=True))
  tf.io.gfile.rename(partial, path, overwrite=True)


def publish(report_dir: str, work_dir: str, quarantine_shards: Sequence[str],
            history_shards: Sequence[str], num_shards: int,
            summary: ReportSummary, flagged: Sequence[FlaggedRow],
            records: Mapping[int, bytes],
            previews: Sequence[report_html.ExamplePreview],
            slices: Optional[Mapping[str, Any]] = None) -> None:
  """Writes every file of the report folder; the quarantine and history shards and the
  score table move in from `work_dir`.

  The audit writes one quarantine shard per input file that had quarantined examples
  and one history shard per group of example ids that had examples; the others of the
  `num_shards` are written empty here, so each set is complete. Shards of an earlier
  audit into the same folder are removed first. `slices`, slices.json's content (what
  the flagged examples have in common; None: not computed), is written before
  summary.json (`write_slices`) and shown at the top of the page.
  """
  _move_score_table(work_dir, report_dir)
  _move_shards(report_dir, QUARANTINE_GLOB, quarantine_shards, num_shards,
               vocab.quarantine_shard_name, b'')
  _move_shards(report_dir, vocab.HISTORY_GLOB, history_shards, num_shards,
               vocab.history_shard_name, gzip.compress(b'', mtime=0))
  write_jsonl(os.path.join(report_dir, FLAGGED_FILE),
              [report_rows.flagged_row_to_json(row) for row in flagged])
  with tf.io.TFRecordWriter(os.path.join(report_dir, FLAGGED_EXAMPLES_FILE)) as writer:
    for row in flagged:
      writer.write(records[row.rank])
  write_slices(report_dir, slices)
  with tf.io.gfile.GFile(os.path.join(report_dir, SUMMARY_FILE), 'w') as f:
    f.write(json.dumps(summary.to_json(), indent=2, sort_keys=True))
  write_report_page(report_dir, summary, flagged, previews, slices)


def write_report_page(report_dir: str, summary: ReportSummary, flagged: Sequence[FlaggedRow],
                      previews: Sequence[report_html.ExamplePreview],
                      slices: Optional[Mapping[str, Any]] = None) -> None:
  """Writes report.html (and flagged.png for image data) into `report_dir`; the page
  renders the summary's and the rows' JSON, and slices.json's content (None: no
  section), as the files hold them."""
  sample = [{'split': q.split, 'example_id': q.example_id, 'kind': q.kind,
             'reason': q.reason}
            for q in report_format.load_report(report_dir).quarantine_rows(
                limit=QUARANTINE_SAMPLE)]
  html = report_html.render_report(
      summary.to_json(), [report_rows.flagged_row_to_json(row) for row in flagged], sample,
      previews, slices=slices)
  with tf.io.gfile.GFile(os.path.join(report_dir, REPORT_FILE), 'w') as f:
    f.write(html)
  with tempfile.TemporaryDirectory() as tmp:  # report_dir may be remote (gs://...).
    local = os.path.join(tmp, MONTAGE_FILE)
    if report_html.write_flagged_montage(local, previews):
      tf.io.gfile.copy(local, os.path.join(report_dir, MONTAGE_FILE), overwrite=True)
