"""The DifficultyReport's typed rows and its one reader.

The audit writes the report's rows through `flagged_row_to_json`,
`quarantine_row_to_json` and the history line functions here, and everything that reads a
report (the review gate, the demo summary, `vog-audit runs` and `vog-audit report`) reads
it through `load_report`, which checks every value's JSON type and refuses a folder that
does not hold what the format says (ReportFormatError naming the file and the fix). The
drift model (Drift, DriftSplit, DriftClass) and its shift statistic are read here too.
The names of the files, keys and fields are vocabulary.py's.

Importing this module does not import TensorFlow; only reading a folder does.
"""

import base64
import binascii
import dataclasses
import itertools
import json
import math
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, NoReturn, Optional, Sequence, Tuple

from components.vog import vocabulary as vocab

_REWRITE = ('re-run the VarianceOfGradients audit to rewrite the report, or give the '
            'difficulty_report folder of one')
_SHARD_NAME = re.compile(re.escape(vocab.QUARANTINE_PREFIX) + r'-(\d+)-of-(\d+)'
                         + re.escape(vocab.QUARANTINE_SUFFIX) + '$')
_HISTORY_NAME = re.compile(re.escape(vocab.HISTORY_PREFIX) + r'-(\d+)-of-(\d+)'
                           + re.escape(vocab.HISTORY_SUFFIX) + '$')



class ReportFormatError(ValueError):
  """A report folder's file is missing or does not hold what the format says."""


def _fail(where: str, problem: str, fix: str = _REWRITE) -> NoReturn:
  raise ReportFormatError(f'{where}: {problem} - {fix}')


_INT, _NUM, _STR, _OBJ, _LIST = 'an integer', 'a number', 'a string', 'an object', 'a list'
_JSON_KINDS = {dict: _OBJ, list: _LIST, str: _STR, bool: 'a boolean', int: _INT, float: _NUM,
               type(None): 'null'}


def _describe(value: Any) -> str:
  kind = _JSON_KINDS.get(type(value), 'a value')
  return kind if kind in (_OBJ, _LIST) else f'{kind} ({repr(value)[:40]})'


def _check(value: Any, kind: str, where: str, what: str) -> Any:
  """`value` when it is of `kind` (a number may be an integer); else ReportFormatError."""
  found = _JSON_KINDS.get(type(value))
  if found != kind and (kind, found) != (_NUM, _INT):
    _fail(where, f'{what} is {_describe(value)}; expected {kind}')
  return float(value) if kind == _NUM else value


def _field(obj: Mapping[str, Any], key: str, kind: str, where: str,
           optional: bool = False) -> Any:
  """obj[key] of `kind`; None when `optional` and the key is missing or null."""
  if obj.get(key) is None:
    if optional:
      return None
    _fail(where, f'has no {key!r}' if key not in obj else f'has {key!r} null')
  return _check(obj[key], kind, where, repr(key))


_KINDS = {int: (_INT, False), float: (_NUM, False), str: (_STR, False),
          Optional[int]: (_INT, True), Optional[float]: (_NUM, True),
          Optional[str]: (_STR, True)}
_JSON_KEYS = {'class_id': 'class'}  # attributes named otherwise in JSON


def _spec(cls) -> Tuple[Tuple[str, str, str, bool], ...]:
  """(attribute, JSON key, kind, may be missing or null) of a row type's plain fields."""
  return tuple((f.name, _JSON_KEYS.get(f.name, f.name)) + _KINDS[f.type]
               for f in dataclasses.fields(cls) if f.type in _KINDS)


def _fields(cls, obj: Any, where: str) -> Dict[str, Any]:
  """{attribute: checked value} of the row type `cls` from one parsed JSON object."""
  if not isinstance(obj, dict):
    _fail(where, f'is {_describe(obj)}; expected an object')
  return {attr: _field(obj, key, kind, where, optional)
          for attr, key, kind, optional in _spec(cls)}


_CASTS = {_INT: int, _NUM: float, _STR: str}  # NumPy scalars from the writer become JSON's


# Fields added in format_version 3; a row without them is written as before.
_OMITTED_WHEN_NONE = frozenset(('drift_status', 'flagged_streak', 'hard'))


