"""Writing what ScoreExamples computed: the scored examples and the report's work files.

    (files, scored, quarantined, ranking)
        | WriteScoredExamples -> {written, flagged, tallies, history}
    (files_read, quarantined, class_stats, written, flagged, tallies, more_tallies)
        | WriteDifficultyReport -> the summary's path

Scores meet their records again by position. The raw scores are grouped by input file
(`CoGroupByKey` on (split, file index)) with a copy of the Ranking; each file is then
read again, in order, and zipped with its scores, each placed by the Ranking (score,
percentile, decile, bucket, review rank) as it is written. Only the small score records
cross the shuffle, never the examples, and a worker holds the scores of one file at a
time.

Every file is written whole by one DoFn call under a temporary name and renamed into
place, named after what it holds (input file k of n gives output shard k of n), so a
retried or repeated bundle rewrites the same file instead of adding another. Each
writer counts what it wrote, and the summary is combined from those counts.
"""

import json
import os
from typing import Any, Dict, Iterable, List, NamedTuple, Sequence, Tuple

from absl import logging
import apache_beam as beam
import numpy as np

from components.vog import audit_summary
from components.vog import beam_audit
from components.vog import drift as drift_lib
from components.vog import examples_io
from components.vog import percentiles
from components.vog import record_files
from components.vog import report_format as fmt
from components.vog.beam_audit import (InputFile, ScoredExample, Tagged, read_records,
                                       split_by_tag)
from components.vog.examples_io import Quarantined

FLAGGED_RECORDS_FILE = 'flagged_records.jsonl'  # rank order, with each example's bytes
SUMMARY_WORK_FILE = 'summary.json'
SCORED_FILE_PREFIX = 'data_tfrecord'
# zlib level 1: images and other float data barely compress at any level, and on them
# level 6 costs about a fifth more time for a file 0.3% smaller.
GZIP_LEVEL = 1


class FileWritten(NamedTuple):
  """What the writer did with one input file's records."""
  split: str
  file_index: int
  written: int
  written_flagged: int
  unmatched: int  # records without a score or a quarantine entry, or scores without a record


def vog_fields(s: ScoredExample) -> Dict[str, Any]:
  """The VoG features of one scored example, by their names in the report format."""
  return {fmt.VOG_SCORE: s.vog_score, fmt.VOG_RAW: s.vog_raw,
          fmt.VOG_PERCENTILE: s.vog_percentile, fmt.VOG_DECILE: s.vog_decile,
          fmt.VOG_FLAGGED: s.vog_flagged, fmt.VOG_TARGET_CLASS: s.target_class,
          fmt.VOG_BUCKET: s.vog_bucket}


def signal_fields(s: ScoredExample) -> Dict[str, float]:
  """The label-error signals of one scored example by field name; {} without them."""
  return dict(zip(fmt.SIGNAL_FIELDS, s.signals))


def scored_file_path(output_dir: str, split: str, file_index: int, num_files: int) -> str:
  """Where the scored examples of input file `file_index` of a split are written."""
  return os.path.join(output_dir, f'Split-{split}',
                      f'{SCORED_FILE_PREFIX}-{file_index:05d}-of-{num_files:05d}.gz')


class _ZipFileWithScores(beam.DoFn):
  """Reads one input file again, pairs record i with score i and writes the result.

  Yields ('tally', ...) and ('history', HistoryEntry) for each example written,
  ('written', FileWritten) once, and ('flagged', (ScoredExample, bytes)) for each flagged
  example; records with a quarantine entry are left out of the output.
  """

  def __init__(self, output_dir: str, files_per_split: Dict[str, int], example_id_key: str):
    self._output_dir = output_dir
    self._files_per_split = dict(files_per_split)
    self._example_id_key = example_id_key

  def process(self, element: Tuple[Tuple[str, int], Dict[str, Iterable[Any]]]
              ) -> Iterable[Tagged]:
    (split, file_index), grouped = element
    input_file: InputFile = list(grouped['file'])[0]
    scores = {s.record_index: s for s in grouped['scored']}
    quarantined = set(grouped['quarantined'])
    rankings = list(grouped['ranking'])
    if scores and len(rankings) != 1:
      raise RuntimeError(f'{len(rankings)} rankings reached the scores of {input_file.path}; '
                         'expected exactly 1')
    if scores:
      scores = placed_all(scores, rankings[0])
    written = written_flagged = unmatched = 0
    flagged: List[Tuple[ScoredExample, bytes]] = []
    path = scored_file_path(self._output_dir, split, file_index, self._files_per_split[split])
    with record_files.AtomicFile(path, GZIP_LEVEL) as out:
      try:
        for index, serialized in read_records(input_file):
          s = scores.pop(index, None)
          if s is None:
            if index in quarantined:
              quarantined.discard(index)
            else:
              unmatched += 1
            continue
          out.write(record_files.frame(examples_io.with_vog_features(
              serialized, self._example_id_key, s.example_id, vog_fields(s),
              s.has_example_id, signal_fields(s))))
          written += 1
          yield 'tally', audit_summary.scored_tally(s.split, s.target_class, s.label,
                                                    s.predicted_class, s.vog_decile,
                                                    s.vog_flagged, s.raw_hard, s.signals)
          yield 'history', drift_lib.HistoryEntry(
              s.example_id, s.split, s.file_index, s.record_index, s.target_class,
              s.vog_flagged, s.vog_percentile, s.review_rank)
          if s.vog_flagged:
            written_flagged += 1
            flagged.append((s, serialized))
      except record_files.DamagedRecordFile as e:
        # The first read reports damage; what was not read again counts as unmatched.
        logging.error('VoG audit could not read %s again in full: %s', input_file.path, e)
    unmatched += len(scores) + len(quarantined)
    yield 'written', FileWritten(split, file_index, written, written_flagged, unmatched)
    for pair in flagged:
      yield 'flagged', pair


