"""What changed since the audit of the last shipped model: per example and per class.

    plan time:   load_baseline(info) -> Baseline (its summary and history shards, or why
                 it cannot be compared)
    Beam:        (HistoryChunk per input file and history shard, baseline shard paths)
                     | MatchHistory -> {tallies, flag_status}, one history shard each
    after Beam:  class_drift(summary, baseline, counts) -> drift_model.Drift

With a baseline that can be compared, the examples of each input file are cut into
chunks by history shard (a hash of `example_id`), the baseline's rows are read and cut
the same way, and both meet in a `CoGroupByKey` on the shard, never through a side
input; the worker of a shard matches its ids and writes its history file. Copies of one
id are paired in order of their position now and of their standing then. Without one,
every writer writes the history of its own input file (a streak of 1 when flagged) and
nothing crosses a shuffle for it. Each audit writes the history of the examples it
scored; the next reads only that, so a streak of flagged audits is extended without
reading older reports. Class-level numbers (flagged and hard shares, the decile
histogram behind the shift statistic) come from the two summaries.

A history row that is not valid is refused (counted, with the first reason), never read
as a guess; any refusal makes the per-example part of the drift unavailable.

The baseline is read like any outside input, and nothing in it stops the audit: only
regular files are opened (a folder or a FIFO in a file's place is named, never read or
waited on), summary.json within MAX_SUMMARY_BYTES and MAX_SUMMARY_DEPTH and with counts
that agree with each other, a history line within MAX_HISTORY_LINE_BYTES (read with a
bounded readline, so one huge line in a small gzip file is refused, not held). Anything
else makes the drift `unavailable` with the reason.
"""

import dataclasses
import gzip
import json
import math
import os
import zlib
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
import numpy as np

from components.vog.dataflow import audit_summary
from components.vog.inputs import record_files
from components.vog.report import drift_model
from components.vog.report import json_checks
from components.vog.report import report_format as fmt
from components.vog.report import report_rows
from components.vog.report import summary_model
from components.vog import vocabulary as vocab
from components.vog.dataflow.beam_audit import Tagged, split_by_tag

FLAG_STATUS_FILE = 'flag_status.jsonl'  # work file: review rank -> drift status, streak
# Bounds of what a baseline report's files hold. A summary is a few KB per class and
# nests about 4 levels deep; a history row is one flat object of about 100 bytes and
# its example_id.
MAX_SUMMARY_BYTES = 64 << 20
MAX_SUMMARY_DEPTH = 32
MAX_HISTORY_LINE_BYTES = 1 << 20


class HistoryChunk(NamedTuple):
  """The examples of one input file that go to one history shard, as columns: what
  the match by example_id needs of them."""
  split: str
  file_index: int
  example_id: List[str]
  record_index: np.ndarray
  class_id: np.ndarray
  flagged: np.ndarray
  percentile: np.ndarray
  review_rank: np.ndarray  # 0 when not flagged


class Refused(NamedTuple):
  """A baseline history line that was not read, and why."""
  where: str
  reason: str


@dataclasses.dataclass(frozen=True)
class Baseline:
  """The audit compared with: `info` as recorded in summary.json's `baseline`.

  `summary` and `history_paths` are set when it can be compared; `unavailable` says why
  not otherwise.
  """
  info: Dict[str, Any]
  summary: Optional[summary_model.ReportSummary]
  history_paths: Tuple[str, ...]
  unavailable: Optional[str]

  @property
  def uri(self) -> str:
    return str(self.info.get('uri') or '')


