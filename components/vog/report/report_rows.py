"""The rows of a DifficultyReport and their JSON: a line of flagged.jsonl (FlaggedRow),
of a quarantine shard (QuarantineRow) and of a history shard (HistoryRow), and summary.json's
rows per class (ClassRow) and per decile (DecileRow).

The audit writes each through its `..._to_json` (or `history_lines`), and readers read each
through its `..._from_json`, which refuses a wrong type or an impossible value
(ReportFormatError naming where). The names of the keys and fields are vocabulary.py's.
"""

import base64
import binascii
import dataclasses
import json
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from components.vog import vocabulary as vocab
from components.vog.compute import flag_kinds
from components.vog.report import json_checks as jc


# Fields added in format_version 3, left out of a row's JSON while None, so that a row
# without them is written as before.
_FLAGGED_ROW_ADDED = ('drift_status', 'flagged_streak', 'kind')
_CLASS_ROW_ADDED = ('hard',)


@dataclasses.dataclass(frozen=True)
class FlaggedRow:
  """One line of flagged.jsonl: a flagged example; rank 1 has the highest vog_score."""
  rank: int
  example_id: str
  split: str
  label: Optional[int]  # None for unlabeled data (label_mode=predicted)
  predicted_class: int
  target_class: int
  vog_score: float
  vog_raw: float
  vog_percentile: float
  vog_bucket: str
  # Against the baseline's history (None without one): vocab.DRIFT_STATUSES, and for how many
  # audits in a row, this one included, the example has been flagged.
  drift_status: Optional[str] = None
  flagged_streak: Optional[int] = None
  # The example's label-error signals by field name (vocab.SIGNAL_FIELDS); None without them.
  signals: Optional[Dict[str, float]] = None
  # The names (vocab.AGREEMENT_NAMES) whose own rank across the split puts the example in its
  # hard bucket too (`vog` by raw VoG, whatever `normalize` is); None without signals
  # (label_mode='predicted', or before version 4).
  agreeing: Optional[Tuple[str, ...]] = None
  # Where its gradients moved most: up to five (source, mean sigma) pairs, largest first,
  # a source being a float input, an element `name[j]` of a vector input or an Embedding
  # layer; None for a model with one source.
  top_sigma: Optional[Tuple[Tuple[str, float], ...]] = None
  # What the reviewer will most likely find (compute/flag_kinds.py): one of
  # flag_kinds.KINDS ('wrong label', 'atypical', 'unclear'); None in rows written before
  # kinds, and then left out of the JSON.
  kind: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class QuarantineRow:
  """One line of a quarantine shard: an example that could not be scored, and why."""
  split: str
  example_id: str
  kind: str
  reason: str
  record: bytes


@dataclasses.dataclass(frozen=True)
class ClassRow:
  """One `per_class` row of summary.json (`class` in JSON is `class_id` here)."""
  split: str
  class_id: int
  count: int
  flagged: int
  flagged_share: float
  vog_raw_mean: float
  vog_raw_std: float
  error_rate: Optional[float]  # None when the class had no labelled example
  # From format_version 3 (None before): `hard`, the examples whose vog_raw is above the
  # hard cut among the split's raw scores (the hard bucket before class normalisation,
  # which by construction leaves every class about the same share of its own bucket), and
  # how many fell in each vog_decile 1..10 (what the drift's shift statistic compares).
  hard: Optional[int] = None
  decile_counts: Optional[Tuple[int, ...]] = None
  # The mean of each label-error signal over the class (vocab.SIGNAL_FIELDS); None without them.
  signal_means: Optional[Dict[str, float]] = None

  @property
  def hard_share(self) -> Optional[float]:
    return None if self.hard is None else (self.hard / self.count if self.count else 0.0)

  def to_json(self) -> Dict[str, Any]:
    out = jc.to_json(self, _CLASS_ROW_ADDED)
    if self.decile_counts is not None:
      out['decile_counts'] = [int(n) for n in self.decile_counts]
    if self.signal_means is not None:
      out['signal_means'] = {k: float(v) for k, v in self.signal_means.items()}
    return out


def _signal_map(obj: Mapping[str, Any], key: str, where: str) -> Optional[Dict[str, float]]:
  """obj[key] as {signal field: number}; None when absent; refuses unknown names."""
  raw = obj.get(key)
  if raw is None:
    return None
  jc.check(raw, jc.OBJ, where, repr(key))
  known = vocab.SIGNAL_FIELDS
  unknown = sorted(k for k in raw if k not in known)
  if unknown:
    jc.fail(where, f'has {key!r} naming unknown signal(s) {unknown[:3]}; known: '
                   f'{", ".join(known)}')
  return {k: jc.check(v, jc.NUM, where, f'{key}[{k!r}]') for k, v in raw.items()}