def placed_all(scores: Dict[int, ScoredExample], ranking: percentiles.Ranking
               ) -> Dict[int, ScoredExample]:
  """The scores of one input file (one split) with their score, percentile, decile,
  bucket, review rank and raw_hard from `ranking`, by record index, and for a flagged
  example the signals that agree."""
  rows = list(scores.values())
  split = rows[0].split
  ranked = np.asarray([s.rank_value for s in rows], dtype=np.float64)
  placed = ranking.place_all(split, [s.target_class for s in rows], ranked,
                             [s.position for s in rows], [s.vog_raw for s in rows])
  raw_hard = ranking.raw_percentiles(split, ranked) > ranking.cuts[1]
  out = {}
  for s, (score, p, decile, bucket, rank), hard in zip(rows, placed, raw_hard):
    agreeing = (ranking.agreeing(split, beam_audit.suspicions(s.vog_raw, s.signals))
                if rank else ())
    out[s.record_index] = s._replace(
        vog_score=score, vog_percentile=p, vog_decile=decile, vog_bucket=bucket,
        vog_flagged=int(rank > 0), review_rank=rank, raw_hard=int(hard), agreeing=agreeing)
  return out


class WriteScoredExamples(beam.PTransform):
  """Writes each split's examples, VoG fields added, to <dir>/Split-<name>/*.gz.

  Takes {'files': InputFile, 'scored': ScoredExample (vog_raw), 'quarantined':
  Quarantined, 'ranking': the one Ranking}; returns {'written': FileWritten per input
  file, 'flagged': (ScoredExample, bytes), 'tallies': one per example written,
  'history': drift.HistoryEntry per example written}. Input file k of a split's n
  becomes output file k of n.
  """

  def __init__(self, output_dir: str, files_per_split: Dict[str, int], example_id_key: str):
    super().__init__()
    self._output_dir = output_dir
    self._files_per_split = dict(files_per_split)
    self._example_id_key = example_id_key

  def expand(self, inputs):
    file_keys = [(split, i) for split, n in self._files_per_split.items() for i in range(n)]
    grouped = ({
        'file': inputs['files'] | 'KeyFiles' >> beam.Map(
            lambda f: ((f.split, f.file_index), f)),
        'scored': inputs['scored'] | 'KeyScores' >> beam.Map(
            lambda s: ((s.split, s.file_index), s)),
        'quarantined': inputs['quarantined'] | 'KeyQuarantined' >> beam.Map(
            lambda q: ((q.split, q.file_index), q.record_index)),
        # The Ranking is bounded; one copy goes to each input file.
        'ranking': inputs['ranking'] | 'CopyPerFile' >> beam.FlatMap(
            lambda r: [(key, r) for key in file_keys]),
    } | 'GroupByFile' >> beam.CoGroupByKey())
    tagged = grouped | 'ZipWithScores' >> beam.ParDo(_ZipFileWithScores(
        self._output_dir, self._files_per_split, self._example_id_key))
    parts = split_by_tag(tagged, {'written': FileWritten,
                                  'flagged': Tuple[ScoredExample, bytes],
                                  'tally': audit_summary.Tally,
                                  'history': drift_lib.HistoryEntry})
    return {'written': parts['written'], 'flagged': parts['flagged'],
            'tallies': parts['tally'], 'history': parts['history']}


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
      vog_bucket=s.vog_bucket, signals=signal_fields(s) or None,
      agreeing=list(s.agreeing) if s.signals else None,
      top_sigma=s.top_sigma or None), serialized)


