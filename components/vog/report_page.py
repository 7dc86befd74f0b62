"""Rebuilding a report's review page (report.html, flagged.png) from its folder alone.

`vog-audit report` calls `rebuild_report_page` after an upgrade of the page, or when the
page was lost. The folder is read through report_format.load_report; the page is written
by report/report_folder.py, as the audit writes it.
"""

import os
from typing import List, Optional, Sequence

from absl import logging
import tensorflow as tf

from components.vog import user_module as user_module_lib
from components.vog import vocabulary as vocab
from components.vog.audit_errors import AuditConfigError
from components.vog.factories import ParserFactory
from components.vog.inputs import examples_io
from components.vog.inputs import record_files
from components.vog.report import json_checks
from components.vog.report import report_folder
from components.vog.report import report_format
from components.vog.report.summary_model import ReportSummary
from components.vog.settings import VogSettings


def rebuild_report_page(report_dir: str, module_file: Optional[str] = None) -> str:
  """Rebuilds report.html (and flagged.png) from a difficulty report folder alone.

  Reads the folder through report_format.load_report (slices.json too, when the folder
  has one); `module_file` only when the audit used a vog_inputs_fn. The transform graph
  the audit used (summary.json's `transform_graph`) makes the thumbnails' inputs; where it
  is gone the page is built without thumbnails. Returns the page's path. Raises
  AuditConfigError naming a missing or malformed file (slices.json included).
  """
  for path in [os.path.join(report_dir, name) for name in (
      vocab.SUMMARY_FILE, vocab.FLAGGED_FILE, vocab.FLAGGED_EXAMPLES_FILE)] + tf.io.gfile.glob(
          os.path.join(report_dir, vocab.QUARANTINE_GLOB)):
    # A missing file is named by the loader; one that is no regular file is never
    # opened (a FIFO would wait forever, a folder fail in TensorFlow's reader).
    problem = (record_files.file_problem(path) if tf.io.gfile.exists(path) else None)
    if problem is not None:
      raise AuditConfigError(f'{problem} - give the difficulty_report folder of an audit')
  try:
    report = report_format.load_report(report_dir)
    examples = report.flagged_examples()
  except json_checks.ReportFormatError as e:
    raise AuditConfigError(str(e)) from e
  except RecursionError:
    raise AuditConfigError(f'{os.path.join(report_dir, vocab.SUMMARY_FILE)} or '
                           f'{vocab.FLAGGED_FILE} nests too deep to be an audit\'s - give the '
                           'difficulty_report folder of an audit') from None
  except (OSError, tf.errors.OpError) as e:
    raise AuditConfigError(f'the report in {report_dir} cannot be read '
                           f'({_error_text(e)})') from None
  summary = report.summary
  if summary.model_inputs is None or summary.num_classes is None:
    raise AuditConfigError(f'the summary.json in {report_dir} lacks model_inputs or '
                           'num_classes; it was written by an older release - re-run the '
                           'audit')
  input_specs = input_specs_of(summary)
  records = {row.rank: record for row, record in zip(report.flagged, examples)}
  parser, why = report_parser(report_dir, summary, input_specs, module_file)
  if parser is None:
    logging.warning('%s; report.html is built without thumbnails', why)
    parser = _NoThumbnails()
  try:
    report_folder.write_report_page(
        report_dir, summary, report.flagged,
        report_folder.previews_of(parser, input_specs, report.flagged, records),
        slices=None if report.slices is None else report.slices.content)
  except json_checks.ReportFormatError as e:  # a bad quarantine shard, read for the sample
    raise AuditConfigError(str(e)) from e
  except (OSError, tf.errors.OpError) as e:  # a folder this user cannot write, say
    raise AuditConfigError(f'the review page cannot be written into {report_dir} '
                           f'({_error_text(e)}) - make the folder writable, or copy it '
                           'somewhere writable and rebuild the page there') from None
  return report.page_path


def input_specs_of(summary: ReportSummary) -> List[examples_io.InputSpec]:
  """The model inputs the audit recorded in its summary (`model_inputs`, not None)."""
  return [examples_io.InputSpec(i.name, tuple(i.shape), i.dtype)
          for i in summary.model_inputs]


def report_parser(report_dir: str, summary: ReportSummary,
                  input_specs: Sequence[examples_io.InputSpec],
                  module_file: Optional[str] = None):
  """The parser that makes a report's flagged examples into model inputs again, as the
  audit made them (for their thumbnails): (parser, ''), or (None, why) when the audit's
  transform graph is gone. `module_file` only when the audit used a vog_inputs_fn.
  Raises AuditConfigError when the summary's settings are not valid."""
  try:
    settings = VogSettings.from_json(summary.settings)
  except ValueError as e:
    raise AuditConfigError(f'the settings in {report_dir}/{vocab.SUMMARY_FILE} are not '
                           f'valid: {e}') from e
  transform_graph = summary.transform_graph
  if transform_graph and not tf.io.gfile.isdir(transform_graph):
    return None, f'the transform graph {transform_graph} of the audit is gone'
  return ParserFactory(input_specs, settings, summary.num_classes,
                       user_module_lib.read_user_module(module_file),
                       transform_graph or None)(), ''


def _error_text(error: Exception) -> str:
  """What a file system error says, without TensorFlow's traceback-like detail."""
  text = getattr(error, 'strerror', None) or getattr(error, 'message', None) or str(error)
  return ' '.join(str(text).split())[:300]


class _NoThumbnails:
  """A parser for the report's previews that makes no model inputs (no thumbnails)."""

  def parse(self, split: str, serialized: bytes) -> examples_io.Quarantined:
    return examples_io.Quarantined(split, examples_io.fingerprint(serialized),
                                   'no transform graph', 'the transform graph is gone',
                                   serialized)
