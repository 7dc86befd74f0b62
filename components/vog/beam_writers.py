"""Writing what ScoreExamples computed: the scored examples and the report's work files.

    (files, scored, quarantined) | WriteScoredExamples -> {written, flagged}
    (files_read, scored, quarantined, class_stats, written, flagged)
        | WriteDifficultyReport      (summary.json, flagged rows, quarantine shards)

Scores meet their records again by position. The scores are grouped by input file
(`CoGroupByKey` on (split, file index)); each file is then read again, in order, and
zipped with its scores. Only the small score records cross the shuffle, never the
examples, and a worker holds the scores of one file at a time. The zip counts what it
writes, so seen = written + quarantined is checked on what was written.
"""

import json
import os
from typing import Any, Dict, Iterable, List, NamedTuple, Sequence, Tuple

from absl import logging
import apache_beam as beam

from components.vog import audit_summary
from components.vog import examples_io
from components.vog import report_format as fmt
from components.vog.beam_audit import FileRead, InputFile, ScoredExample, read_records
from components.vog.examples_io import Quarantined

FLAGGED_RECORDS_FILE = 'flagged_records.jsonl'  # rank order, with each example's bytes
SUMMARY_WORK_FILE = 'summary.json'


class FileWritten(NamedTuple):
  """What the writer did with one input file's records."""
  split: str
  file_index: int
  written: int
  written_flagged: int
  unmatched: int  # records with neither a score nor a quarantine entry, or the reverse


def vog_fields(s: ScoredExample) -> Dict[str, Any]:
  """The VoG features of one scored example, by their names in the report format."""
  return {fmt.VOG_SCORE: s.vog_score, fmt.VOG_RAW: s.vog_raw,
          fmt.VOG_PERCENTILE: s.vog_percentile, fmt.VOG_DECILE: s.vog_decile,
          fmt.VOG_FLAGGED: s.vog_flagged, fmt.VOG_TARGET_CLASS: s.target_class,
          fmt.VOG_BUCKET: s.vog_bucket}


class _ZipFileWithScores(beam.DoFn):
  """Reads one file again and pairs record i with the score of record i."""

  def __init__(self, example_id_key: str):
    self._example_id_key = example_id_key

  def process(self, element):
    (split, file_index), grouped = element
    input_file: InputFile = list(grouped['file'])[0]
    scores = {s.record_index: s for s in grouped['scored']}
    quarantined = set(grouped['quarantined'])
    written = written_flagged = unmatched = 0
    try:
      for index, serialized in read_records(input_file):
        s = scores.pop(index, None)
        if s is None:
          if index in quarantined:
            quarantined.discard(index)
          else:
            unmatched += 1
          continue
        written += 1
        yield (split, examples_io.with_vog_features(
            serialized, self._example_id_key, s.example_id, vog_fields(s),
            s.has_example_id))
        if s.vog_flagged:
          written_flagged += 1
          yield beam.pvalue.TaggedOutput('flagged', (s, serialized))
    except Exception as e:  # pylint: disable=broad-except
      # The first read reports damage; here what was not read again counts as unmatched.
      logging.error('VoG audit could not read %s again in full: %s', input_file.path, e)
    unmatched += len(scores) + len(quarantined)
    yield beam.pvalue.TaggedOutput('written', FileWritten(
        split, file_index, written, written_flagged, unmatched))


class WriteScoredExamples(beam.PTransform):
  """Writes each split's examples, VoG fields added, to <dir>/Split-<name>/*.gz.

  Takes {'files': InputFile, 'scored': ScoredExample, 'quarantined': Quarantined};
  returns {'written': FileWritten per input file, 'flagged': (ScoredExample, bytes)}.
  """

  def __init__(self, output_dir: str, splits: Sequence[str], example_id_key: str):
    super().__init__()
    self._output_dir = output_dir
    self._splits = list(splits)
    self._example_id_key = example_id_key

  def expand(self, inputs):
    splits = self._splits
    grouped = ({
        'file': inputs['files'] | 'KeyFiles' >> beam.Map(
            lambda f: ((f.split, f.file_index), f)),
        'scored': inputs['scored'] | 'KeyScores' >> beam.Map(
            lambda s: ((s.split, s.file_index), s)),
        'quarantined': inputs['quarantined'] | 'KeyQuarantined' >> beam.Map(
            lambda q: ((q.split, q.file_index), q.record_index)),
    } | 'GroupByFile' >> beam.CoGroupByKey())
    zipped = grouped | 'ZipWithScores' >> beam.ParDo(
        _ZipFileWithScores(self._example_id_key)).with_outputs(
            'written', 'flagged', main='examples')
    parts = zipped.examples | 'BySplit' >> beam.Partition(
        lambda pair, n: splits.index(pair[0]), len(splits))
    for split, part in zip(splits, parts):
      _ = (part
           | f'Bytes[{split}]' >> beam.Map(lambda pair: pair[1]).with_output_types(bytes)
           | f'Write[{split}]' >> beam.io.WriteToTFRecord(
               os.path.join(self._output_dir, f'Split-{split}', 'data_tfrecord'),
               file_name_suffix='.gz'))
    return {'written': zipped.written, 'flagged': zipped.flagged}


