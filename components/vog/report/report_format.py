"""The one reader of a DifficultyReport folder.

Everything that reads a report (the review gate, the demo summary, `vog-audit runs` and
`vog-audit report`) reads it through `load_report`, which checks every value's JSON type
and refuses a folder that does not hold what the format says (ReportFormatError naming
the file and the fix). The folder's parts are typed elsewhere in this room: summary.json
in summary_model.py, its drift in drift_model.py, the rows of flagged.jsonl and of the
shards in report_rows.py, the JSON checks in json_checks.py; the names of the files, keys and
fields are vocabulary.py's. slices.json (what the flagged examples have in common, written by
dataflow/slices.py) is typed here: `parse_slices` checks every row, `load_report` reads the
file when the folder has one (older reports have none), and `flag_kind_totals` reads
summary.json's `flag_kinds`.

Importing this module does not import TensorFlow; only reading a folder does.
"""

import dataclasses
import itertools
import json
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from components.vog import vocabulary as vocab
from components.vog.compute import flag_kinds as flag_kinds_lib
from components.vog.compute import slice_stats
from components.vog.report import json_checks as jc
from components.vog.report import report_rows
from components.vog.report import summary_model
from components.vog.report.report_rows import FlaggedRow
from components.vog.report.report_rows import QuarantineRow
from components.vog.report.summary_model import ReportSummary
from components.vog.report.summary_model import parse_summary

_SHARD_NAME = re.compile(re.escape(vocab.QUARANTINE_PREFIX) + r'-(\d+)-of-(\d+)'
                         + re.escape(vocab.QUARANTINE_SUFFIX) + '$')
_HISTORY_NAME = re.compile(re.escape(vocab.HISTORY_PREFIX) + r'-(\d+)-of-(\d+)'
                           + re.escape(vocab.HISTORY_SUFFIX) + '$')


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _lines(path: str, what: str) -> Iterator[Tuple[int, Any]]:
  """(line number, parsed JSON) of each non-blank line of a JSON-lines file."""
  gfile = _tf().io.gfile
  if not gfile.exists(path):
    jc.fail(path, f'does not exist; the report folder has no {what}')
  with gfile.GFile(path, 'rb') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        yield number, json.loads(line)
      except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        jc.fail(f'{path} line {number}', f'is not valid JSON ({e})')


SLICES_FILE = vocab.SLICES_FILE
# dataflow/slices.FORMAT_VERSION (the report room does not import dataflow/).
SLICES_FORMAT_VERSION = 1
MAX_SLICES_BYTES = 64 << 20
MAX_SLICES_DEPTH = 8  # slices.json nests 5 deep (splits, split, rows, row, range)
FEATURES_EXAMINED = 'examined'  # a split entry's `features` when its features were sliced


@dataclasses.dataclass(frozen=True)
class SliceRow:
  """One row of slices.json: a slice of a split where the flagged or hard examples gather.

  `value` is the display text: a categorical value, a numeric range ('[3, 7.5)'), a token,
  or 'label -> predicted' for a label pair (`classes` then holds the two class ids).
  `group` (flagged or hard) names where it over-indexes most surely; `lift` is the share
  in that group over the share in the split; `p_adjusted` the Benjamini-Hochberg adjusted
  p-value. `approximate`: a count is a sketch's bound or a histogram's estimate.
  """
  rank: int
  feature: str
  kind: str  # slice_stats.KINDS
  value: str
  count: int
  flagged: int
  hard: int
  share_in_split: float
  share_flagged: float
  share_hard: float
  group: str  # slice_stats.GROUPS
  lift: float
  p_value: float
  p_adjusted: float
  approximate: bool
  range: Optional[Tuple[Optional[float], Optional[float]]] = None  # numeric: [low, high)
  classes: Optional[Tuple[int, int]] = None  # label_pair: (label, predicted class)

  @property
  def group_count(self) -> int:
    return self.flagged if self.group == slice_stats.FLAGGED else self.hard

  @property
  def group_share(self) -> float:
    return self.share_flagged if self.group == slice_stats.FLAGGED else self.share_hard


@dataclasses.dataclass(frozen=True)
class SplitSlices:
  """One split's entry of slices.json: its sizes, whether its features were examined
  (`features` is FEATURES_EXAMINED, or 'not examined: <why>'), and its rows, best first."""
  split: str
  examples: int
  flagged: int
  hard: int
  features: str
  tests: int
  rows: Tuple[SliceRow, ...]

  @property
  def examined(self) -> bool:
    return self.features == FEATURES_EXAMINED

  def group_size(self, group: str) -> int:
    return self.flagged if group == slice_stats.FLAGGED else self.hard