def load_baseline(info: Mapping[str, Any], ranked_by: Optional[str] = None) -> Baseline:
  """Reads the baseline report's summary and lists its history shards.

  Never raises for the report's content: a baseline that is missing, malformed (a
  summary or history shard that is no regular file, above its size or nesting limit,
  or whose counts contradict each other), from a release before format_version 3,
  ranked by something other than `ranked_by` (this audit's; its flagged set and hard
  shares would measure another thing) or without a complete set of history shards is
  `unavailable` (the audit goes on, and says why), because the baseline only moves when
  a model ships and a lost one must not stop every later audit. Only summary.json and
  the history shards are read: they are all that drift compares.
  """
  info = dict(info)
  uri = info.get('uri')
  if not isinstance(uri, str) or not uri:
    return Baseline(info, None, (), f'the baseline names no report folder ({uri!r})')
  try:
    summary = read_summary(uri)
  except (json_checks.ReportFormatError, record_files.UnreadableFile) as e:
    return Baseline(info, None, (), f'the baseline report cannot be read: {e}')
  except Exception as e:  # pylint: disable=broad-except
    # Whatever else a hostile file provokes (a number too long to convert, a file
    # system error) is a reason, not a failed audit.
    return Baseline(info, None, (), f'the baseline report {uri} cannot be read '
                                    f'({type(e).__name__}: {str(e)[:300]})')
  if summary.format_version < vocab.DRIFT_MIN_VERSION:
    return Baseline(info, None, (), (
        f'the baseline report {uri} has format_version {summary.format_version}; drift '
        f'needs {vocab.DRIFT_MIN_VERSION} or later (it keeps per-class hard counts and the '
        'example history) - the next audit of a shipped model will have it'))
  problem = count_problem(summary)
  if problem is not None:
    return Baseline(info, None, (), (
        f'the baseline report {uri} has counts that cannot be true: {problem} - its '
        f'{vocab.SUMMARY_FILE} was changed or damaged'))
  if ranked_by is not None and summary.ranked_by != ranked_by:
    return Baseline(info, None, (), (
        f'the baseline report {uri} ranked its examples by {summary.ranked_by} and this '
        f'audit ranks them by {ranked_by}, so their flagged sets and hard shares are not '
        'comparable - the next audit of a shipped model will be'))
  try:
    paths = fmt.history_files(uri)
  except json_checks.ReportFormatError as e:
    return Baseline(info, None, (), str(e))
  except Exception as e:  # pylint: disable=broad-except
    return Baseline(info, None, (), f'the history shards of the baseline report {uri} '
                                    f'cannot be listed ({type(e).__name__}: {e})')
  for path in paths:
    # Local shards are checked now (a stat each); every shard is checked again where
    # it is read, which is the check that counts on remote storage.
    problem = None if '://' in path else record_files.file_problem(path)
    if problem is not None:
      return Baseline(info, None, (), f'a history shard of the baseline cannot be read: '
                                      f'{problem}')
  info.setdefault('created_at', summary.created_at)
  return Baseline(info, summary, tuple(paths), None)


