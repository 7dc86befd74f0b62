"""One VoG audit from a plan to a published report: run Beam, check, publish.

The TFX executor and `vog-audit score` both call audit_plan.plan_audit, then
`audit_and_publish` (or `run_audit`, its summary as JSON), so the component and the
command line share one code path. Configuration problems fail in planning, before Beam
starts; per-example problems go to the quarantine shards. summary.json is written
through summary_model: its header here, its counts in the pipeline
(dataflow/audit_summary.py), the drift, counters and slices once Beam has finished.
The pipeline also writes slices.json (dataflow/slices.py: what the flagged examples
share), which is published beside summary.json, its first rows repeated there.
"""

import dataclasses
import datetime
import json
import os
import uuid
from typing import Any, Dict, List, Mapping, Optional, Tuple

from absl import logging
import apache_beam as beam
import tensorflow as tf

from components.vog import vocabulary as vocab
from components.vog.audit_errors import AuditInputError
from components.vog.audit_plan import AuditPlan
from components.vog.dataflow import audit_summary
from components.vog.dataflow import beam_audit
from components.vog.dataflow import beam_writers
from components.vog.dataflow import drift as drift_lib
from components.vog.dataflow import slices as slices_lib
from components.vog.factories import ParserFactory
from components.vog.factories import ScorerFactory
from components.vog.inputs import record_files
from components.vog.report import drift_model
from components.vog.report import report_folder
from components.vog.report import report_format
from components.vog.report import summary_model
from components.vog.report.report_rows import FlaggedRow
from components.vog.report.summary_model import ReportSummary
from components.vog.settings import VogSettings


def run_audit(plan: AuditPlan, pipeline: beam.Pipeline, scored_examples_dir: str,
              report_dir: str, progress=None) -> Dict[str, Any]:
  """`audit_and_publish`, returning summary.json's content."""
  return audit_and_publish(plan, pipeline, scored_examples_dir, report_dir,
                           progress).to_json()


def audit_and_publish(plan: AuditPlan, pipeline: beam.Pipeline, scored_examples_dir: str,
                      report_dir: str, progress=None) -> ReportSummary:
  """Runs the Beam audit and publishes the report; returns its summary.

  The pipeline writes the scored examples and the report's work files (the summary
  is combined inside it); then, before anything is published, the driver checks that
  every example read was written or quarantined (AuditLostExamples otherwise) and
  that no input file was damaged (AuditInputError naming the file and the record
  where reading stopped). `progress` is an optional progress.ProgressSink.
  """
  work_dir = os.path.join(report_dir, f'.work-{uuid.uuid4().hex[:8]}')
  tf.io.gfile.makedirs(work_dir)
  parser_factory = ParserFactory(plan.input_specs, plan.settings, plan.num_classes,
                                 plan.user_module, plan.transform_graph)
  _add_audit(pipeline, plan, parser_factory, scored_examples_dir, work_dir, progress)
  result = pipeline.run()
  result.wait_until_finish()

  counted = _read_work_summary(work_dir)
  flagged, records = report_folder.read_flagged(
      os.path.join(work_dir, beam_writers.FLAGGED_RECORDS_FILE))
  audit_summary.check_conservation(counted, len(flagged))
  drift = None if plan.baseline is None else drift_lib.class_drift(counted, plan.baseline)
  flagged = _with_drift_status(flagged, drift, work_dir)
  slices, slices_note = (_read_slices(work_dir) if slice_leave_out(plan.settings) is not None
                         else (None, None))
  summary = summary_model.parse_summary(
      counted, os.path.join(work_dir, beam_writers.SUMMARY_WORK_FILE)).completed(
          drift, _counters(result)).with_slices(slices_note)
  _refuse_damaged_files(summary)
  report_folder.publish(
      report_dir, work_dir, tf.io.gfile.glob(os.path.join(work_dir, vocab.QUARANTINE_GLOB)),
      tf.io.gfile.glob(os.path.join(work_dir, vocab.HISTORY_GLOB)),
      len(_all_units(plan)), summary, flagged, records,
      report_folder.previews_of(parser_factory(), plan.input_specs, flagged, records),
      slices=slices)
  _remove_work_files(work_dir, scored_examples_dir)
  counts = summary.counts
  logging.info('VoG audit done: seen %d, scored %d, quarantined %d, flagged %d',
               counts['seen'], counts['scored'], counts['quarantined'], counts['flagged'])
  return summary


def _all_units(plan: AuditPlan) -> List[beam_audit.WorkUnit]:
  return [u for units in plan.split_units.values() for u in units]


