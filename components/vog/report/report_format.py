"""The one reader of a DifficultyReport folder.

Everything that reads a report (the review gate, the demo summary, `vog-audit runs` and
`vog-audit report`) reads it through `load_report`, which checks every value's JSON type
and refuses a folder that does not hold what the format says (ReportFormatError naming
the file and the fix). The folder's parts are typed elsewhere in this room: summary.json
in summary_model.py, its drift in drift_model.py, the rows of flagged.jsonl and of the
shards in report_rows.py, the JSON checks in json_checks.py; the names of the files, keys and
fields are vocabulary.py's.

Importing this module does not import TensorFlow; only reading a folder does.
"""

import dataclasses
import itertools
import json
import os
import re
from typing import Any, Iterator, List, Optional, Tuple

from components.vog import vocabulary as vocab
from components.vog.report import json_checks as jc
from components.vog.report import report_rows
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


@dataclasses.dataclass(frozen=True)
class LoadedReport:
  """A DifficultyReport folder: its summary and flagged rows, the rest read on demand."""
  uri: str
  summary: ReportSummary
  flagged: Tuple[FlaggedRow, ...]  # rank order, highest vog_score first

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
  """Reads summary.json and flagged.jsonl of the report folder at `uri` (local or gs://).

  Example bytes and quarantine shards are read only when asked for. Refuses
  (ReportFormatError naming the file, and the line in flagged.jsonl) a missing file,
  invalid JSON, a value of the wrong type, or flagged rows out of rank order.
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
  return LoadedReport(uri, summary, tuple(flagged))