def read_summary(uri: str) -> summary_model.ReportSummary:
  """The summary.json of the report folder `uri`, read within MAX_SUMMARY_BYTES and
  MAX_SUMMARY_DEPTH; ReportFormatError or record_files.UnreadableFile naming the
  problem."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(uri, vocab.SUMMARY_FILE)
  if not tf.io.gfile.exists(path):
    raise json_checks.ReportFormatError(f'{path}: does not exist; is this the '
                                        'difficulty_report output of VarianceOfGradients?')
  return summary_model.parse_summary(
      record_files.read_json_file(path, MAX_SUMMARY_BYTES, MAX_SUMMARY_DEPTH), path)


def count_problem(summary: summary_model.ReportSummary) -> Optional[str]:
  """What makes a summary's counts impossible, or None: a negative count, more flagged
  than scored, more scored and quarantined than seen, totals that are not the sum of
  the splits, a class row of a split the summary does not count, a class share outside
  [0, 1], or class rows that do not add up to their split's scored and flagged counts.
  Drift divides these counts by each other, so each share it compares stays in [0, 1]."""
  counted = [('counts', summary.counts)] + [(f'splits[{name!r}]', c)
                                            for name, c in sorted(summary.splits.items())]
  for where, c in counted:
    if min(c.values()) < 0:
      return f'{where} holds a negative count ({c})'
    if c[vocab.FLAGGED] > c[vocab.SCORED]:
      return f'{where} flags {c[vocab.FLAGGED]:,} of {c[vocab.SCORED]:,} scored examples'
    if c[vocab.SCORED] + c[vocab.QUARANTINED] > c[vocab.SEEN]:
      return (f'{where} scores {c[vocab.SCORED]:,} and quarantines {c[vocab.QUARANTINED]:,} '
              f'of {c[vocab.SEEN]:,} seen examples')
  for key in vocab.HEADLINE:
    total = sum(c[key] for c in summary.splits.values())
    if summary.counts[key] != total:
      return f'counts[{key!r}] is {summary.counts[key]:,} but its splits add up to {total:,}'
  sums: Dict[str, List[int]] = {}
  for row in summary.per_class:
    where = f'per_class row of split {row.split!r}, class {row.class_id}'
    if row.split not in summary.splits:
      return f'{where} is of a split the summary does not count'
    if not 0 <= row.flagged <= row.count:
      return f'{where} flags {row.flagged:,} of its {row.count:,} examples'
    if not 0.0 <= row.flagged_share <= 1.0:
      return f'{where} has flagged_share {row.flagged_share!r}; a share is from 0 to 1'
    total = sums.setdefault(row.split, [0, 0])
    total[0] += row.count
    total[1] += row.flagged
  for name, c in sorted(summary.splits.items()):
    count, flagged = sums.get(name, (0, 0))
    if (count, flagged) != (c[vocab.SCORED], c[vocab.FLAGGED]):
      return (f'the class rows of split {name!r} count {count:,} examples and {flagged:,} '
              f'flagged, the split {c[vocab.SCORED]:,} scored and {c[vocab.FLAGGED]:,} flagged')
  return None


def history_shard_of(example_id: str, num_shards: int) -> int:
  """The history shard an example goes to: the same on every worker and every run."""
  return zlib.crc32(example_id.encode('utf-8')) % num_shards


def history_chunks(batch, placed: Mapping[str, np.ndarray], num_shards: int
                   ) -> Dict[int, HistoryChunk]:
  """{history shard: HistoryChunk} of the examples of one input file (a ScoredBatch and
  its placed columns), each example in the shard of its example_id."""
  shards = np.asarray([history_shard_of(i, num_shards) for i in batch.example_id],
                      dtype=np.int64)
  out = {}
  for shard in np.unique(shards).tolist():
    rows = np.flatnonzero(shards == shard)
    # Narrow types: the chunks cross a shuffle, one row per example.
    out[shard] = HistoryChunk(
        batch.split, batch.file_index, [batch.example_id[i] for i in rows],
        batch.record_index[rows], batch.target_class[rows].astype(np.int32),
        placed['vog_flagged'][rows].astype(np.int8), placed['vog_percentile'][rows],
        placed['review_rank'][rows].astype(np.int32))
  return out


def read_history_shard(path: str) -> Iterable[Any]:
  """(example_id, HistoryRow) of each valid line of one shard; Refused for the others.

  Streamed, a line at a time with a bounded readline: a line longer than
  MAX_HISTORY_LINE_BYTES is refused without being held, and the rest of that shard is
  not read. A shard that is no regular file is refused whole, unopened.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  problem = record_files.file_problem(path)
  if problem is not None:
    yield Refused(path, problem)
    return
  number = 0
  try:  # Streamed: a shard holds the history of a whole input file.
    with tf.io.gfile.GFile(path, 'rb') as f, gzip.GzipFile(fileobj=f) as lines:
      while True:
        line = lines.readline(MAX_HISTORY_LINE_BYTES + 1)
        if not line:
          return
        number += 1
        where = f'{path} line {number}'
        if len(line) > MAX_HISTORY_LINE_BYTES:
          yield Refused(where, (
              f'is longer than {MAX_HISTORY_LINE_BYTES:,} bytes, which no history row '
              'is; the rest of the shard was not read'))
          return
        if not line.strip():
          continue
        try:
          row = report_rows.history_row_from_json(json.loads(line), where)
        except RecursionError:
          yield Refused(where, 'nests deeper than a history row, a flat object, can')
          continue
        except (ValueError, json_checks.ReportFormatError) as e:
          yield Refused(where, _reason(e, where))
          continue
        yield row.example_id, row
  except (OSError, EOFError, zlib.error, tf.errors.OpError) as e:
    yield Refused(f'{path} after line {number}', f'is not a readable gzip file ({e})')