def _add_audit(pipeline: beam.Pipeline, plan: AuditPlan, parser_factory: ParserFactory,
               scored_examples_dir: str, work_dir: str, progress) -> None:
  """Adds the audit's transforms to `pipeline`: read, score, write the scored examples
  and the report's work files, and, with a baseline, match the history."""
  settings = plan.settings
  splits = list(plan.split_files)
  scorer_factory = ScorerFactory(plan.entries, plan.user_module, settings.target,
                                 settings.label_mode,
                                 gradient_layers=settings.gradient_layers,
                                 pad_id=settings.pad_id)
  all_units = _all_units(plan)
  shard_of = {(u.split, u.unit_index): i for i, u in enumerate(all_units)}

  baseline = plan.baseline
  comparable = baseline is not None and baseline.unavailable is None
  not_examined = slices_lib.features_not_examined(pipeline.runner)
  if not_examined:
    logging.warning('VoG slice statistics: %s', not_examined)
  outputs = beam_writers.FileOutputs(
      scored_dir=scored_examples_dir, work_dir=work_dir,
      units_per_split={s: len(u) for s, u in plan.split_units.items()},
      copy_splits=tuple(settings.copied_splits(splits)),
      compression=settings.output_compression, example_id_key=settings.example_id_key,
      rank_by=settings.ranked_by, history_shard_of=shard_of,
      num_history_shards=len(all_units), write_history=not comparable,
      with_signals=settings.label_mode == 'label',
      slice_leave_out=slice_leave_out(settings), memorised=plan.memorised,
      slice_features=not_examined is None)

  units = pipeline | 'ListWorkUnits' >> beam.Create(all_units)
  read = units | 'ReadRecords' >> beam_audit.ReadRecordBatches(settings.batch_size, progress)
  results = read['batches'] | 'ScoreExamples' >> beam_audit.ScoreExamples(
      settings, scorer_factory, parser_factory, progress)
  # Records above max_record_bytes are quarantined by the reader, the others by the scorer.
  quarantined = ((read['quarantined'], results['quarantined'])
                 | 'AllQuarantined' >> beam.Flatten())
  written = ({'units': units, 'files_read': read['files'], 'scored': results['scored'],
              'quarantined': quarantined, 'ranking': results['ranking']}
             | 'WriteScoredExamples' >> beam_writers.WriteScoredExamples(outputs))
  # With a baseline, each example is matched with its row in the baseline's history by
  # example_id; without one, the writers wrote the history already.
  history = written.pop('history')
  more = []
  if outputs.slice_leave_out is not None:
    # What the flagged examples have in common: every split's label pairs, and the
    # feature values of the copied splits, whose records the writers read anyway.
    slices_path = (
        {'batches': written.pop('slice_batches'), 'pairs': written.pop('slice_pairs')}
        | 'FindWhatFlaggedExamplesShare' >> slices_lib.FindWhatFlaggedExamplesShare(
            work_dir, splits, outputs.copy_splits, outputs.slice_leave_out,
            features_not_examined=not_examined))
    # The summary waits for slices.json too, so that every runner runs that branch.
    more.append(slices_path | 'SlicesWritten' >> beam.Map(
        lambda _: audit_summary.DoneTally(audit_summary.SLICES_FILE_DONE)))
  if comparable:
    then = pipeline | 'ListBaselineHistory' >> beam.Create(list(baseline.history_paths))
    more.append(({'now': history, 'then': then}
                 | 'MatchHistory' >> drift_lib.MatchHistory(
                     work_dir, len(all_units)))['tallies'])
  more_tallies = ({'more_tallies': more | 'MoreTallies' >> beam.Flatten()} if more
                  else {})
  # The report is written last: its summary waits for every other writer.
  _ = ({'files_read': read['files'], 'quarantined': quarantined,
        'class_stats': results['class_stats'], **more_tallies, **written}
       | 'WriteDifficultyReport' >> beam_writers.WriteDifficultyReport(
           work_dir, splits, summary_header(plan).to_json(), shard_of, len(all_units),
           hard_cut=settings.bucket_percentiles[1]))


def slice_leave_out(settings: VogSettings) -> Optional[Tuple[str, ...]]:
  """The features the slice statistics leave out besides the example id and the audit's
  own fields: the label, and the setting `slice_leave_out` (FileOutputs.slice_leave_out;
  None would leave the slice statistics out of the audit)."""
  named = ([settings.label_key] if settings.label_key else []) + list(settings.slice_leave_out)
  return tuple(dict.fromkeys(named))


