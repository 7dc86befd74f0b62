"""Writing what ScoreExamples computed: the scored examples and the report's work files.

    (units, files_read, scored, quarantined, ranking)
        | WriteScoredExamples -> {written, flagged, tallies, history}
          (+ {slice_pairs, slice_batches} for slices.FindWhatFlaggedExamplesShare)
    (files_read, quarantined, class_stats, written, flagged, tallies, more_tallies)
        | WriteDifficultyReport -> the summary's path

Scores meet their records again by position. The scored batches (columns, one record
per batch) are grouped by work unit (beam_audit.WorkUnit: a run of a split's input
files, read as one stream; `CoGroupByKey` on (split, unit index)) with the part of the
Ranking that unit needs (Ranking.for_file) and the FileRead of each of its files (which
turn positions back into file and record for the score table); the writer of a unit
places all its examples at once (score, percentile, decile, bucket, review rank) and
writes:

* its score table shard (score_table.py): one row per scored example, for every split;
* for the splits the Evaluator reads (`copy_splits`), the unit's files again, record by
  record, into one file,
  each scored example with its VoG fields appended as bytes (examples_io), quarantined
  ones left out; the other splits are read again only up to their last flagged
  example, for the bytes of the flagged rows;
* its history rows when there is no baseline (with one, drift.MatchHistory writes them
  after matching by example_id);
* one tally of counts for the whole unit, never one per example.

Only the compact batches cross the shuffle, never the examples, and a worker holds the
scores of one unit at a time.

Every file is written whole by one DoFn call under a temporary name in the output
root's `.writing/` folder (record_files.TEMP_FOLDER, which no output pattern matches)
and renamed into place, named after what it holds (work unit k of n gives output shard
k of n), so a retried or repeated bundle rewrites the same file instead of adding
another, and many small input files give few output files. Each
writer counts what it wrote, and the summary is combined from those counts.
"""

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components.vog.dataflow import audit_summary
from components.vog.dataflow import drift as drift_lib
from components.vog.inputs import examples_io
from components.vog.compute import percentiles
from components.vog.inputs import record_files
from components.vog.report import report_rows
from components.vog import vocabulary as vocab
from components.vog.dataflow import score_batch
from components.vog.dataflow import slices as slices_lib
from components.vog.report import score_table
from components.vog.compute import flag_kinds
from components.vog.compute import signals as signals_lib
from components.vog.dataflow.beam_audit import FileRead, Tagged, WorkUnit, read_unit, split_by_tag
from components.vog.inputs.examples_io import Quarantined
from components.vog.dataflow.score_batch import ScoredBatch

FLAGGED_RECORDS_FILE = 'flagged_records.jsonl'  # rank order, with each example's bytes
# The flagged rows are written in parts of this many ranks, each by its own worker, and
# the parts are then joined in rank order by streaming them: no worker holds more than
# one part's records.
FLAGGED_ROWS_PER_PART = 500
FLAGGED_PARTS_DIR = 'flagged_parts'
SUMMARY_WORK_FILE = 'summary.json'
SCORED_FILE_PREFIX = 'data_tfrecord'
# zlib level 1: images and other float data barely compress at any level, and on them
# level 6 costs about a fifth more time for a file 0.3% smaller.
GZIP_LEVEL = 1


class FileWritten(NamedTuple):
  """What the writer did with one work unit's records."""
  split: str
  unit_index: int
  written: int
  written_flagged: int
  unmatched: int  # records without a score or a quarantine entry, or scores without a record