def _reason(error: Exception, where: str) -> str:
  """An error's message without the place it starts with (Refused names it)."""
  text = str(error)
  if text.startswith(where + ': '):
    text = text[len(where) + 2:]
  return text[:300]


def write_history_shard(work_dir: str, shard: int, num_shards: int,
                        rows: Sequence[report_rows.HistoryRow]) -> None:
  """Writes one history shard whole, sorted by example_id."""
  rows = sorted(rows, key=lambda r: (r.example_id, r.split, r.percentile))
  write_history_lines(work_dir, shard, num_shards, map(report_rows.history_row_line, rows))


def write_history_lines(work_dir: str, shard: int, num_shards: int,
                        lines: Iterable[str]) -> None:
  """Writes one history shard whole from its lines, already in the shard's order."""
  path = os.path.join(work_dir, vocab.history_shard_name(shard, num_shards))
  record_files.write_lines(path, lines, gzip_level=6,
                           temp_dir=record_files.temp_folder(work_dir))


Then = Tuple[str, int, int]  # a baseline row as the match needs it: split, flagged, streak


class ThenChunk(NamedTuple):
  """The baseline rows of one of its shards that go to one history shard of this
  audit, as columns."""
  example_id: List[str]
  split: List[str]
  flagged: np.ndarray  # int8
  streak: np.ndarray  # int32

  def rows(self) -> Iterable[Tuple[str, Then]]:
    return zip(self.example_id, zip(self.split, self.flagged.tolist(),
                                    self.streak.tolist()))


class _ReadHistory(beam.DoFn):
  """One baseline history shard -> ('rows', (shard, ThenChunk)) per history shard of
  this audit, and a tally for each line refused."""

  def __init__(self, num_shards: int):
    self._num_shards = num_shards

  def process(self, path: str) -> Iterable[Tagged]:
    by_shard: Dict[int, List[report_rows.HistoryRow]] = {}
    for item in read_history_shard(path):
      if isinstance(item, Refused):
        yield 'tally', audit_summary.HistoryRefusedTally(item.where, item.reason)
      else:
        example_id, row = item
        by_shard.setdefault(history_shard_of(example_id, self._num_shards), []).append(row)
    for shard, rows in sorted(by_shard.items()):
      yield 'rows', (shard, ThenChunk(
          [r.example_id for r in rows], [r.split for r in rows],
          np.asarray([r.flagged for r in rows], dtype=np.int8),
          np.asarray([r.streak for r in rows], dtype=np.int32)))  # <= MAX_STREAK