@dataclasses.dataclass(frozen=True)
class Slices:
  """slices.json, typed; `content` is the parsed file, as report_folder.publish takes it."""
  splits: Dict[str, SplitSlices]
  settings: Dict[str, Any]
  content: Dict[str, Any]

  def top(self, split: str, limit: Optional[int] = None) -> Tuple[SliceRow, ...]:
    entry = self.splits.get(split)
    return () if entry is None else entry.rows[:limit]


def _slice_row(obj: Any, where: str, previous_rank: int) -> SliceRow:
  """The SliceRow of one row, checked by summary_model.slice_row, in rank order."""
  summary_model.slice_row(obj, where)
  rank = obj['rank']
  if rank <= previous_rank:
    jc.fail(where, f'has rank {rank} after rank {previous_rank}; rows must be best first')
  bounds = obj.get('range')
  classes = obj.get('classes')
  if obj['kind'] == slice_stats.LABEL_PAIR and classes is None:
    jc.fail(where, "is a label pair without 'classes' [label, predicted]")
  return SliceRow(
      rank=rank, feature=obj['feature'], kind=obj['kind'], value=obj['value'],
      count=obj['count'], flagged=obj['flagged'], hard=obj['hard'],
      share_in_split=float(obj['share_in_split']), share_flagged=float(obj['share_flagged']),
      share_hard=float(obj['share_hard']), group=obj['group'], lift=float(obj['lift']),
      p_value=float(obj['p_value']), p_adjusted=float(obj['p_adjusted']),
      approximate=obj['approximate'],
      range=None if bounds is None else tuple(None if b is None else float(b) for b in bounds),
      classes=None if classes is None else tuple(classes))


def _split_slices(split: str, obj: Any, where: str) -> SplitSlices:
  at = f'{where}, splits[{split[:80]!r}]'
  jc.check(obj, jc.OBJ, where, f'splits[{split[:80]!r}]')
  sizes = {k: jc.field(obj, k, jc.INT, at) for k in ('examples', 'flagged', 'hard')}
  if min(sizes.values()) < 0 or max(sizes['flagged'], sizes['hard']) > sizes['examples']:
    jc.fail(at, f'has examples {sizes["examples"]}, flagged {sizes["flagged"]} and hard '
                f'{sizes["hard"]}; expected counts >= 0, flagged and hard at most examples')
  rows, rank = [], 0
  for i, raw in enumerate(jc.field(obj, 'rows', jc.LIST, at)):
    row = _slice_row(raw, f'{at}, rows[{i}]', rank)
    rank = row.rank
    rows.append(row)
  tests = obj.get('tests', 0)
  jc.check(tests, jc.INT, at, "'tests'")
  return SplitSlices(split, features=jc.field(obj, 'features', jc.STR, at), tests=tests,
                     rows=tuple(rows), **sizes)


def parse_slices(content: Any, where: str = SLICES_FILE) -> Slices:
  """The Slices of slices.json's parsed content.

  Refuses (ReportFormatError naming `where`, the split and the row) content that is not an
  object of format_version SLICES_FORMAT_VERSION, a split without its sizes or rows, and a
  row of the wrong types, an unknown kind or group, a share or p-value outside [0, 1] or
  rows out of rank order. Text values (features, values, reasons) are kept as they are:
  whoever shows them escapes them.
  """
  if not isinstance(content, dict):
    jc.fail(where, f'is {jc.describe(content)}; expected an object')
  version = content.get('format_version')
  if version != SLICES_FORMAT_VERSION or isinstance(version, bool):
    jc.fail(where, f'has format_version {str(version)[:20]}; this release reads '
                   f'{SLICES_FORMAT_VERSION}')
  splits = jc.field(content, 'splits', jc.OBJ, where)
  settings = content.get('settings') or {}
  jc.check(settings, jc.OBJ, where, "'settings'")
  return Slices({name: _split_slices(name, entry, where) for name, entry in splits.items()},
                dict(settings), content)