def class_row_from_json(obj: Any, where: str) -> ClassRow:
  """The ClassRow of one `per_class` object; refuses impossible hard and decile counts."""
  fields = jc.fields(ClassRow, obj, where)
  deciles = obj.get('decile_counts')
  if deciles is not None:
    deciles = tuple(jc.check(n, jc.INT, where, 'a decile count')
                    for n in jc.check(deciles, jc.LIST, where, "'decile_counts'"))
    if len(deciles) != 10 or min(deciles) < 0 or sum(deciles) != fields['count']:
      jc.fail(where, f"has 'decile_counts' {list(deciles)[:12]}; expected 10 counts >= 0 "
                     f"adding up to the class's count {fields['count']}")
  if fields['hard'] is not None and not 0 <= fields['hard'] <= fields['count']:
    jc.fail(where, f"has 'hard' {fields['hard']}; expected 0 to the class's count "
                   f"{fields['count']}")
  return ClassRow(decile_counts=deciles, signal_means=_signal_map(obj, 'signal_means', where),
                  **fields)


@dataclasses.dataclass(frozen=True)
class HistoryRow:
  """One line of a history shard: an example's standing after this audit.

  `streak` is how many audits in a row, this one included, flagged the example (0 when
  this one did not); each audit reads only its baseline's rows to extend it.
  """
  example_id: str
  split: str
  class_id: int
  flagged: int
  streak: int
  percentile: float


def history_row_to_json(row: HistoryRow) -> Dict[str, Any]:
  return jc.to_json(row)


def history_line(example_id: str, split: str, class_id: int, flagged: int, streak: int,
                 percentile: float) -> str:
  """The history shard line of one example: `history_row_to_json` of its HistoryRow as
  compact JSON with sorted keys, formatted directly (a shard holds a line per scored
  example)."""
  return ('{"class":%d,"example_id":%s,"flagged":%d,"percentile":%s,"split":%s,'
          '"streak":%d}' % (class_id, json.dumps(example_id), flagged,
                            json.dumps(float(percentile)), json.dumps(split), streak))


def history_lines(example_ids: Sequence[str], split: str, class_ids: Sequence[int],
                  flagged: Sequence[int], streaks: Sequence[int],
                  percentiles: Sequence[float]) -> List[str]:
  """`history_line` of many examples of one split, the same text a line at a time
  costs: the split is encoded once, each id by json's own C encoder, each percentile
  by float repr (what JSON writes for a finite float; a non-finite one goes through
  `history_line`)."""
  encode = json.encoder.encode_basestring_ascii
  template = ('{"class":%d,"example_id":%s,"flagged":%d,"percentile":%r,"split":'
              + encode(split).replace('%', '%%') + ',"streak":%d}')
  out = []
  for example_id, class_id, flag, streak, percentile in zip(
      example_ids, class_ids, flagged, streaks, percentiles):
    percentile = float(percentile)
    if math.isfinite(percentile):
      out.append(template % (class_id, encode(example_id), flag, percentile, streak))
    else:
      out.append(history_line(example_id, split, class_id, flag, streak, percentile))
  return out


def history_row_line(row: HistoryRow) -> str:
  """`history_line` of a HistoryRow."""
  return history_line(row.example_id, row.split, row.class_id, row.flagged, row.streak,
                      row.percentile)


def history_row_from_json(obj: Any, where: str = 'history row') -> HistoryRow:
  """The HistoryRow of one parsed line; refuses a wrong type or an impossible value."""
  row = HistoryRow(**jc.fields(HistoryRow, obj, where))
  if row.streak > MAX_STREAK:
    jc.fail(where, f'has streak={row.streak}, more audits in a row than any schedule makes '
                   f'(at most {MAX_STREAK:,})')
  if row.flagged not in (0, 1) or row.streak < 0 or (row.streak > 0) != bool(row.flagged):
    jc.fail(where, f'has flagged={row.flagged} and streak={row.streak}; a flagged example has '
                   'a streak >= 1 and an unflagged one 0')
  if not 0.0 <= row.percentile <= 100.0:
    jc.fail(where, f'has percentile {row.percentile}; expected 0..100')
  return row