class _WriteQuarantineShard(beam.DoFn):
  """Writes the quarantined examples of one input file as one shard; tallies each row."""

  def __init__(self, work_dir: str, num_shards: int):
    self._work_dir = work_dir
    self._num_shards = num_shards

  def process(self, element: Tuple[int, Iterable[Quarantined]]
              ) -> Iterable[audit_summary.Tally]:
    shard, rows = element
    rows = sorted(rows, key=lambda q: q.record_index)
    record_files.write_lines(os.path.join(self._work_dir, fmt.quarantine_shard_name(shard,
                                                                         self._num_shards)),
                 (json.dumps(quarantine_row(q), sort_keys=True) for q in rows))
    for q in rows:
      yield audit_summary.quarantined_tally(q.split, q.kind)


def _write_flagged(pairs: List[Tuple[ScoredExample, bytes]], path: str) -> str:
  ordered = sorted(pairs, key=lambda pair: pair[0].review_rank)
  record_files.write_lines(path, (json.dumps(flagged_record_row(s, b), sort_keys=True)
                      for s, b in ordered))
  return path


def _write_summary(summary: Dict[str, Any], path: str) -> str:
  record_files.write_lines(path, [json.dumps(summary, indent=2, sort_keys=True)])
  return path


class WriteDifficultyReport(beam.PTransform):
  """Writes the report's work files under `work_dir`; returns the summary's path.

  Takes {'files_read', 'quarantined', 'class_stats', 'written', 'flagged', 'tallies'}
  ('tallies' being the scored examples' tallies that WriteScoredExamples counted) and
  optionally 'more_tallies', the tallies of other writers (the history's).
  Writes SUMMARY_WORK_FILE (combined by AuditSummaryFn from what the writers counted,
  `summary_base` merged in), FLAGGED_RECORDS_FILE (at most `inspection_budget` rows)
  and one quarantine shard per input file that had quarantined examples, numbered by
  the file's place in `shard_of` ((split, file index) -> shard) of `num_shards`.
  """

  def __init__(self, work_dir: str, splits: Sequence[str], summary_base: Dict[str, Any],
               shard_of: Dict[Tuple[str, int], int], num_shards: int):
    super().__init__()
    self._work_dir = work_dir
    self._splits = list(splits)
    self._summary_base = summary_base
    self._shard_of = dict(shard_of)
    self._num_shards = num_shards

  def expand(self, inputs):
    shard_of = self._shard_of
    quarantine_tallies = (
        inputs['quarantined']
        | 'KeyByShard' >> beam.Map(lambda q: (shard_of[(q.split, q.file_index)], q)
                                   ).with_output_types(Tuple[int, Quarantined])
        | 'GroupByShard' >> beam.GroupByKey()
        | 'WriteQuarantine' >> beam.ParDo(_WriteQuarantineShard(self._work_dir,
                                                                self._num_shards)))
    flagged_path = (
        inputs['flagged']
        | 'AllFlagged' >> beam.CombineGlobally(
            beam.combiners.ToListCombineFn()).without_defaults()
        | 'WriteFlagged' >> beam.Map(
            _write_flagged, os.path.join(self._work_dir, FLAGGED_RECORDS_FILE)))
    tallies = (
        inputs['files_read'] | 'FileTallies' >> beam.Map(
            lambda f: audit_summary.file_tally(f.split, f.path, f.records, f.damage)),
        inputs['tallies'],
        quarantine_tallies,
        inputs['class_stats'] | 'ClassTallies' >> beam.Map(
            lambda kv: audit_summary.class_stats_tally(kv[0][0], kv[0][1], kv[1])),
        inputs['written'] | 'WrittenTallies' >> beam.Map(
            lambda w: audit_summary.written_tally(w.split, w.written, w.written_flagged,
                                                  w.unmatched)),
        # The flagged rows are counted once they are written.
        flagged_path | 'FlaggedWritten' >> beam.Map(
            lambda _: audit_summary.flagged_file_tally()),
    ) + ((inputs['more_tallies'],) if 'more_tallies' in inputs else ())
    summary_path = (
        tallies
        | 'AllTallies' >> beam.Flatten()
        | 'Summarize' >> beam.CombineGlobally(
            audit_summary.AuditSummaryFn(self._splits, self._summary_base)
        ).without_defaults()
        | 'WriteSummary' >> beam.Map(
            _write_summary, os.path.join(self._work_dir, SUMMARY_WORK_FILE)))
    return summary_path