def read_slices(path: str) -> Slices:
  """The Slices of the slices.json at `path` (local or a URI tf.io.gfile reads).

  Refuses (ReportFormatError naming the file) one that is no regular file, larger than
  MAX_SLICES_BYTES, nested deeper than slices.json ever is, not JSON, or not what
  `parse_slices` reads.
  """
  from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
  try:
    data = record_files.read_bounded(path, MAX_SLICES_BYTES)
  except record_files.UnreadableFile as e:
    problem = str(e)
    jc.fail(path, problem[len(path):].lstrip() if problem.startswith(path)
            else f'cannot be read ({problem})')
  if record_files.json_depth(data) > MAX_SLICES_DEPTH:
    jc.fail(path, f'nests deeper than {MAX_SLICES_DEPTH} levels; a slices file is never '
                  'that deep')
  try:
    content = json.loads(data)
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
    jc.fail(path, f'is not valid JSON ({e})')
  return parse_slices(content, path)


def flag_kind_totals(summary: Mapping[str, Any], where: str = vocab.SUMMARY_FILE
                     ) -> Optional[Dict[str, int]]:
  """How many flagged examples are of each kind over every split, from summary.json's
  `flag_kinds` ({split: {kind: count}}): the kinds of flag_kinds.KINDS first, in that order
  (0 where a kind has none), then any other, by name. None when the summary has no kinds
  (an older report). Refuses (ReportFormatError naming `where`) counts that are not whole
  numbers >= 0."""
  raw = summary.get('flag_kinds')
  if raw is None:
    return None
  by_split = jc.int_maps(raw, where, 'flag_kinds')
  totals = {kind: 0 for kind in flag_kinds_lib.KINDS}
  for split, counts in by_split.items():
    for kind, count in counts.items():
      if count < 0:
        jc.fail(where, f'flag_kinds[{split[:80]!r}][{kind[:80]!r}] is {count}; expected a '
                       'count >= 0')
      totals[kind] = totals.get(kind, 0) + count
  known = {k: totals.pop(k) for k in flag_kinds_lib.KINDS}
  return {**known, **dict(sorted(totals.items()))}


@dataclasses.dataclass(frozen=True)
class LoadedReport:
  """A DifficultyReport folder: its summary and flagged rows, the rest read on demand."""
  uri: str
  summary: ReportSummary
  flagged: Tuple[FlaggedRow, ...]  # rank order, highest vog_score first
  # slices.json (what the flagged examples have in common); None where the folder has
  # none (a report of an older release).
  slices: Optional[Slices] = None

  @property
  def page_path(self) -> str:
    return os.path.join(self.uri, vocab.REPORT_FILE)

  @property
  def montage_path(self) -> Optional[str]:
    """flagged.png's path; None when the folder has none (data that is not images)."""
    path = os.path.join(self.uri, vocab.MONTAGE_FILE)
    return path if _tf().io.gfile.exists(path) else None

  def flagged_examples(self) -> List[bytes]:
    """The serialized tf.train.Example of each flagged row, aligned with `flagged`.

    Refuses (ReportFormatError) a missing, truncated or corrupt flagged_examples.tfrecord
    and one whose record count differs from flagged.jsonl's row count.
    """
    tf = _tf()
    path = os.path.join(self.uri, vocab.FLAGGED_EXAMPLES_FILE)
    if not tf.io.gfile.exists(path):
      jc.fail(path, 'does not exist; the review page is built from it')
    try:
      records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    except tf.errors.DataLossError as e:
      detail = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', e.message).strip()
      jc.fail(path, f'is truncated or corrupt ({detail})')
    if len(records) != len(self.flagged):
      jc.fail(path, f'holds {len(records)} examples but {vocab.FLAGGED_FILE} lists '
                    f'{len(self.flagged)}')
    return records

  def quarantine_files(self) -> List[str]:
    """The quarantine shards in order; [] when nothing was quarantined.

    Refuses an incomplete shard set, or none when summary.json counts quarantined examples.
    """
    shards = _shard_set(self.uri, vocab.QUARANTINE_GLOB, _SHARD_NAME, vocab.quarantine_shard_name,
                        'quarantine')
    if shards:
      return shards
    gfile = _tf().io.gfile
    legacy = os.path.join(self.uri, vocab.LEGACY_QUARANTINE_FILE)
    if self.summary.format_version == 1 and gfile.exists(legacy):
      return [legacy]
    if self.summary.counts[vocab.QUARANTINED]:
      jc.fail(self.uri, f'has no {vocab.QUARANTINE_GLOB} though {vocab.SUMMARY_FILE} counts '
                        f'{self.summary.counts[vocab.QUARANTINED]} quarantined examples')
    return []

  def quarantine_rows(self, limit: Optional[int] = None) -> Iterator[QuarantineRow]:
    """The quarantined examples over all shards, at most `limit` of them (None: all).

    Lists the shards at once and reads them lazily, while iterated. Refuses a bad shard
    set at once and a bad line when reached (ReportFormatError naming the shard and line);
    a negative limit is a ValueError.
    """
    if limit is not None and limit < 0:
      raise ValueError(f'limit={limit}; give a count of rows >= 0, or None for all')
    rows = (report_rows.quarantine_row_from_json(obj, f'{path} line {number}')
            for path in self.quarantine_files()
            for number, obj in _lines(path, 'quarantine rows'))
    return itertools.islice(rows, limit)