class FileOutputs(NamedTuple):
  """Where and how the writers write: the scored copies' folder and splits, the score
  table's and history's folder (the report's work folder), compression, and the
  number of work units per split (output shard k of n)."""
  scored_dir: str
  work_dir: str
  units_per_split: Dict[str, int]
  copy_splits: Tuple[str, ...]
  compression: str  # 'gzip' or 'none' (settings.COMPRESSIONS)
  example_id_key: str
  rank_by: str
  history_shard_of: Dict[Tuple[str, int], int]  # (split, unit index) -> history shard
  num_history_shards: int
  write_history: bool  # False when drift.MatchHistory writes it (with a baseline)
  with_signals: bool  # label_mode='label': the score tables have the signal columns
  # None: no slice statistics. Else the writers also yield what slices.py counts (every
  # unit's label pairs, the copied splits' records as RecordBatches), leaving out these
  # features (the label) besides the example id and the audit's own.
  slice_leave_out: Optional[Tuple[str, ...]] = None
  # False: the slice statistics count the label pairs alone, and the copied splits'
  # records are not decoded for them (slices.features_not_examined).
  slice_features: bool = True
  # Whether the model memorised its training labels (auto_rank.Evidence.memorised):
  # picks flag_kinds' rule for the kind of each flagged example with signals.
  memorised: bool = False


def scored_file_path(output_dir: str, split: str, unit_index: int, num_units: int,
                     compression: str = 'gzip') -> str:
  """Where the scored examples of work unit `unit_index` of a split are written."""
  suffix = '.gz' if compression == 'gzip' else ''
  return os.path.join(output_dir, f'Split-{split}',
                      f'{SCORED_FILE_PREFIX}-{unit_index:05d}-of-{num_units:05d}{suffix}')