def summary_header(plan: AuditPlan) -> summary_model.SummaryHeader:
  """What summary.json says of the plan; the pipeline adds what it counted.

  `settings` are the plan's, rank_by `auto` resolved to what it chose; `auto_rank` says
  why (null when rank_by named what ranks, or without labels), `memorisation` what the
  sample of training labels showed (null without labels, measured whatever rank_by is),
  `flag_kind_rule` how the flagged rows got their kind.
  """
  settings = plan.settings
  splits = list(plan.split_files)
  where = 'the audit plan'
  return summary_model.SummaryHeader(
      created_at=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
      settings=dict(settings.to_json(), splits=splits),
      ranked_by=settings.ranked_by,
      checkpoints=tuple(summary_model.Checkpoint(e.path, e.epoch, e.step)
                        for e in plan.entries),
      num_classes=plan.num_classes,
      model_inputs=tuple(summary_model.ModelInput(i.name, tuple(i.shape), i.dtype)
                         for i in plan.input_specs),
      input_files={split: len(files) for split, files in plan.split_files.items()},
      copied_splits=tuple(settings.copied_splits(splits)),
      baseline=None if plan.baseline is None else plan.baseline.info,
      transform_graph=plan.transform_graph,
      signals=summary_model.signals_note(settings.label_mode),
      auto_rank=(None if plan.auto_rank is None
                 else summary_model.parse_auto_rank(plan.auto_rank, where)),
      memorisation=(None if plan.memorisation is None else
                    summary_model.parse_memorisation(plan.memorisation.to_json(), where)),
      flag_kind_rule=summary_model.flag_kind_rule(
          settings.label_mode,
          None if plan.memorisation is None else plan.memorisation.memorised))


def _with_drift_status(flagged: List[FlaggedRow], drift: Optional[drift_model.Drift],
                       work_dir: str) -> List[FlaggedRow]:
  """The flagged rows with their drift status and streak, when the drift could be
  compared; AuditLostExamples for a row the history match gave none."""
  if drift is None or drift.unavailable is not None:
    return flagged
  statuses = drift_lib.read_flag_status(work_dir)
  out = []
  for row in flagged:
    status, streak = statuses.get(row.rank, (None, None))
    if status is None:
      raise audit_summary.AuditLostExamples(
          f'flagged example rank {row.rank} ({row.example_id}) has no drift status; '
          'nothing was published - report this with the Beam logs')
    out.append(dataclasses.replace(row, drift_status=status, flagged_streak=streak))
  return out


def _refuse_damaged_files(summary: ReportSummary) -> None:
  if summary.damaged_files:
    raise AuditInputError('; '.join(
        f'input file {d.damage} (split {d.split!r})' for d in summary.damaged_files)
        + ' - nothing was published; rewrite the damaged files or leave them out')


def _remove_work_files(work_dir: str, scored_examples_dir: str) -> None:
  tf.io.gfile.rmtree(work_dir)
  # What writers that were killed and retried left in the scored copies' folder.
  scored_temp = record_files.temp_folder(scored_examples_dir)
  if tf.io.gfile.exists(scored_temp):
    tf.io.gfile.rmtree(scored_temp)


def _read_slices(work_dir: str
                 ) -> Tuple[Dict[str, Any], summary_model.SlicesNote]:
  """slices.json's content as the pipeline wrote it in the work folder, checked by the
  report's own reader (what a report reader would refuse is not published), and the
  summary's note of it; AuditLostExamples when it is missing or malformed."""
  path = os.path.join(work_dir, vocab.SLICES_FILE)
  if not tf.io.gfile.exists(path):
    raise audit_summary.AuditLostExamples(
        f'the Beam pipeline finished without writing {path}; nothing was published - '
        'report this with the Beam logs')
  try:
    content = report_format.read_slices(path).content
    return content, summary_model.slices_note(content, vocab.SLICES_FILE, path)
  except ValueError as e:  # ReportFormatError is one
    raise audit_summary.AuditLostExamples(
        f'the Beam pipeline wrote slice statistics that cannot be read ({e}); nothing was '
        'published - report this with the Beam logs') from None


def _read_work_summary(work_dir: str) -> Dict[str, Any]:
  """The summary the pipeline combined, as JSON (header and counts)."""
  path = os.path.join(work_dir, beam_writers.SUMMARY_WORK_FILE)
  if not tf.io.gfile.exists(path):
    raise audit_summary.AuditLostExamples(
        f'the Beam pipeline finished without writing {path}; nothing was published - '
        'report this with the Beam logs')
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _counters(result) -> Mapping[str, int]:
  """The audit's Beam counters (seen, scored, quarantined, batches) as the runner has them.

  Empty where the runner has no metrics API (the Dask runner, for one).
  """
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=g-import-not-at-top
  try:
    found = result.metrics().query(
        MetricsFilter().with_namespace(beam_audit.NAMESPACE))['counters']
  except (NotImplementedError, AttributeError):
    return {}
  counters: Dict[str, int] = {}
  for counter in found:
    value = counter.committed if counter.committed is not None else counter.attempted
    counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value)
  return counters