def _to_json(row) -> Dict[str, Any]:
  return {key: None if getattr(row, attr) is None else _CASTS[kind](getattr(row, attr))
          for attr, key, kind, _ in _spec(type(row))
          if not (attr in _OMITTED_WHEN_NONE and getattr(row, attr) is None)}


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
    out = _to_json(self)
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
  _check(raw, _OBJ, where, repr(key))
  known = vocab.SIGNAL_FIELDS
  unknown = sorted(k for k in raw if k not in known)
  if unknown:
    _fail(where, f'has {key!r} naming unknown signal(s) {unknown[:3]}; known: '
                 f'{", ".join(known)}')
  return {k: _check(v, _NUM, where, f'{key}[{k!r}]') for k, v in raw.items()}


def _class_row(obj: Any, where: str) -> ClassRow:
  fields = _fields(ClassRow, obj, where)
  deciles = obj.get('decile_counts')
  if deciles is not None:
    deciles = tuple(_check(n, _INT, where, 'a decile count')
                    for n in _check(deciles, _LIST, where, "'decile_counts'"))
    if len(deciles) != 10 or min(deciles) < 0 or sum(deciles) != fields['count']:
      _fail(where, f"has 'decile_counts' {list(deciles)[:12]}; expected 10 counts >= 0 "
                   f"adding up to the class's count {fields['count']}")
  if fields['hard'] is not None and not 0 <= fields['hard'] <= fields['count']:
    _fail(where, f"has 'hard' {fields['hard']}; expected 0 to the class's count "
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
  return _to_json(row)


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
  row = HistoryRow(**_fields(HistoryRow, obj, where))
  if row.streak > MAX_STREAK:
    _fail(where, f'has streak={row.streak}, more audits in a row than any schedule makes '
                 f'(at most {MAX_STREAK:,})')
  if row.flagged not in (0, 1) or row.streak < 0 or (row.streak > 0) != bool(row.flagged):
    _fail(where, f'has flagged={row.flagged} and streak={row.streak}; a flagged example has '
                 'a streak >= 1 and an unflagged one 0')
  if not 0.0 <= row.percentile <= 100.0:
    _fail(where, f'has percentile {row.percentile}; expected 0..100')
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


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  path: str
  epoch: int
  step: int


@dataclasses.dataclass(frozen=True)
class ModelInput:
  name: str
  shape: Tuple[int, ...]
  dtype: str


class _ShareChanges:
  """Changes are now minus then, derived rather than stored, so a summary cannot carry a
  change its shares contradict."""
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float

  @property
  def flagged_share_change(self) -> float:
    return self.flagged_share_now - self.flagged_share_then

  @property
  def hard_share_change(self) -> float:
    return self.hard_share_now - self.hard_share_then


@dataclasses.dataclass(frozen=True)
class DriftSplit(_ShareChanges):
  """One split now against the baseline. Shares are fractions (0..1) of scored examples.

  The example counts come from matching example_ids with the baseline's history:
  `matched` are in both runs, `new_examples` only now (`gone_examples` were in the
  baseline's split only). Of the examples flagged now, `newly_flagged` were matched but
  not flagged then, `still_flagged` were flagged then too, and `flagged_new_data` are
  new; `no_longer_flagged` were flagged then and are matched but not flagged now.
  """
  split: str
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float
  matched: int
  new_examples: int
  gone_examples: int
  newly_flagged: int
  still_flagged: int
  no_longer_flagged: int
  flagged_new_data: int
  flagged_new_data_share: Optional[float]  # of the flagged set; None when none is flagged



@dataclasses.dataclass(frozen=True)
class DriftClass(_ShareChanges):
  """One class of one split now against the baseline; `psi` is SHIFT_STATISTIC."""
  split: str
  class_id: int
  count_now: int
  count_then: int
  flagged_share_now: float
  flagged_share_then: float
  hard_share_now: float
  hard_share_then: float
  psi: float

  @property
  def hard_share_z(self) -> float:
    """The rise of the hard share against chance: a two-proportion z statistic,
    change / sqrt(p (1 - p) (1/n_now + 1/n_then)) with p the pooled share; 0 when a side
    is empty or the pooled share is 0 or 1. One example moves a class of a dozen by 8
    points, a z of about 0.7; a real rise in a class of hundreds scores far higher."""
    if not self.count_now or not self.count_then:
      return 0.0
    pooled = ((self.hard_share_now * self.count_now + self.hard_share_then * self.count_then)
              / (self.count_now + self.count_then))
    spread = pooled * (1.0 - pooled) * (1.0 / self.count_now + 1.0 / self.count_then)
    return self.hard_share_change / math.sqrt(spread) if spread > 0 else 0.0


# Per class: the population stability index of the vog_decile histogram (vog_percentile
# in ten bins) now against then, sum((p_now - p_then) * ln(p_now / p_then)), each bin's
# share smoothed as (count + 0.5) / (total + 5). Percentiles are ranks of class-normalised
# scores, comparable between models where raw VoG is not. Under 0.1 is read as stable,
# 0.1 to 0.25 as a moderate shift, above 0.25 as a large one.
SHIFT_STATISTIC = 'psi_vog_decile'


@dataclasses.dataclass(frozen=True)
class Drift:
  """summary.json's `drift`: this audit against the audit of the last shipped model.

  `unavailable` says why nothing could be compared (the baseline's report is missing,
  unreadable or from a release before format_version 3); the other fields are then empty.
  `streaks` counts the examples flagged now by how many audits in a row (>= 2) they have
  been flagged.
  """
  baseline_uri: str
  baseline_created_at: Optional[str]
  unavailable: Optional[str]
  flagged_share_now: Optional[float]
  flagged_share_then: Optional[float]
  splits: Tuple[DriftSplit, ...]
  per_class: Tuple[DriftClass, ...]
  streaks: Dict[int, int]

  @property
  def flagged_share_change(self) -> Optional[float]:
    if self.flagged_share_now is None or self.flagged_share_then is None:
      return None
    return self.flagged_share_now - self.flagged_share_then

  @property
  def largest_hard_share_increase(self) -> Optional[DriftClass]:
    """The class (of any split) whose hard share rose most against chance, by
    DriftClass.hard_share_z, so that one example more in a small class does not outrank a
    real rise in a large one; None when none rose."""
    rising = [c for c in self.per_class if c.hard_share_change > 0 and c.hard_share_z > 0]
    return max(rising, key=lambda c: (c.hard_share_z, c.hard_share_change, -c.class_id)
               ) if rising else None

  @property
  def newly_flagged(self) -> int:
    return sum(s.newly_flagged for s in self.splits)

  @property
  def still_flagged(self) -> int:
    return sum(s.still_flagged for s in self.splits)

  @property
  def longest_streak(self) -> int:
    return max(self.streaks, default=0)

  def properties(self) -> Dict[str, Any]:
    """The vocab.DRIFT_PROPERTIES values; only the baseline and why when it could not be
    compared."""
    if self.unavailable is not None:
      return {vocab.DRIFT_UNAVAILABLE: self.unavailable[:1000],
              vocab.DRIFT_BASELINE_URI: self.baseline_uri}
    top = self.largest_hard_share_increase
    return {vocab.FLAGGED_SHARE_CHANGE: float(self.flagged_share_change or 0.0),
            vocab.NEWLY_FLAGGED: self.newly_flagged, vocab.STILL_FLAGGED_COUNT: self.still_flagged,
            vocab.MAX_CLASS_HARD_SHARE_INCREASE: float(top.hard_share_change) if top else 0.0,
            vocab.MAX_HARD_SHARE_CLASS: f'{top.split}/{top.class_id}' if top else '',
            vocab.DRIFT_BASELINE_URI: self.baseline_uri}

  def to_json(self) -> Dict[str, Any]:
    return {
        'baseline': {'uri': self.baseline_uri, 'created_at': self.baseline_created_at},
        'unavailable': self.unavailable,
        'shift_statistic': SHIFT_STATISTIC,
        'flagged_share_now': self.flagged_share_now,
        'flagged_share_then': self.flagged_share_then,
        'flagged_share_change': self.flagged_share_change,
        'splits': [_with_changes(r) for r in self.splits],
        'per_class': [_with_changes(r) for r in self.per_class],
        'streaks': {str(k): int(v) for k, v in sorted(self.streaks.items())},
    }


def _with_changes(row) -> Dict[str, Any]:
  """A drift row's JSON with its derived changes, for readers of summary.json."""
  return dict(_to_json(row), flagged_share_change=row.flagged_share_change,
              hard_share_change=row.hard_share_change)


def parse_drift(raw: Any, where: str) -> Drift:
  """The Drift of summary.json's `drift` object; ReportFormatError for a bad one."""
  where = f'{where}, drift'
  _check(raw, _OBJ, where, 'drift')
  baseline = _field(raw, 'baseline', _OBJ, where)
  streaks = {}
  for k, v in _check(raw.get('streaks') or {}, _OBJ, where, "'streaks'").items():
    if not k.isdigit() or int(k) < 2:
      _fail(where, f'has a streak length {k!r}; expected a whole number >= 2')
    streaks[int(k)] = _check(v, _INT, where, f'streaks[{k!r}]')
  return Drift(
      baseline_uri=_field(baseline, 'uri', _STR, f'{where}, baseline'),
      baseline_created_at=_field(baseline, 'created_at', _STR, f'{where}, baseline',
                                 optional=True),
      unavailable=_field(raw, 'unavailable', _STR, where, optional=True),
      flagged_share_now=_field(raw, 'flagged_share_now', _NUM, where, optional=True),
      flagged_share_then=_field(raw, 'flagged_share_then', _NUM, where, optional=True),
      splits=_rows(raw.get('splits') or [], 'splits', DriftSplit, where),
      per_class=_rows(raw.get('per_class') or [], 'per_class', DriftClass, where),
      streaks=streaks)


def flagged_row_to_json(row: FlaggedRow, record: Optional[bytes] = None) -> Dict[str, Any]:
  """flagged.jsonl's line for `row`; with `record`, its bytes too (as vocab.RECORD_BASE64)."""
  line = _to_json(row)
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
  field or holds one of the wrong type.
  """
  fields = _fields(FlaggedRow, obj, where)
  return FlaggedRow(signals=_signal_map(obj, 'signals', where),
                    agreeing=_agreeing(obj, where), top_sigma=_top_sigma(obj, where),
                    **fields)


def _top_sigma(obj: Mapping[str, Any], where: str) -> Optional[Tuple[Tuple[str, float], ...]]:
  """obj['top_sigma'] as ((source, sigma), ...); None when absent."""
  raw = obj.get('top_sigma')
  if raw is None:
    return None
  pairs = []
  for i, pair in enumerate(_check(raw, _LIST, where, "'top_sigma'")):
    if not isinstance(pair, list) or len(pair) != 2:
      _fail(where, f"has top_sigma[{i}] {_describe(pair)}; expected [source, sigma]")
    name = _check(pair[0], _STR, where, f'top_sigma[{i}] source')
    value = _check(pair[1], _NUM, where, f'top_sigma[{i}] sigma')
    if not math.isfinite(value) or value < 0:
      _fail(where, f'has top_sigma[{i}] sigma {value!r}; expected a finite number >= 0')
    pairs.append((name, value))
  return tuple(pairs)


def _agreeing(obj: Mapping[str, Any], where: str) -> Optional[Tuple[str, ...]]:
  """obj['agreeing'] as a tuple of vocab.AGREEMENT_NAMES; None when absent."""
  raw = obj.get('agreeing')
  if raw is None:
    return None
  names = tuple(_check(n, _STR, where, 'an agreeing name')
                for n in _check(raw, _LIST, where, "'agreeing'"))
  known = vocab.AGREEMENT_NAMES
  unknown = sorted(set(names) - set(known))
  if unknown or len(set(names)) != len(names):
    _fail(where, f"has 'agreeing' {list(names)[:9]}; expected distinct names among "
                 f'{", ".join(known)}')
  return names


def quarantine_row_to_json(row: QuarantineRow) -> Dict[str, Any]:
  """A quarantine shard's line for `row`, its bytes as vocab.RECORD_BASE64."""
  return dict(_to_json(row), **{vocab.RECORD_BASE64: base64.b64encode(row.record).decode('ascii')})


def quarantine_row_from_json(obj: Any, where: str = 'quarantine row') -> QuarantineRow:
  """The QuarantineRow of one parsed line; refuses bad fields or base64 (ReportFormatError)."""
  fields = _fields(QuarantineRow, obj, where)
  return QuarantineRow(record=record_from_json(obj, where), **fields)


def record_from_json(obj: Mapping[str, Any], where: str) -> bytes:
  """The example bytes of a line's vocab.RECORD_BASE64; refuses text that is not base64."""
  text = _field(obj, vocab.RECORD_BASE64, _STR, where)
  try:
    return base64.b64decode(text, validate=True)
  except (binascii.Error, ValueError):
    _fail(where, f'has {vocab.RECORD_BASE64} that is not valid base64')


@dataclasses.dataclass(frozen=True)
class ReportSummary:
  """summary.json, typed. Keys this class does not name are in `raw`."""
  format_version: int
  created_at: Optional[str]
  counts: Dict[str, int]  # every vocab.HEADLINE key
  splits: Dict[str, Dict[str, int]]  # split -> every vocab.HEADLINE key
  per_class: Tuple[ClassRow, ...]
  error_rate_by_decile: Tuple[DecileRow, ...]
  quarantine_kinds: Dict[str, Dict[str, int]]  # split -> kind -> count
  settings: Dict[str, Any]
  checkpoints: Tuple[Checkpoint, ...]
  num_classes: Optional[int]  # None (and model_inputs None) in summaries that lack them
  model_inputs: Optional[Tuple[ModelInput, ...]]
  baseline: Optional[Dict[str, Any]]
  drift: Optional[Drift]  # None without a baseline
  raw: Dict[str, Any]
  ranked_by: str = vocab.VOG  # what ranked the examples (vocab.RANKED_BY; `vog` before version 4)


def _counts(obj: Any, where: str, what: str) -> Dict[str, int]:
  """{vocab.HEADLINE key: count} of `obj`, which must hold every vocab.HEADLINE key."""
  _check(obj, _OBJ, where, what)
  return {k: _field(obj, k, _INT, f'{where}, {what}') for k in vocab.HEADLINE}


def _int_map(obj: Any, where: str, what: str) -> Dict[str, Dict[str, int]]:
  """{name: {name: int}} such as quarantine_kinds."""
  _check(obj, _OBJ, where, what)
  return {outer: {k: _check(n, _INT, where, f'{what}[{outer!r}][{k!r}]')
                  for k, n in _check(inner, _OBJ, where, f'{what}[{outer!r}]').items()}
          for outer, inner in obj.items()}


def _rows(values: Any, key: str, cls, where: str) -> tuple:
  _check(values, _LIST, where, repr(key))
  return tuple(cls(**_fields(cls, v, f'{where}, {key}[{i}]')) for i, v in enumerate(values))


def _model_inputs(values: Any, where: str) -> Tuple[ModelInput, ...]:
  inputs = []
  for i, v in enumerate(_check(values, _LIST, where, "'model_inputs'")):
    at = f'{where}, model_inputs[{i}]'
    _check(v, _OBJ, where, f'model_inputs[{i}]')
    shape = tuple(_check(d, _INT, at, 'a shape entry') for d in _field(v, 'shape', _LIST, at))
    inputs.append(ModelInput(_field(v, 'name', _STR, at), shape, _field(v, 'dtype', _STR, at)))
  return tuple(inputs)


def parse_summary(raw: Any, where: str = vocab.SUMMARY_FILE) -> ReportSummary:
  """The ReportSummary of summary.json's parsed content.

  Refuses (ReportFormatError naming `where`) a summary that is not an object, a
  format_version this release cannot read, missing required keys, or values of the
  wrong type (e.g. a count that is a string).
  """
  if not isinstance(raw, dict):
    _fail(where, f'is {_describe(raw)}; expected an object')
  version = _field(raw, 'format_version', _INT, where)
  if version not in vocab.READABLE_VERSIONS:
    _fail(where, f'has format_version {version}; this release reads {vocab.READABLE_VERSIONS}',
          'upgrade vog-audit to read it, or re-run the audit with this release')
  splits = _field(raw, 'splits', _OBJ, where)
  inputs = raw.get('model_inputs')
  return ReportSummary(
      format_version=version,
      created_at=_field(raw, 'created_at', _STR, where, optional=True),
      counts=_counts(_field(raw, vocab.COUNTS, _OBJ, where), where, vocab.COUNTS),
      splits={name: _counts(v, where, f'splits[{name!r}]') for name, v in splits.items()},
      per_class=tuple(_class_row(v, f'{where}, per_class[{i}]') for i, v in enumerate(
          _check(raw.get('per_class') or [], _LIST, where, "'per_class'"))),
      error_rate_by_decile=_rows(raw.get('error_rate_by_decile') or [], 'error_rate_by_decile',
                                 DecileRow, where),
      quarantine_kinds=_int_map(raw.get('quarantine_kinds') or {}, where,
                                'quarantine_kinds'),
      settings=_field(raw, vocab.SETTINGS, _OBJ, where),
      checkpoints=_rows(_field(raw, vocab.CHECKPOINTS, _LIST, where), vocab.CHECKPOINTS,
                        Checkpoint, where),
      num_classes=_field(raw, 'num_classes', _INT, where, optional=True),
      model_inputs=None if inputs is None else _model_inputs(inputs, where),
      baseline=_field(raw, 'baseline', _OBJ, where, optional=True),
      drift=None if raw.get('drift') is None else parse_drift(raw['drift'], where),
      raw=raw, ranked_by=_ranked_by(raw, version, where))


def _ranked_by(raw: Mapping[str, Any], version: int, where: str) -> str:
  if version < vocab.RANKED_BY_MIN_VERSION:
    return vocab.VOG
  name = _field(raw, vocab.RANKED_BY, _STR, where)
  known = vocab.AGREEMENT_NAMES
  if name not in known:
    _fail(where, f'has {vocab.RANKED_BY!r} {name!r}; expected one of {", ".join(known)}')
  return name


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def _lines(path: str, what: str) -> Iterator[Tuple[int, Any]]:
  """(line number, parsed JSON) of each non-blank line of a JSON-lines file."""
  gfile = _tf().io.gfile
  if not gfile.exists(path):
    _fail(path, f'does not exist; the report folder has no {what}')
  with gfile.GFile(path, 'rb') as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        yield number, json.loads(line)
      except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        _fail(f'{path} line {number}', f'is not valid JSON ({e})')


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
      _fail(path, 'does not exist; the review page is built from it')
    try:
      records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    except tf.errors.DataLossError as e:
      detail = re.sub(r'\{\{.*?\}\}|\[Op:.*', '', e.message).strip()
      _fail(path, f'is truncated or corrupt ({detail})')
    if len(records) != len(self.flagged):
      _fail(path, f'holds {len(records)} examples but {vocab.FLAGGED_FILE} lists '
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
      _fail(self.uri, f'has no {vocab.QUARANTINE_GLOB} though {vocab.SUMMARY_FILE} counts '
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
    rows = (quarantine_row_from_json(obj, f'{path} line {number}')
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
      _fail(path, f'is not a {what} shard name like {name_of(0, 1)}')
    shards[(int(match.group(2)), int(match.group(1)))] = path
  totals = sorted({total for total, _ in shards})
  if len(totals) > 1:
    _fail(uri, f'mixes {what} shards of different runs (of {totals} shards)')
  if not totals:
    return []
  total = totals[0]
  beyond = [p for (_, i), p in shards.items() if i >= total]
  if beyond:
    _fail(beyond[0], f'numbers a shard beyond its count of {total}')
  missing = [name_of(i, total) for i in range(total) if (total, i) not in shards]
  if missing:
    _fail(uri, f'the {what} shard set is incomplete: lacks {what} shard(s) '
               f'{", ".join(missing)}')
  return [shards[(total, i)] for i in range(total)]


def history_files(uri: str) -> List[str]:
  """The history shards of a report folder in order (format_version 3 and later).

  Refuses (ReportFormatError) a folder without them, or with an incomplete or mixed set.
  """
  shards = _shard_set(uri, vocab.HISTORY_GLOB, _HISTORY_NAME, vocab.history_shard_name, 'history')
  if not shards:
    _fail(uri, f'has no history shards ({vocab.HISTORY_GLOB})')
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
    _fail(path, 'does not exist; is this the difficulty_report output of VarianceOfGradients?',
          'give the difficulty_report folder of an audit')
  with tf.io.gfile.GFile(path, 'rb') as f:
    content = f.read()
  try:
    raw = json.loads(content)
  except ValueError as e:
    _fail(path, f'is not valid JSON ({e})')
  summary = parse_summary(raw, path)
  flagged, rank = [], 0
  flagged_path = os.path.join(uri, vocab.FLAGGED_FILE)
  for number, obj in _lines(flagged_path, 'flagged rows'):
    where = f'{flagged_path} line {number}'
    row = flagged_row_from_json(obj, where)
    if row.rank <= rank:
      _fail(where, f'has rank {row.rank} after rank {rank}; rows must be in rank order, '
                   'one per rank')
    rank = row.rank
    flagged.append(row)
  return LoadedReport(uri, summary, tuple(flagged))