class _QuarantineLines(beam.DoFn):
  """Quarantine rows as JSON lines; each one tallied where it is written."""

  def process(self, q: Quarantined):
    yield beam.pvalue.TaggedOutput('tallies', audit_summary.quarantined_tally(q.split, q.kind))
    yield json.dumps(quarantine_row(q), sort_keys=True)


def quarantine_row(q: Quarantined) -> Dict[str, Any]:
  """The quarantine shard line of one quarantined example."""
  return fmt.quarantine_row_to_json(fmt.QuarantineRow(
      split=q.split, example_id=q.example_id, kind=q.kind, reason=q.reason,
      record=q.serialized))


def flagged_record_row(s: ScoredExample, serialized: bytes) -> Dict[str, Any]:
  """The flagged.jsonl line of one flagged example, with its bytes for the page."""
  return fmt.flagged_row_to_json(fmt.FlaggedRow(
      rank=s.review_rank, example_id=s.example_id, split=s.split, label=s.label,
      predicted_class=s.predicted_class, target_class=s.target_class,
      vog_score=s.vog_score, vog_raw=s.vog_raw, vog_percentile=s.vog_percentile,
      vog_bucket=s.vog_bucket), serialized)


def _flagged_lines(pairs: List[Tuple[ScoredExample, bytes]]) -> Iterable[str]:
  for s, serialized in sorted(pairs, key=lambda pair: pair[0].review_rank):
    yield json.dumps(flagged_record_row(s, serialized), sort_keys=True)


class WriteDifficultyReport(beam.PTransform):
  """Writes the report's work files under `work_dir`, summary included.

  Takes {'files_read', 'scored', 'quarantined', 'class_stats', 'written', 'flagged'};
  writes SUMMARY_WORK_FILE (combined by AuditSummaryFn, `summary_base` merged in),
  FLAGGED_RECORDS_FILE (at most `inspection_budget` rows) and the quarantine shards.
  """

  def __init__(self, work_dir: str, splits: Sequence[str], summary_base: Dict[str, Any]):
    super().__init__()
    self._work_dir = work_dir
    self._splits = list(splits)
    self._summary_base = summary_base

  def expand(self, inputs):
    quarantine = inputs['quarantined'] | 'QuarantineLines' >> beam.ParDo(
        _QuarantineLines()).with_outputs('tallies', main='lines')
    _ = quarantine.lines | 'WriteQuarantine' >> beam.io.WriteToText(
        os.path.join(self._work_dir, fmt.QUARANTINE_PREFIX),
        file_name_suffix=fmt.QUARANTINE_SUFFIX)
    _ = (inputs['flagged']
         | 'AllFlagged' >> beam.combiners.ToList()
         | 'FlaggedLines' >> beam.FlatMap(_flagged_lines)
         | 'WriteFlagged' >> beam.io.WriteToText(
             os.path.join(self._work_dir, FLAGGED_RECORDS_FILE), shard_name_template=''))
    tallies = (
        inputs['files_read'] | 'FileTallies' >> beam.Map(
            lambda f: audit_summary.file_tally(f.split, f.path, f.records, f.damage)),
        inputs['scored'] | 'ScoredTallies' >> beam.Map(
            lambda s: audit_summary.scored_tally(s.split, s.target_class, s.label,
                                                 s.predicted_class, s.vog_decile,
                                                 s.vog_flagged)),
        quarantine.tallies,
        inputs['class_stats'] | 'ClassTallies' >> beam.Map(
            lambda kv: audit_summary.class_stats_tally(kv[0][0], kv[0][1], kv[1])),
        inputs['written'] | 'WrittenTallies' >> beam.Map(
            lambda w: audit_summary.written_tally(w.split, w.written, w.written_flagged,
                                                  w.unmatched)),
    )
    _ = (tallies
         | 'AllTallies' >> beam.Flatten()
         | 'Summarize' >> beam.CombineGlobally(
             audit_summary.AuditSummaryFn(self._splits, self._summary_base))
         | 'SummaryJson' >> beam.Map(lambda s: json.dumps(s, indent=2, sort_keys=True))
         | 'WriteSummary' >> beam.io.WriteToText(
             os.path.join(self._work_dir, SUMMARY_WORK_FILE), shard_name_template=''))
    return quarantine.lines.pipeline