class _MatchShard(beam.DoFn):
  """One history shard's examples now and rows then -> its history file, what changed
  (one tally of counts) and the flagged examples' ('flag_status', (rank, status,
  streak)).

  Copies of one example_id are paired in order of their position now and of their
  standing then."""

  def __init__(self, work_dir: str, num_shards: int):
    self._work_dir = work_dir
    self._num_shards = num_shards

  def process(self, element: Tuple[int, Dict[str, Iterable[Any]]]) -> Iterable[Tagged]:
    shard, grouped = element
    now: Dict[str, List[Tuple]] = {}
    for chunk in grouped.get('now', ()):
      for i, example_id in enumerate(chunk.example_id):
        now.setdefault(example_id, []).append((
            chunk.split, chunk.file_index, int(chunk.record_index[i]),
            int(chunk.class_id[i]), int(chunk.flagged[i]), float(chunk.percentile[i]),
            int(chunk.review_rank[i])))
    then: Dict[str, List[Then]] = {}
    for chunk in grouped.get('then', ()):
      for example_id, row in chunk.rows():
        then.setdefault(example_id, []).append(row)
    counts: Dict[tuple, int] = {}

    def count(split: str, what: str) -> None:
      counts[('drift', split, what)] = counts.get(('drift', split, what), 0) + 1

    history, statuses = [], []
    for example_id in sorted(set(now) | set(then)):
      entries = sorted(now.get(example_id, ()))
      before_rows = sorted(then.get(example_id, ()), key=lambda r: (r[0], -r[1], -r[2]))
      for i, (split, _, _, class_id, flagged, percentile, rank) in enumerate(entries):
        before = before_rows[i] if i < len(before_rows) else None
        streak = (before[2] + 1 if before is not None and before[1] else 1) if flagged else 0
        history.append(report_rows.HistoryRow(example_id, split, class_id, flagged, streak,
                                              percentile))
        if before is None:
          status = vocab.NEW_DATA
          count(split, 'new_examples')
        else:
          count(split, 'matched')
          if before[1] and not flagged:
            count(split, 'no_longer_flagged')
          status = vocab.STILL_FLAGGED if before[1] else vocab.NEWLY_FLAGGED
        if flagged:
          count(split, {vocab.NEW_DATA: 'flagged_new_data', vocab.NEWLY_FLAGGED: 'newly_flagged',
                        vocab.STILL_FLAGGED: 'still_flagged'}[status])
          if streak >= 2:
            counts[('streak', streak)] = counts.get(('streak', streak), 0) + 1
          statuses.append((rank, status, streak))
      for before in before_rows[len(entries):]:
        count(before[0], 'gone_examples')
    if history:
      write_history_shard(self._work_dir, shard, self._num_shards, history)
      per_split: Dict[str, int] = {}
      for row in history:
        per_split[row.split] = per_split.get(row.split, 0) + 1
      for split, n in sorted(per_split.items()):
        counts[(audit_summary.HISTORY_WRITTEN, split)] = n
    yield 'tally', audit_summary.CountsTally('', counts)
    for status in statuses:
      yield 'flag_status', status


class MatchHistory(beam.PTransform):
  """{'now': (shard, HistoryChunk), 'then': baseline history shard paths} ->
  {'tallies', 'flag_status': (rank, status, streak)}, writing each history shard of
  this audit under `work_dir`.

  Used only with a baseline that can be compared: without one, each writer writes the
  history of its own input file (every streak 1 when flagged).
  """

  def __init__(self, work_dir: str, num_shards: int):
    super().__init__()
    self._work_dir = work_dir
    self._num_shards = num_shards

  def expand(self, inputs):
    read = inputs['then'] | 'ReadHistory' >> beam.ParDo(_ReadHistory(self._num_shards))
    parts = split_by_tag(read, {'rows': Tuple[int, ThenChunk],
                                'tally': audit_summary.Tally}, label='Read')
    matched = ({'now': inputs['now'], 'then': parts['rows']}
               | 'ByShard' >> beam.CoGroupByKey()
               | 'Match' >> beam.ParDo(_MatchShard(self._work_dir, self._num_shards)))
    out = split_by_tag(matched, {'tally': audit_summary.Tally,
                                 'flag_status': Tuple[int, str, int]})
    status_file = (
        out['flag_status']
        | 'AllStatuses' >> beam.CombineGlobally(
            beam.combiners.ToListCombineFn()).without_defaults()
        | 'WriteStatuses' >> beam.Map(_write_flag_status,
                                      os.path.join(self._work_dir, FLAG_STATUS_FILE))
        | 'StatusesWritten' >> beam.Map(
            lambda _: audit_summary.DoneTally(audit_summary.STATUS_FILE_DONE)))
    return {'tallies': (parts['tally'], out['tally'], status_file)
                       | 'MatchTallies' >> beam.Flatten()}


def _write_flag_status(statuses: List[Tuple[int, str, int]], path: str) -> str:
  record_files.write_lines(path, (json.dumps({'rank': rank, 'drift_status': status,
                                              'flagged_streak': streak})
                                  for rank, status, streak in sorted(statuses)))
  return path