# A streak counts audits in a row; one a minute for four thousand years stays below this.
MAX_STREAK = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class DecileRow:
  """One `error_rate_by_decile` row of summary.json."""
  split: str
  decile: int
  count: int
  errors: int
  error_rate: float


def flagged_row_to_json(row: FlaggedRow, record: Optional[bytes] = None) -> Dict[str, Any]:
  """flagged.jsonl's line for `row`; with `record`, its bytes too (as vocab.RECORD_BASE64)."""
  line = jc.to_json(row, _FLAGGED_ROW_ADDED)
  if row.signals is not None:
    line['signals'] = {k: float(v) for k, v in row.signals.items()}
  if row.agreeing is not None:
    line['agreeing'] = [str(name) for name in row.agreeing]
  if row.top_sigma is not None:
    line['top_sigma'] = [[str(name), float(value)] for name, value in row.top_sigma]
  if record is not None:
    line[vocab.RECORD_BASE64] = base64.b64encode(record).decode('ascii')
  return line


def flagged_row_from_json(obj: Any, where: str = 'flagged row') -> FlaggedRow:
  """The FlaggedRow of one parsed line; extra keys are ignored.

  Refuses (ReportFormatError naming `where`) a line that is not an object, lacks a
  field or holds one of the wrong type, or a `kind` that is not one of flag_kinds.KINDS.
  """
  fields = jc.fields(FlaggedRow, obj, where)
  if fields['kind'] is not None and fields['kind'] not in flag_kinds.KINDS:
    jc.fail(where, f"has 'kind' {fields['kind'][:40]!r}; expected one of "
                   f'{", ".join(flag_kinds.KINDS)}')
  return FlaggedRow(signals=_signal_map(obj, 'signals', where),
                    agreeing=_agreeing(obj, where), top_sigma=_top_sigma(obj, where),
                    **fields)


def _top_sigma(obj: Mapping[str, Any], where: str) -> Optional[Tuple[Tuple[str, float], ...]]:
  """obj['top_sigma'] as ((source, sigma), ...); None when absent."""
  raw = obj.get('top_sigma')
  if raw is None:
    return None
  pairs = []
  for i, pair in enumerate(jc.check(raw, jc.LIST, where, "'top_sigma'")):
    if not isinstance(pair, list) or len(pair) != 2:
      jc.fail(where, f"has top_sigma[{i}] {jc.describe(pair)}; expected [source, sigma]")
    name = jc.check(pair[0], jc.STR, where, f'top_sigma[{i}] source')
    value = jc.check(pair[1], jc.NUM, where, f'top_sigma[{i}] sigma')
    if not math.isfinite(value) or value < 0:
      jc.fail(where, f'has top_sigma[{i}] sigma {value!r}; expected a finite number >= 0')
    pairs.append((name, value))
  return tuple(pairs)


def _agreeing(obj: Mapping[str, Any], where: str) -> Optional[Tuple[str, ...]]:
  """obj['agreeing'] as a tuple of vocab.AGREEMENT_NAMES; None when absent."""
  raw = obj.get('agreeing')
  if raw is None:
    return None
  names = tuple(jc.check(n, jc.STR, where, 'an agreeing name')
                for n in jc.check(raw, jc.LIST, where, "'agreeing'"))
  known = vocab.AGREEMENT_NAMES
  unknown = sorted(set(names) - set(known))
  if unknown or len(set(names)) != len(names):
    jc.fail(where, f"has 'agreeing' {list(names)[:9]}; expected distinct names among "
                   f'{", ".join(known)}')
  return names


def quarantine_row_to_json(row: QuarantineRow) -> Dict[str, Any]:
  """A quarantine shard's line for `row`, its bytes as vocab.RECORD_BASE64."""
  return dict(jc.to_json(row),
              **{vocab.RECORD_BASE64: base64.b64encode(row.record).decode('ascii')})


def quarantine_row_from_json(obj: Any, where: str = 'quarantine row') -> QuarantineRow:
  """The QuarantineRow of one parsed line; refuses bad fields or base64 (ReportFormatError)."""
  fields = jc.fields(QuarantineRow, obj, where)
  return QuarantineRow(record=record_from_json(obj, where), **fields)


def record_from_json(obj: Mapping[str, Any], where: str) -> bytes:
  """The example bytes of a line's vocab.RECORD_BASE64; refuses text that is not base64."""
  text = jc.field(obj, vocab.RECORD_BASE64, jc.STR, where)
  try:
    return base64.b64decode(text, validate=True)
  except (binascii.Error, ValueError):
    jc.fail(where, f'has {vocab.RECORD_BASE64} that is not valid base64')