def _shard_set(uri: str, pattern: str, name_re, name_of, what: str) -> List[str]:
  """The shards `<what>-SSSSS-of-NNNNN...` of a report folder in order; [] when none.

  Refuses (ReportFormatError) a name that does not parse, shards of different counts (of
  different runs), a number beyond the count and a missing shard.
  """
  shards = {}
  for path in _tf().io.gfile.glob(os.path.join(uri, pattern)):
    match = name_re.match(os.path.basename(path))
    if not match:
      jc.fail(path, f'is not a {what} shard name like {name_of(0, 1)}')
    shards[(int(match.group(2)), int(match.group(1)))] = path
  totals = sorted({total for total, _ in shards})
  if len(totals) > 1:
    jc.fail(uri, f'mixes {what} shards of different runs (of {totals} shards)')
  if not totals:
    return []
  total = totals[0]
  beyond = [p for (_, i), p in shards.items() if i >= total]
  if beyond:
    jc.fail(beyond[0], f'numbers a shard beyond its count of {total}')
  missing = [name_of(i, total) for i in range(total) if (total, i) not in shards]
  if missing:
    jc.fail(uri, f'the {what} shard set is incomplete: lacks {what} shard(s) '
                 f'{", ".join(missing)}')
  return [shards[(total, i)] for i in range(total)]


def history_files(uri: str) -> List[str]:
  """The history shards of a report folder in order (format_version 3 and later).

  Refuses (ReportFormatError) a folder without them, or with an incomplete or mixed set.
  """
  shards = _shard_set(uri, vocab.HISTORY_GLOB, _HISTORY_NAME, vocab.history_shard_name, 'history')
  if not shards:
    jc.fail(uri, f'has no history shards ({vocab.HISTORY_GLOB})')
  return shards


def load_report(uri: str) -> LoadedReport:
  """Reads summary.json, flagged.jsonl and, when present, slices.json of the report
  folder at `uri` (local or gs://).

  Example bytes and quarantine shards are read only when asked for. Refuses
  (ReportFormatError naming the file, and the line in flagged.jsonl) a missing file,
  invalid JSON, a value of the wrong type, or flagged rows out of rank order; a
  slices.json as `read_slices` does.
  """
  tf = _tf()
  path = os.path.join(uri, vocab.SUMMARY_FILE)
  if not tf.io.gfile.exists(path):
    jc.fail(path, 'does not exist; is this the difficulty_report output of VarianceOfGradients?',
            'give the difficulty_report folder of an audit')
  with tf.io.gfile.GFile(path, 'rb') as f:
    content = f.read()
  try:
    raw = json.loads(content)
  except ValueError as e:
    jc.fail(path, f'is not valid JSON ({e})')
  summary = parse_summary(raw, path)
  flagged, rank = [], 0
  flagged_path = os.path.join(uri, vocab.FLAGGED_FILE)
  for number, obj in _lines(flagged_path, 'flagged rows'):
    where = f'{flagged_path} line {number}'
    row = report_rows.flagged_row_from_json(obj, where)
    if row.rank <= rank:
      jc.fail(where, f'has rank {row.rank} after rank {rank}; rows must be in rank order, '
                     'one per rank')
    rank = row.rank
    flagged.append(row)
  slices_path = os.path.join(uri, SLICES_FILE)
  slices = read_slices(slices_path) if tf.io.gfile.exists(slices_path) else None
  return LoadedReport(uri, summary, tuple(flagged), slices)