def read_flag_status(work_dir: str) -> Dict[int, Tuple[str, int]]:
  """{review rank: (drift status, streak)} from the work file; {} when none was written."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(work_dir, FLAG_STATUS_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  out = {}
  with tf.io.gfile.GFile(path) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        out[int(row['rank'])] = (row['drift_status'], int(row['flagged_streak']))
  return out


def psi(now: Sequence[int], then: Sequence[int]) -> float:
  """The population stability index of two histograms (see drift_model.SHIFT_STATISTIC)."""
  bins = len(now)
  total_now, total_then = sum(now), sum(then)
  value = 0.0
  for a, b in zip(now, then):
    p = (a + 0.5) / (total_now + 0.5 * bins)
    q = (b + 0.5) / (total_then + 0.5 * bins)
    value += (p - q) * math.log(p / q)
  return value


def _share(part: float, whole: float) -> float:
  return part / whole if whole else 0.0


def unavailable(baseline: Baseline, reason: str) -> drift_model.Drift:
  return drift_model.Drift(baseline.uri, baseline.info.get('created_at'), reason, None, None,
                           (), (), {})


def class_drift(summary: Mapping[str, Any], baseline: Baseline) -> drift_model.Drift:
  """The Drift of this audit's summary (counted, with `drift_counts`) against `baseline`."""
  if baseline.unavailable is not None:
    return unavailable(baseline, baseline.unavailable)
  refused = summary.get('history_refused') or {}
  if refused.get('count'):
    return unavailable(baseline, (
        f'{refused["count"]} line(s) of the baseline history were refused, the first: '
        f'{refused.get("first")}'))
  then = baseline.summary
  now_classes = {(r['split'], r['class']): r for r in summary['per_class']}
  then_classes = {(r.split, r.class_id): r for r in then.per_class}
  counts = summary.get('drift_counts') or {}
  splits, per_class = [], []
  for split in summary['splits']:
    if split not in then.splits:
      continue
    now_s, then_s = summary['splits'][split], then.splits[split]
    keys = sorted({c for s, c in now_classes if s == split}
                  | {c for s, c in then_classes if s == split})
    hard_now = sum(now_classes[(split, c)]['hard'] for c in keys if (split, c) in now_classes)
    hard_then = sum(then_classes[(split, c)].hard or 0 for c in keys
                    if (split, c) in then_classes)
    for c in keys:
      a = now_classes.get((split, c))
      b = then_classes.get((split, c))
      count_now, count_then = (a['count'] if a else 0), (b.count if b else 0)
      f_now = _share(a['flagged'], count_now) if a else 0.0
      f_then = _share(b.flagged, count_then) if b else 0.0
      h_now = _share(a['hard'], count_now) if a else 0.0
      h_then = _share(b.hard or 0, count_then) if b else 0.0
      per_class.append(drift_model.DriftClass(
          split, c, count_now, count_then, f_now, f_then, h_now, h_then,
          psi(a['decile_counts'] if a else [0] * 10,
              list(b.decile_counts or [0] * 10) if b else [0] * 10)))
    c = counts.get(split, {})
    flagged_now = now_s[vocab.FLAGGED]
    fn, ft = _share(flagged_now, now_s[vocab.SCORED]), _share(then_s[vocab.FLAGGED],
                                                             then_s[vocab.SCORED])
    hn, ht = _share(hard_now, now_s[vocab.SCORED]), _share(hard_then, then_s[vocab.SCORED])
    splits.append(drift_model.DriftSplit(
        split, fn, ft, hn, ht,
        **{k: int(c.get(k, 0)) for k in audit_summary.DRIFT_COUNTS},
        flagged_new_data_share=(_share(c.get('flagged_new_data', 0), flagged_now)
                                if flagged_now else None)))
  total_now, total_then = summary['counts'], then.counts
  fn = _share(total_now[vocab.FLAGGED], total_now[vocab.SCORED])
  ft = _share(total_then[vocab.FLAGGED], total_then[vocab.SCORED])
  streaks = {int(k): int(v) for k, v in (summary.get('streaks') or {}).items()}
  drift = drift_model.Drift(baseline.uri, baseline.info.get('created_at'), None, fn, ft,
                            tuple(splits), tuple(per_class), streaks)
  logging.info('VoG drift against %s: flagged share %.4f -> %.4f, newly flagged %d, still '
               'flagged %d', baseline.uri, ft, fn, drift.newly_flagged, drift.still_flagged)
  return drift