class Locator:
  """Turns positions in a work unit's stream back into (input file, record in it), from
  the FileRead of each of the unit's files."""

  def __init__(self, reads: Iterable[FileRead]):
    reads = sorted(reads, key=lambda r: (r.first_record, r.file_index))
    self._first = np.array([r.first_record for r in reads], dtype=np.int64)
    self._file = np.array([r.file_index for r in reads], dtype=np.int32)

  def __call__(self, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(file_index, record_index) of each position."""
    positions = np.asarray(positions, dtype=np.int64)
    if not len(self._first):
      if len(positions):
        raise RuntimeError('scores reached a work unit none of whose files was read')
      return np.zeros(0, np.int32), np.zeros(0, np.int64)
    at = np.searchsorted(self._first, positions, side='right') - 1
    return self._file[at], positions - self._first[at]


def _placed_columns(batch: ScoredBatch, ranking: percentiles.Ranking, rank_by: str
                    ) -> Dict[str, np.ndarray]:
  """Every VoG field of a file's examples as columns (Ranking.place_file)."""
  ranked = score_batch.rank_values(batch, rank_by)
  placed = ranking.place_file(batch.split, batch.file_index, batch.target_class, ranked,
                              batch.record_index, batch.vog_raw)
  placed['vog_flagged'] = (placed['review_rank'] > 0).astype(np.int64)
  placed['rank_value'] = ranked
  return placed


def _score_table_columns(batch: ScoredBatch, placed: Dict[str, np.ndarray],
                         locate: Optional[Locator] = None) -> Dict[str, Any]:
  """The score table's columns of a unit's examples; `locate` gives each its input file
  and record there (None: the batch's positions are those already)."""
  if locate is None:
    file_index, record_index = np.full(len(batch), batch.file_index), batch.record_index
  else:
    file_index, record_index = locate(batch.record_index)
  columns = {
      'example_id': batch.example_id, 'file_index': file_index,
      'record_index': record_index, 'label': batch.label,
      vocab.VOG_TARGET_CLASS: batch.target_class, 'predicted_class': batch.predicted_class,
      vocab.VOG_RAW: batch.vog_raw, vocab.VOG_SCORE: placed['vog_score'],
      'rank_value': placed['rank_value'],
      vocab.VOG_PERCENTILE: placed['vog_percentile'], vocab.VOG_DECILE: placed['vog_decile'],
      vocab.VOG_BUCKET: placed['bucket'], vocab.VOG_FLAGGED: placed['vog_flagged'],
      'review_rank': placed['review_rank']}
  columns.update(score_batch.signal_columns(batch))
  return columns


def _empty_columns(with_signals: bool) -> Dict[str, Any]:
  """The score table columns of a file without scored examples: no rows."""
  empty = score_batch.ScoredBatch(
      '', 0, [], [], [], [], [], [], [],
      np.zeros((0, len(signals_lib.REGISTRY) if with_signals else 0)))
  nothing = {k: np.zeros(0) for k in ('vog_score', 'vog_percentile', 'vog_decile', 'bucket',
                                      'vog_flagged', 'review_rank', 'rank_value')}
  return _score_table_columns(empty, nothing)


def _flagged_rows(batch: ScoredBatch, placed: Dict[str, np.ndarray],
                  ranking: percentiles.Ranking, memorised: bool = False
                  ) -> Dict[int, report_rows.FlaggedRow]:
  """{record index: FlaggedRow} of the file's flagged examples (few: the budget's),
  each with its kind (flag_kinds: by its signals and `memorised`; without signals
  every flag is unclear)."""
  rows = np.flatnonzero(placed['review_rank'] > 0)
  if not len(rows):
    return {}
  tops = score_batch.top_sigma_rows(batch.top_sigma, rows)
  columns = score_batch.signal_columns(batch)  # by field; counts are integers
  kinds = (flag_kinds.kinds({f: c[rows] for f, c in columns.items()}, memorised)
           if batch.has_signals else flag_kinds.kinds_without_labels(len(rows)))
  out = {}
  for i, top, kind in zip(rows.tolist(), tops, kinds.tolist()):
    signals = ({field: column[i].item() for field, column in columns.items()}
               if batch.has_signals else None)
    out[int(batch.record_index[i])] = report_rows.FlaggedRow(
        rank=int(placed['review_rank'][i]), example_id=batch.example_id[i],
        split=batch.split, label=None if batch.label[i] < 0 else int(batch.label[i]),
        predicted_class=int(batch.predicted_class[i]),
        target_class=int(batch.target_class[i]),
        vog_score=float(placed['vog_score'][i]), vog_raw=float(batch.vog_raw[i]),
        vog_percentile=float(placed['vog_percentile'][i]),
        vog_bucket=vocab.BUCKETS[int(placed['bucket'][i])], signals=signals,
        # Which signals agree is decided once every file counted (AgreementCounts).
        agreeing=() if batch.has_signals else None, top_sigma=top or None, kind=kind)
  return out


class AgreementCounts(NamedTuple):
  """For the flagged examples of a split (their review ranks), how many of `count`
  examples are strictly below each one's suspicion, per name in AGREEMENT_NAMES."""
  ranks: Tuple[int, ...]
  count: int
  below: np.ndarray  # [len(ranks), len(AGREEMENT_NAMES)]


def agreement_counts(batch: ScoredBatch, ranking: percentiles.Ranking
                     ) -> Optional[Tuple[str, AgreementCounts]]:
  """(split, AgreementCounts) of one input file's examples against its split's flagged
  examples; None without signals or without flagged examples in the split."""
  if not batch.has_signals:
    return None
  ranks, flagged = ranking.flagged_of_split(batch.split)
  if not ranks:
    return None
  # A file's counts fit in int32 (half the bytes of each file's partial); sums widen.
  return batch.split, AgreementCounts(tuple(ranks), len(batch), percentiles.agreement_counts(
      flagged, score_batch.suspicion_matrix(batch)).astype(np.int32))


class SumAgreementCounts(beam.CombineFn):
  """AgreementCounts of a split's files -> their sum (one partial per file)."""

  def create_accumulator(self):
    return None

  def add_input(self, acc, value: AgreementCounts):
    return self.merge_accumulators([acc, value])

  def merge_accumulators(self, accumulators):
    total = None
    for acc in accumulators:
      if acc is None:
        continue
      if total is None:
        total = acc
      elif acc.ranks != total.ranks:
        raise ValueError(f'files of one split counted against different flagged sets '
                         f'({acc.ranks[:5]}... and {total.ranks[:5]}...)')
      else:
        total = AgreementCounts(total.ranks, total.count + acc.count,
                                total.below.astype(np.int64) + acc.below)
    return total

  def extract_output(self, acc):
    return acc


def history_lines(batch: ScoredBatch, placed: Dict[str, np.ndarray]) -> List[str]:
  """The history shard's lines of a file's examples when there is no baseline (a
  streak of 1 for a flagged example, 0 otherwise), in the shard's order (example_id,
  then percentile), formatted from the columns."""
  ids, percentile = batch.example_id, placed['vog_percentile'].tolist()
  classes, flagged = batch.target_class.tolist(), placed['vog_flagged'].tolist()
  order = sorted(range(len(ids)), key=lambda i: (ids[i], percentile[i]))
  flags = [flagged[i] for i in order]
  return report_rows.history_lines([ids[i] for i in order], batch.split,
                           [classes[i] for i in order], flags, flags,
                           [percentile[i] for i in order])


class _WriteUnit(beam.DoFn):
  """Places and writes the examples of one work unit (see the module docstring).

  Yields ('tally', counts of the unit), ('written', FileWritten) once,
  ('flagged', (FlaggedRow, bytes)) for each flagged example and, with a baseline,
  ('history', (history shard, drift.HistoryChunk)); with slice statistics
  (FileOutputs.slice_leave_out), ('slice_pairs', slices.GroupCounts) and, for a copied
  split, ('slice_batch', (split, RecordBatch)) per slices.CHUNK_ROWS examples read.
  """

  def __init__(self, outputs: FileOutputs):
    self._out = outputs

  def process(self, element: Tuple[Tuple[str, int], Dict[str, Iterable[Any]]]
              ) -> Iterable[Tagged]:
    (split, unit_index), grouped = element
    out = self._out
    unit: WorkUnit = list(grouped['unit'])[0]
    batches = list(grouped['scored'])
    quarantined = set(grouped['quarantined'])
    rankings = list(grouped['ranking'])
    where = f'work unit {unit_index} of split {split!r} ({unit.files[0].path}, ...)'
    if batches and len(rankings) != 1:
      raise RuntimeError(f'{len(rankings)} rankings reached the scores of {where}; '
                         'expected exactly 1')
    num_units = out.units_per_split[split]
    if batches:
      batch = score_batch.concat(batches)
      placed = _placed_columns(batch, rankings[0], out.rank_by)
      flagged = _flagged_rows(batch, placed, rankings[0], out.memorised)
    else:
      batch, placed, flagged = None, None, {}
    scored_at = set() if batch is None else set(batch.record_index.tolist())
    unmatched = len(scored_at & quarantined)
    if batch is not None and len(scored_at) != len(batch):
      unmatched += len(batch) - len(scored_at)  # two scores for one record
    score_table.write_shard(
        score_table.shard_path(out.work_dir, split, unit_index, num_units),
        _score_table_columns(batch, placed, Locator(grouped['read'])) if batch is not None
        else _empty_columns(out.with_signals),
        compression='zstd' if out.compression == 'gzip' else 'none',
        temp_dir=record_files.temp_folder(out.work_dir))
    if split in out.copy_splits:
      written, unread, records = yield from self._copy(unit, batch, placed, quarantined,
                                                       set(flagged), num_units)
      unmatched += unread
    else:
      written = len(scored_at)
      records = self._read_flagged(unit, sorted(flagged))
      unmatched += len(flagged) - len(records)
    if batch is not None and out.slice_leave_out is not None:
      yield 'slice_pairs', slices_lib.unit_group_counts(
          split, batch.label, batch.predicted_class, placed['vog_flagged'],
          placed['bucket'] == slices_lib.HARD_INDEX)
    if batch is not None:
      counts = agreement_counts(batch, rankings[0])
      if counts is not None:
        yield 'agreement', counts
      counts = audit_summary.file_counts(
          split, batch.target_class, batch.label, batch.predicted_class,
          placed['vog_decile'], placed['vog_flagged'], placed['raw_hard'],
          score_batch.signal_columns(batch))
      counts.update(audit_summary.kind_counts(split, [r.kind for r in flagged.values()]))
      yield 'tally', audit_summary.CountsTally(split, counts)
      if out.write_history:
        lines = history_lines(batch, placed)
        shard = out.history_shard_of[(split, unit_index)]
        drift_lib.write_history_lines(out.work_dir, shard, out.num_history_shards, lines)
        yield 'tally', audit_summary.HistoryWrittenTally(split, len(lines))
      else:
        for shard, chunk in drift_lib.history_chunks(
            batch, placed, out.num_history_shards).items():
          yield 'history', (shard, chunk)
    yield 'written', FileWritten(split, unit_index, written,
                                 int(placed['vog_flagged'].sum()) if batch is not None else 0,
                                 unmatched)
    for index, row in sorted(flagged.items()):
      if index in records:
        yield 'flagged', (row, records[index])

  def _copy(self, unit: WorkUnit, batch: Optional[ScoredBatch],
            placed: Optional[Dict[str, np.ndarray]], quarantined, flagged_at,
            num_units: int) -> Iterator[Tagged]:
    """Writes the unit's scored examples with their VoG fields as one file; returns
    (written, unmatched, the flagged examples' original bytes by position). With slice
    statistics, yields ('slice_batch', (split, RecordBatch)) of the examples written,
    slices.CHUNK_ROWS at a time, as they are read."""
    out = self._out
    slicing = out.slice_leave_out is not None and out.slice_features
    leave_out = (out.example_id_key,) + tuple(out.slice_leave_out or ())
    chunk: List[bytes] = []  # the records of the next slice batch, and their rows
    chunk_rows: List[int] = []

    def slice_batch():
      rows = np.asarray(chunk_rows, dtype=np.int64)
      return slices_lib.record_batch(chunk, placed['bucket'][rows],
                                     placed['vog_flagged'][rows], leave_out)

    suffixes: List[bytes] = []
    indices: List[int] = []
    if batch is not None:
      indices = batch.record_index.tolist()
      suffixes = examples_io.vog_feature_suffixes(
          _vog_columns(batch, placed), out.example_id_key,
          example_ids=[None if has else i for i, has
                       in zip(batch.example_id, batch.has_example_id.tolist())],
          with_signals=batch.has_signals)
    position = dict(zip(indices, range(len(indices))))
    written = unmatched = 0
    records: Dict[int, bytes] = {}
    path = scored_file_path(out.scored_dir, unit.split, unit.unit_index, num_units,
                            out.compression)
    seen = set()
    # The first read reports damage; what was not read again counts as unmatched.
    with record_files.AtomicFile(path, GZIP_LEVEL if out.compression == 'gzip' else None,
                                 record_files.temp_folder(out.scored_dir)) as sink:
      for index, _, _, serialized in read_unit(unit):
        seen.add(index)
        row = position.get(index)
        if row is None:
          if index not in quarantined:
            unmatched += 1
          continue
        sink.write(record_files.frame(serialized + suffixes[row]))
        written += 1
        if index in flagged_at:
          records[index] = serialized
        if slicing:
          chunk.append(serialized)
          chunk_rows.append(row)
          if len(chunk) >= slices_lib.CHUNK_ROWS:
            yield 'slice_batch', (unit.split, slice_batch())
            chunk, chunk_rows = [], []
    if chunk:
      yield 'slice_batch', (unit.split, slice_batch())
    unmatched += len(set(indices) - seen) + len(set(quarantined) - seen)
    return written, unmatched, records

  def _read_flagged(self, unit: WorkUnit, indices: Sequence[int]) -> Dict[int, bytes]:
    """The original bytes of the records at positions `indices` (sorted), reading the
    unit only as far as the last of them."""
    if not indices:
      return {}
    wanted, last, found = set(indices), indices[-1], {}
    for index, _, _, serialized in read_unit(unit):
      if index in wanted:
        found[index] = serialized
      if index >= last:
        break
    return found


def _vog_columns(batch: ScoredBatch, placed: Dict[str, np.ndarray]) -> Dict[str, Any]:
  columns = {vocab.VOG_SCORE: placed['vog_score'], vocab.VOG_RAW: batch.vog_raw,
             vocab.VOG_PERCENTILE: placed['vog_percentile'],
             vocab.VOG_DECILE: placed['vog_decile'], vocab.VOG_FLAGGED: placed['vog_flagged'],
             vocab.VOG_TARGET_CLASS: batch.target_class, vocab.VOG_BUCKET: placed['bucket']}
  columns.update(score_batch.signal_columns(batch))
  return columns


class WriteScoredExamples(beam.PTransform):
  """Writes each work unit's score table shard and, for `copy_splits`, its examples
  with the VoG fields added, to <scored_dir>/Split-<name>/.

  Takes {'units': WorkUnit, 'files_read': FileRead, 'scored': ScoredBatch,
  'quarantined': Quarantined, 'ranking': the one Ranking}; returns {'written':
  FileWritten per unit, 'flagged': (FlaggedRow, bytes), 'tallies': one per unit (and
  per history shard it wrote), 'history': (shard, drift.HistoryChunk) when drift
  matches it, 'agreement': (split, AgreementCounts) per unit, with signals}; with
  slice statistics (FileOutputs.slice_leave_out) also 'slice_pairs' (slices.GroupCounts
  per unit) and 'slice_batches' ((split, RecordBatch) of the copied splits), the inputs
  of slices.FindWhatFlaggedExamplesShare.
  Work unit k of a split's n becomes output file k of n.
  """

  def __init__(self, outputs: FileOutputs):
    super().__init__()
    self._out = outputs

  def expand(self, inputs):
    unit_keys = [(split, i) for split, n in self._out.units_per_split.items()
                 for i in range(n)]
    grouped = ({
        'unit': inputs['units'] | 'KeyUnits' >> beam.Map(
            lambda u: ((u.split, u.unit_index), u)),
        'read': inputs['files_read'] | 'KeyFilesRead' >> beam.Map(
            lambda r: ((r.split, r.unit_index), r)),
        'scored': inputs['scored'] | 'KeyScores' >> beam.Map(
            lambda b: ((b.split, b.file_index), b)),
        'quarantined': inputs['quarantined'] | 'KeyQuarantined' >> beam.Map(
            lambda q: ((q.split, q.file_index), q.record_index)),
        # Each unit gets the part of the Ranking it needs (Ranking.for_file): its own
        # flagged examples' ranks, not the whole flagged set.
        'ranking': inputs['ranking'] | 'RankingPerUnit' >> beam.FlatMap(
            lambda r: [(key, r.for_file(*key)) for key in unit_keys]),
    } | 'GroupByUnit' >> beam.CoGroupByKey())
    tagged = grouped | 'PlaceAndWrite' >> beam.ParDo(_WriteUnit(self._out))
    types = {'written': FileWritten, 'flagged': Tuple[report_rows.FlaggedRow, bytes],
             'tally': audit_summary.Tally, 'history': Tuple[int, Any],
             'agreement': Tuple[str, AgreementCounts]}
    slicing = self._out.slice_leave_out is not None
    if slicing:
      types.update(slice_pairs=slices_lib.GroupCounts, slice_batch=Tuple[str, Any])
    parts = split_by_tag(tagged, types)
    result = {'written': parts['written'], 'flagged': parts['flagged'],
              'tallies': parts['tally'], 'history': parts['history'],
              'agreement': parts['agreement']}
    if slicing:
      result.update(slice_pairs=parts['slice_pairs'], slice_batches=parts['slice_batch'])
    return result


def quarantine_row(q: Quarantined) -> Dict[str, Any]:
  """The quarantine shard line of one quarantined example."""
  return report_rows.quarantine_row_to_json(report_rows.QuarantineRow(
      split=q.split, example_id=q.example_id, kind=q.kind, reason=q.reason,
      record=q.serialized))


class _WriteQuarantineShard(beam.DoFn):
  """Writes the quarantined examples of one work unit as one shard; tallies each row."""

  def __init__(self, work_dir: str, num_shards: int):
    self._work_dir = work_dir
    self._num_shards = num_shards

  def process(self, element: Tuple[int, Iterable[Quarantined]]
              ) -> Iterable[audit_summary.Tally]:
    shard, rows = element
    rows = sorted(rows, key=lambda q: q.record_index)
    record_files.write_lines(
        os.path.join(self._work_dir, vocab.quarantine_shard_name(shard, self._num_shards)),
        (json.dumps(quarantine_row(q), sort_keys=True) for q in rows),
        temp_dir=record_files.temp_folder(self._work_dir))
    for q in rows:
      yield audit_summary.QuarantinedTally(q.split, q.kind)


def _agreement_slices(kv: Tuple[str, AgreementCounts], per_part: int
                      ) -> Iterable[Tuple[int, Tuple[str, AgreementCounts]]]:
  """A split's summed AgreementCounts -> (part, the rows of its ranks in that part)."""
  split, counts = kv
  ranks = np.asarray(counts.ranks, dtype=np.int64)
  parts = (ranks - 1) // per_part
  for part in np.unique(parts).tolist():
    rows = np.flatnonzero(parts == part)
    yield part, (split, AgreementCounts(tuple(ranks[rows].tolist()), counts.count,
                                        counts.below[rows]))


def _flagged_part_path(work_dir: str, part: int) -> str:
  return os.path.join(work_dir, FLAGGED_PARTS_DIR, f'part-{part:06d}.jsonl')


def _write_flagged_part(element: Tuple[int, Dict[str, Iterable[Any]]], work_dir: str,
                        cut: float, per_part: int) -> Iterable[Tuple[int, str, int, int]]:
  """Writes one part of the flagged rows (ranks part x per_part + 1 to (part + 1) x
  per_part) in rank order; yields (part, path, first rank, last rank), nothing for a
  part without rows."""
  part, grouped = element
  pairs = list(grouped['flagged'])
  if not pairs:
    return
  for row, _ in pairs:
    if (row.rank - 1) // per_part != part:
      raise ValueError(f'flagged example rank {row.rank} reached part {part}')
  path = _flagged_part_path(work_dir, part)
  ranks = _write_flagged([('flagged', p) for p in pairs] +
                         [('agreement', a) for a in grouped['agreement']], path, cut)
  yield part, path, ranks[0], ranks[-1]


def _join_flagged_parts(parts: List[Tuple[int, str, int, int]], path: str) -> str:
  """Streams the written parts, in rank order, into one file under `path`. The parts
  cover disjoint rank ranges; one out of place is an error. They stay in the work
  folder (removed with it) so that a retried join finds them again."""
  parts = sorted(parts)
  for (a, _, _, last), (b, _, first, _) in zip(parts, parts[1:]):
    if a == b or first <= last:
      raise ValueError(f'flagged parts {a} and {b} overlap (ranks {last} and {first})')
  with record_files.AtomicFile(path) as out:
    for _, part_path, _, _ in parts:
      with tf.io.gfile.GFile(part_path, 'rb') as f:
        while True:
          chunk = f.read(1 << 20)
          if not chunk:
            break
          out.write(chunk)
  return path


def _write_flagged(parts: List[Tuple[str, Any]], path: str, cut: float) -> List[int]:
  """Writes the flagged rows in rank order, each with the signals that agree with it
  (from its split's AgreementCounts); returns their ranks, in order."""
  counts: Dict[str, AgreementCounts] = {}
  for kind, value in parts:
    if kind != 'agreement':
      continue
    split, slice_of = value
    if split in counts:  # one split's slices of one part: never more than one
      raise ValueError(f'two agreement counts of split {split!r} reached one writer')
    counts[split] = slice_of
  pairs = [value for kind, value in parts if kind == 'flagged']
  at = {split: {rank: i for i, rank in enumerate(c.ranks)} for split, c in counts.items()}
  for i, (row, record) in enumerate(pairs):
    if row.agreeing is None:
      continue
    if row.rank not in at.get(row.split, {}):
      raise ValueError(f'flagged example rank {row.rank} of split {row.split!r} has no '
                       'agreement counts')
    split_counts = counts[row.split]
    below = split_counts.below[at[row.split][row.rank]]
    pairs[i] = (dataclasses.replace(row, agreeing=percentiles.agreeing(
        vocab.AGREEMENT_NAMES, below, split_counts.count, cut)), record)
  ordered = sorted(pairs, key=lambda pair: pair[0].rank)
  ranks = [row.rank for row, _ in ordered]
  if len(set(ranks)) != len(ranks):
    raise ValueError(f'two flagged examples share a review rank ({ranks[:10]}...)')
  record_files.write_lines(path, (json.dumps(report_rows.flagged_row_to_json(row, record),
                                             sort_keys=True) for row, record in ordered))
  return ranks


def _write_summary(summary: Dict[str, Any], path: str) -> str:
  record_files.write_lines(path, [json.dumps(summary, indent=2, sort_keys=True)])
  return path


class WriteDifficultyReport(beam.PTransform):
  """Writes the report's work files under `work_dir`; returns the summary's path.

  Takes {'files_read', 'quarantined', 'class_stats', 'written', 'flagged', 'tallies'}
  ('tallies' being the scored examples' tallies that WriteScoredExamples counted) and
  optionally 'more_tallies', the tallies of other writers (the history's), and
  'agreement', each input file's AgreementCounts.
  Writes SUMMARY_WORK_FILE (combined by AuditSummaryFn from what the writers counted,
  `summary_base` merged in), FLAGGED_RECORDS_FILE (at most `inspection_budget` rows,
  each with the signals that put it above `hard_cut` percent of its split too;
  written in parts of `flagged_rows_per_part` ranks by separate workers and joined
  in rank order by streaming, so no worker gathers every flagged record)
  and one quarantine shard per work unit that had quarantined examples, numbered by
  the unit's place in `shard_of` ((split, unit index) -> shard) of `num_shards`.
  """

  def __init__(self, work_dir: str, splits: Sequence[str], summary_base: Dict[str, Any],
               shard_of: Dict[Tuple[str, int], int], num_shards: int,
               hard_cut: float = 90.0,
               flagged_rows_per_part: int = FLAGGED_ROWS_PER_PART):
    super().__init__()
    if flagged_rows_per_part < 1:
      raise ValueError(f'flagged_rows_per_part={flagged_rows_per_part}; give 1 or more')
    self._per_part = flagged_rows_per_part
    self._cut = hard_cut
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
    agreement = (inputs['agreement'] if 'agreement' in inputs else
                 inputs['flagged'].pipeline | 'NoAgreement' >> beam.Create([]))
    per_part = self._per_part
    flagged_path = (
        {'flagged': inputs['flagged'] | 'KeyFlaggedByPart' >> beam.Map(
            lambda pair: ((pair[0].rank - 1) // per_part, pair)),
         'agreement': agreement
                      | 'SumAgreement' >> beam.CombinePerKey(SumAgreementCounts())
                      | 'SliceAgreement' >> beam.FlatMap(_agreement_slices, per_part)}
        | 'GroupByPart' >> beam.CoGroupByKey()
        | 'WriteFlaggedParts' >> beam.FlatMap(_write_flagged_part, self._work_dir,
                                              self._cut, per_part)
        | 'FlaggedParts' >> beam.CombineGlobally(
            beam.combiners.ToListCombineFn()).without_defaults()
        | 'JoinFlaggedParts' >> beam.Map(
            _join_flagged_parts, os.path.join(self._work_dir, FLAGGED_RECORDS_FILE)))
    tallies = (
        inputs['files_read'] | 'FileTallies' >> beam.Map(
            lambda f: audit_summary.FileTally(f.split, f.path, f.records, f.damage)),
        inputs['tallies'],
        quarantine_tallies,
        inputs['class_stats'] | 'ClassTallies' >> beam.Map(
            lambda kv: audit_summary.ClassStatsTally(kv[0][0], kv[0][1], *kv[1])),
        inputs['written'] | 'WrittenTallies' >> beam.Map(
            lambda w: audit_summary.WrittenTally(w.split, w.written, w.written_flagged,
                                                 w.unmatched)),
        # The flagged rows are counted once they are written.
        flagged_path | 'FlaggedWritten' >> beam.Map(
            lambda _: audit_summary.DoneTally(audit_summary.FLAGGED_FILE_DONE)),
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
