"""summary.json, typed: what the audit writes and what every reader reads.

The audit writes summary.json in three steps, each through a type here: `SummaryHeader`
(what the plan says: settings, checkpoints, model inputs, files) before Beam starts,
`SummaryCounts` (what the pipeline counted: per split, class and decile) inside it, and
`ReportSummary.completed` (the drift and the runner's counters) after it;
`ReportSummary.to_json` writes the file. `parse_summary` reads it back, checking every
value's JSON type (ReportFormatError naming the file and the fix).
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from components.vog import vocabulary as vocab
from components.vog.compute import flag_kinds
from components.vog.compute import slice_stats
from components.vog.report import json_checks as jc
from components.vog.report import report_rows
from components.vog.report.drift_model import Drift
from components.vog.report.drift_model import parse_drift

# summary.json's record of the transform graph the model inputs were made with (its
# folder), null when the model took the raw features.
TRANSFORM_GRAPH = 'transform_graph'
# From format_version 4 every class row holds its signal means, null without signals.
_SIGNAL_MEANS_MIN_VERSION = 4


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  path: str
  epoch: int
  step: int

  def to_json(self) -> Dict[str, Any]:
    return jc.to_json(self)


@dataclasses.dataclass(frozen=True)
class ModelInput:
  name: str
  shape: Tuple[int, ...]
  dtype: str

  def to_json(self) -> Dict[str, Any]:
    return {'name': self.name, 'shape': list(self.shape), 'dtype': self.dtype}


@dataclasses.dataclass(frozen=True)
class SignalsNote:
  """summary.json's `signals`: the label-error signal fields the examples carry, or why
  there are none."""
  fields: Tuple[str, ...]
  left_out: Optional[str]

  def to_json(self) -> Dict[str, Any]:
    return {'fields': list(self.fields), 'left_out': self.left_out}


def signals_note(label_mode: str) -> SignalsNote:
  """The SignalsNote of an audit in `label_mode`."""
  if label_mode == 'label':
    return SignalsNote(tuple(vocab.SIGNAL_FIELDS), None)
  return SignalsNote((), (
      "label_mode='predicted': the signals compare the checkpoints with the label, and "
      "without one the target is the model's own prediction, so they are left out"))


@dataclasses.dataclass(frozen=True)
class DamagedFile:
  """An input file whose reading stopped early: the records read before the damage."""
  split: str
  path: str
  records_read: int
  damage: str

  def to_json(self) -> Dict[str, Any]:
    return jc.to_json(self)


@dataclasses.dataclass(frozen=True)
class HistoryRefused:
  """How many lines of the baseline's history were refused, and the first one's reason."""
  count: int
  first: Optional[str]

  def to_json(self) -> Dict[str, Any]:
    return jc.to_json(self)


# summary.json's keys of what the audit measured and chose (SummaryHeader), how many
# flagged examples are of each kind (SummaryCounts) and the slices (ReportSummary); each
# optional, absent from reports written before them.
AUTO_RANK = 'auto_rank'
MEMORISATION = 'memorisation'
FLAG_KIND_RULE = 'flag_kind_rule'
FLAG_KINDS = 'flag_kinds'
SLICES = 'slices'
# flag_kind_rule's `rule`: the signal flag_kinds reads, or no kind without labels.
KIND_RULES = ('margin_mean', 'el2n', 'no labels')
# How many of each split's slice rows summary.json repeats (`slices.top`).
TOP_SLICES = 5


@dataclasses.dataclass(frozen=True)
class EvidenceCounts:
  """auto_rank.Evidence.as_dict(): how many sampled training labels the last selected
  checkpoint fits."""
  examples: int
  fitted: int
  non_finite: int
  fitted_share: Optional[float]
  memorised: bool

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Memorisation:
  """summary.json's `memorisation`: the sample of training examples the audit scored
  before Beam started, and whether the model memorised their labels (None: no example
  could be scored). Recorded with labels whatever rank_by is; null without them."""
  split: str
  sampled: int  # records read for the sample
  files: int  # files they came from
  evidence: Optional[EvidenceCounts]
  memorised: Optional[bool]
  note: str  # how the sample was drawn, and why it is not of `train` or gave no evidence

  def to_json(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out['evidence'] = None if self.evidence is None else self.evidence.to_json()
    return out


@dataclasses.dataclass(frozen=True)
class AutoRank:
  """summary.json's `auto_rank`: what rank_by='auto' chose with labels, and why
  (auto_rank.choose's reason, with where its evidence came from). Null when rank_by
  named what ranks, and without labels (auto is then VoG)."""
  signal: str
  chosen: str  # the same as `signal`
  rule: str
  memorised: bool
  memorised_fit_share: float
  min_examples: int
  evidence: Optional[EvidenceCounts]
  split: str
  sampled: int
  examples: int
  fitted_share: Optional[float]
  reason: str  # the rule, then how the sample was drawn

  def to_json(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out['evidence'] = None if self.evidence is None else self.evidence.to_json()
    return out


@dataclasses.dataclass(frozen=True)
class FlagKindRule:
  """summary.json's `flag_kind_rule`: how each flagged row got its `kind`
  (compute/flag_kinds.py): by `margin_mean`, by `el2n` once the model memorised its
  labels, or `no labels` (every flag unclear); `memorised` None where it was not
  measured."""
  rule: str
  memorised: Optional[bool]
  reason: str

  def to_json(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def flag_kind_rule(label_mode: str, memorised: Optional[bool]) -> FlagKindRule:
  """The FlagKindRule of an audit in `label_mode` whose model memorised its labels or
  not (None: not measured, taken as not)."""
  if label_mode != 'label':
    return FlagKindRule('no labels', None, flag_kinds.WITHOUT_LABELS_REASON)
  if memorised:
    return FlagKindRule('el2n', True, (
        'the model memorised its training labels, so the margin is positive for the wrong '
        f'labels too: el2n at the earliest checkpoint above '
        f'{flag_kinds.MEMORISED_WRONG_LABEL_ABOVE:g} is a wrong label, anything else '
        'unclear'))
  why = ('the model has not memorised its training labels' if memorised is not None else
         'whether the model memorised its labels could not be measured, so it is taken '
         'as not')
  return FlagKindRule('margin_mean', memorised, (
      f'{why}: margin_mean below {flag_kinds.WRONG_LABEL_BELOW:g} is a wrong label, above '
      f'{flag_kinds.ATYPICAL_ABOVE:g} atypical, in between unclear'))


@dataclasses.dataclass(frozen=True)
class SlicesNote:
  """summary.json's `slices`: the file that holds every split's slices (slices.json),
  and the first TOP_SLICES rows of each split, as that file holds them."""
  file: str
  top: Dict[str, Tuple[Dict[str, Any], ...]]

  def to_json(self) -> Dict[str, Any]:
    return {'file': self.file, 'top': {split: [dict(r) for r in rows]
                                       for split, rows in self.top.items()}}


def slices_note(content: Mapping[str, Any], file: str,
                where: str = vocab.SLICES_FILE) -> SlicesNote:
  """The SlicesNote of slices.json's content (as read by report_format.read_slices),
  every row checked (`slice_row`); ReportFormatError naming `where` and the row."""
  jc.check(content, jc.OBJ, where, 'the content')
  splits = jc.field(content, 'splits', jc.OBJ, where)
  top = {}
  for split, entry in splits.items():
    jc.check(entry, jc.OBJ, where, f'splits[{split!r}]')
    rows = jc.field(entry, 'rows', jc.LIST, f'{where}, splits[{split!r}]')
    checked = [slice_row(r, f'{where}, splits[{split!r}].rows[{i}]')
               for i, r in enumerate(rows)]
    top[split] = tuple(checked[:TOP_SLICES])
  return SlicesNote(file, top)


_SLICE_ROW_INTS = ('count', 'flagged', 'hard', 'rank')
_SLICE_ROW_SHARES = ('share_in_split', 'share_flagged', 'share_hard', 'p_value',
                     'p_adjusted')


def slice_row(obj: Any, where: str) -> Dict[str, Any]:
  """One row of slices.json (compute/slice_stats.slice_rows), checked: its types, its
  kind and group, counts >= 0, shares and p-values in [0, 1], a positive lift."""
  jc.check(obj, jc.OBJ, where, 'a slice row')
  for key in ('feature', 'value'):
    jc.field(obj, key, jc.STR, where)
  kind = jc.field(obj, 'kind', jc.STR, where)
  if kind not in slice_stats.KINDS:
    jc.fail(where, f"has 'kind' {kind!r}; expected one of {', '.join(slice_stats.KINDS)}")
  group = jc.field(obj, 'group', jc.STR, where)
  if group not in slice_stats.GROUPS:
    jc.fail(where, f"has 'group' {group!r}; expected one of {', '.join(slice_stats.GROUPS)}")
  for key in _SLICE_ROW_INTS:
    if jc.field(obj, key, jc.INT, where) < 0:
      jc.fail(where, f'has {key!r} {obj[key]}; expected a count >= 0')
  for key in _SLICE_ROW_SHARES:
    if not 0.0 <= jc.field(obj, key, jc.NUM, where) <= 1.0:
      jc.fail(where, f'has {key!r} {obj[key]!r}; expected a number from 0 to 1')
  lift = jc.field(obj, 'lift', jc.NUM, where)
  if not lift > 0 or lift == float('inf'):
    jc.fail(where, f"has 'lift' {lift!r}; expected a finite number above 0")
  jc.field(obj, 'approximate', jc.BOOL, where)
  bounds = obj.get('range')
  if bounds is not None:
    if not isinstance(bounds, list) or len(bounds) != 2:
      jc.fail(where, f"has 'range' {jc.describe(bounds)}; expected [low, high]")
    for bound in bounds:
      if bound is not None:
        jc.check(bound, jc.NUM, where, 'a range bound')
  classes = obj.get('classes')
  if classes is not None:
    if not isinstance(classes, list) or len(classes) != 2:
      jc.fail(where, f"has 'classes' {jc.describe(classes)}; expected [label, predicted]")
    for c in classes:
      jc.check(c, jc.INT, where, 'a class of a label pair')
  return dict(obj)


@dataclasses.dataclass(frozen=True)
class SummaryHeader:
  """What summary.json says of the plan, known before any example is scored. Fields are
  None where a summary of an older release lacks them."""
  created_at: Optional[str]
  settings: Dict[str, Any]  # VogSettings.to_json(), `splits` the splits scored
  ranked_by: str
  checkpoints: Tuple[Checkpoint, ...]
  num_classes: Optional[int]
  model_inputs: Optional[Tuple[ModelInput, ...]]
  input_files: Optional[Dict[str, int]]  # split -> how many input files
  # The splits scored_examples holds in full; every split has its score table.
  copied_splits: Optional[Tuple[str, ...]]
  baseline: Optional[Dict[str, Any]]  # the baseline's info; None without one
  # The TransformGraph folder the model inputs were made with; None: raw features.
  transform_graph: Optional[str]
  signals: Optional[SignalsNote]
  format_version: int = vocab.FORMAT_VERSION
  # What rank_by='auto' chose and why; None when rank_by named it, or without labels.
  auto_rank: Optional[AutoRank] = None
  # The sample that says whether the model memorised its labels; None without labels.
  memorisation: Optional[Memorisation] = None
  # How each flagged row got its kind; None in a summary written before kinds.
  flag_kind_rule: Optional[FlagKindRule] = None

  def to_json(self) -> Dict[str, Any]:
    out = {
        'format_version': self.format_version,
        'created_at': self.created_at,
        vocab.SETTINGS: self.settings,
        vocab.RANKED_BY: self.ranked_by,
        vocab.CHECKPOINTS: [c.to_json() for c in self.checkpoints],
        'num_classes': self.num_classes,
        'model_inputs': (None if self.model_inputs is None
                         else [i.to_json() for i in self.model_inputs]),
        'input_files': self.input_files,
        'copied_splits': None if self.copied_splits is None else list(self.copied_splits),
        'baseline': self.baseline,
        TRANSFORM_GRAPH: self.transform_graph,
        'signals': None if self.signals is None else self.signals.to_json(),
        AUTO_RANK: None if self.auto_rank is None else self.auto_rank.to_json(),
        MEMORISATION: None if self.memorisation is None else self.memorisation.to_json(),
    }
    if self.flag_kind_rule is not None:
      out[FLAG_KIND_RULE] = self.flag_kind_rule.to_json()
    return out


@dataclasses.dataclass(frozen=True)
class SummaryCounts:
  """What the pipeline counted for summary.json (dataflow/audit_summary.py combines it).
  Fields other than the counts are empty where a summary of an older release lacks them."""
  counts: Dict[str, int]  # every vocab.HEADLINE key
  # split -> every vocab.HEADLINE key, and the counts that show no example was lost
  # (audit_summary.SPLIT_COUNTS) where the summary has them.
  splits: Dict[str, Dict[str, int]]
  quarantine_kinds: Dict[str, Dict[str, int]]  # split -> kind -> count
  per_class: Tuple[report_rows.ClassRow, ...]
  error_rate_by_decile: Tuple[report_rows.DecileRow, ...]
  damaged_files: Tuple[DamagedFile, ...] = ()
  # split -> the per-example drift counts (drift_model.DriftSplit's fields of the name).
  drift_counts: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
  # streak length (as text) -> examples flagged that many audits in a row.
  streaks: Dict[str, int] = dataclasses.field(default_factory=dict)
  history_refused: HistoryRefused = HistoryRefused(0, None)
  format_version: int = vocab.FORMAT_VERSION
  # split -> flag_kinds.KINDS -> how many of its flagged examples are of that kind;
  # None in a summary written before kinds.
  flag_kinds: Optional[Dict[str, Dict[str, int]]] = None

  def to_json(self) -> Dict[str, Any]:
    out = {
        vocab.COUNTS: dict(self.counts),
        'splits': {name: dict(c) for name, c in self.splits.items()},
        'quarantine_kinds': {split: dict(k) for split, k in self.quarantine_kinds.items()},
        'per_class': [self._class_row(r) for r in self.per_class],
        'error_rate_by_decile': [jc.to_json(r) for r in self.error_rate_by_decile],
        'damaged_files': [d.to_json() for d in self.damaged_files],
        'drift_counts': {split: dict(c) for split, c in self.drift_counts.items()},
        'streaks': dict(self.streaks),
        'history_refused': self.history_refused.to_json(),
    }
    if self.flag_kinds is not None:
      out[FLAG_KINDS] = {split: dict(k) for split, k in self.flag_kinds.items()}
    return out

  def _class_row(self, row: report_rows.ClassRow) -> Dict[str, Any]:
    out = row.to_json()
    if self.format_version >= _SIGNAL_MEANS_MIN_VERSION:
      out.setdefault('signal_means', None)
    return out


@dataclasses.dataclass(frozen=True)
class ReportSummary:
  """summary.json, typed. Keys this class does not name are in `raw` (the parsed file)."""
  format_version: int
  created_at: Optional[str]
  counts: Dict[str, int]  # every vocab.HEADLINE key
  splits: Dict[str, Dict[str, int]]  # split -> every vocab.HEADLINE key
  per_class: Tuple[report_rows.ClassRow, ...]
  error_rate_by_decile: Tuple[report_rows.DecileRow, ...]
  quarantine_kinds: Dict[str, Dict[str, int]]  # split -> kind -> count
  settings: Dict[str, Any]
  checkpoints: Tuple[Checkpoint, ...]
  num_classes: Optional[int]  # None (and model_inputs None) in summaries that lack them
  model_inputs: Optional[Tuple[ModelInput, ...]]
  baseline: Optional[Dict[str, Any]]
  drift: Optional[Drift]  # None without a baseline
  raw: Dict[str, Any]
  ranked_by: str = vocab.VOG  # what ranked the examples (vocab.RANKED_BY; `vog` before version 4)
  # What the header and the counts hold besides (SummaryHeader, SummaryCounts); None or
  # empty where a summary of an older release lacks them.
  input_files: Optional[Dict[str, int]] = None
  copied_splits: Optional[Tuple[str, ...]] = None
  transform_graph: Optional[str] = None
  signals: Optional[SignalsNote] = None
  # split -> the counts beyond vocab.HEADLINE (audit_summary.SPLIT_COUNTS).
  split_tallies: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
  damaged_files: Tuple[DamagedFile, ...] = ()
  drift_counts: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
  streaks: Dict[str, int] = dataclasses.field(default_factory=dict)
  history_refused: HistoryRefused = HistoryRefused(0, None)
  # The audit's Beam counters as the runner had them ({} where it has no metrics API);
  # None in a summary that lacks them.
  beam_counters: Optional[Dict[str, int]] = None
  # SummaryHeader's and SummaryCounts' fields of the name; None where a summary of an
  # older release lacks them.
  auto_rank: Optional[AutoRank] = None
  memorisation: Optional[Memorisation] = None
  flag_kind_rule: Optional[FlagKindRule] = None
  flag_kinds: Optional[Dict[str, Dict[str, int]]] = None
  # Where the slices are and each split's first rows; None when none were computed.
  slices: Optional[SlicesNote] = None

  def header(self) -> SummaryHeader:
    return SummaryHeader(
        created_at=self.created_at, settings=self.settings, ranked_by=self.ranked_by,
        checkpoints=self.checkpoints, num_classes=self.num_classes,
        model_inputs=self.model_inputs, input_files=self.input_files,
        copied_splits=self.copied_splits, baseline=self.baseline,
        transform_graph=self.transform_graph, signals=self.signals,
        format_version=self.format_version, auto_rank=self.auto_rank,
        memorisation=self.memorisation, flag_kind_rule=self.flag_kind_rule)

  def counted(self) -> SummaryCounts:
    return SummaryCounts(
        counts=self.counts,
        splits={name: dict(c, **self.split_tallies.get(name, {}))
                for name, c in self.splits.items()},
        quarantine_kinds=self.quarantine_kinds, per_class=self.per_class,
        error_rate_by_decile=self.error_rate_by_decile, damaged_files=self.damaged_files,
        drift_counts=self.drift_counts, streaks=self.streaks,
        history_refused=self.history_refused, format_version=self.format_version,
        flag_kinds=self.flag_kinds)

  def completed(self, drift: Optional[Drift],
                beam_counters: Mapping[str, int]) -> 'ReportSummary':
    """This summary with what is known once Beam has finished: the drift (None without
    a baseline) and the runner's counters."""
    return dataclasses.replace(self, drift=drift, beam_counters=dict(beam_counters))

  def with_slices(self, slices: Optional[SlicesNote]) -> 'ReportSummary':
    """This summary with the slices the audit computed (None: none)."""
    return dataclasses.replace(self, slices=slices)

  def to_json(self) -> Dict[str, Any]:
    """summary.json's content, as this release writes it; keys of `raw` that no type here
    names are kept."""
    out = {k: v for k, v in self.raw.items() if k not in _NAMED_KEYS}
    out.update(self.header().to_json())
    out.update(self.counted().to_json())
    out['beam_counters'] = None if self.beam_counters is None else dict(self.beam_counters)
    out['drift'] = None if self.drift is None else self.drift.to_json()
    if self.slices is not None:
      out[SLICES] = self.slices.to_json()
    return out


_NAMED_KEYS = frozenset(
    ('format_version', 'created_at', vocab.SETTINGS, vocab.RANKED_BY, vocab.CHECKPOINTS,
     'num_classes', 'model_inputs', 'input_files', 'copied_splits', 'baseline',
     TRANSFORM_GRAPH, 'signals', vocab.COUNTS, 'splits', 'quarantine_kinds', 'per_class',
     'error_rate_by_decile', 'damaged_files', 'drift_counts', 'streaks', 'history_refused',
     'beam_counters', 'drift', AUTO_RANK, MEMORISATION, FLAG_KIND_RULE, FLAG_KINDS, SLICES))


def _counts(obj: Any, where: str, what: str) -> Dict[str, int]:
  """{vocab.HEADLINE key: count} of `obj`, which must hold every vocab.HEADLINE key."""
  jc.check(obj, jc.OBJ, where, what)
  return {k: jc.field(obj, k, jc.INT, f'{where}, {what}') for k in vocab.HEADLINE}


def _tallies(obj: Mapping[str, Any], where: str, what: str) -> Dict[str, int]:
  """The counts of a split beyond vocab.HEADLINE."""
  return {k: jc.check(n, jc.INT, where, f'{what}[{k!r}]') for k, n in obj.items()
          if k not in vocab.HEADLINE}


def _model_inputs(values: Any, where: str) -> Tuple[ModelInput, ...]:
  inputs = []
  for i, v in enumerate(jc.check(values, jc.LIST, where, "'model_inputs'")):
    at = f'{where}, model_inputs[{i}]'
    jc.check(v, jc.OBJ, where, f'model_inputs[{i}]')
    shape = tuple(jc.check(d, jc.INT, at, 'a shape entry')
                  for d in jc.field(v, 'shape', jc.LIST, at))
    inputs.append(ModelInput(jc.field(v, 'name', jc.STR, at), shape,
                             jc.field(v, 'dtype', jc.STR, at)))
  return tuple(inputs)


def _names(values: Any, where: str, what: str) -> Tuple[str, ...]:
  return tuple(jc.check(v, jc.STR, where, f'{what}[{i}]')
               for i, v in enumerate(jc.check(values, jc.LIST, where, repr(what))))


def _signals(raw: Any, where: str) -> SignalsNote:
  jc.check(raw, jc.OBJ, where, "'signals'")
  return SignalsNote(_names(jc.field(raw, 'fields', jc.LIST, f'{where}, signals'), where,
                            'signals.fields'),
                     jc.field(raw, 'left_out', jc.STR, f'{where}, signals', optional=True))


def _history_refused(raw: Any, where: str) -> HistoryRefused:
  jc.check(raw, jc.OBJ, where, "'history_refused'")
  at = f'{where}, history_refused'
  return HistoryRefused(jc.field(raw, 'count', jc.INT, at),
                        jc.field(raw, 'first', jc.STR, at, optional=True))


def parse_summary(raw: Any, where: str = vocab.SUMMARY_FILE) -> ReportSummary:
  """The ReportSummary of summary.json's parsed content.

  Refuses (ReportFormatError naming `where`) a summary that is not an object, a
  format_version this release cannot read, missing required keys, or values of the
  wrong type (e.g. a count that is a string).
  """
  if not isinstance(raw, dict):
    jc.fail(where, f'is {jc.describe(raw)}; expected an object')
  version = jc.field(raw, 'format_version', jc.INT, where)
  if version not in vocab.READABLE_VERSIONS:
    jc.fail(where, f'has format_version {version}; this release reads '
                   f'{vocab.READABLE_VERSIONS}',
            'upgrade vog-audit to read it, or re-run the audit with this release')
  splits = jc.field(raw, 'splits', jc.OBJ, where)
  inputs = raw.get('model_inputs')

  def optional(key, read):
    return None if raw.get(key) is None else read(raw[key])

  return ReportSummary(
      format_version=version,
      created_at=jc.field(raw, 'created_at', jc.STR, where, optional=True),
      counts=_counts(jc.field(raw, vocab.COUNTS, jc.OBJ, where), where, vocab.COUNTS),
      splits={name: _counts(v, where, f'splits[{name!r}]') for name, v in splits.items()},
      per_class=tuple(report_rows.class_row_from_json(v, f'{where}, per_class[{i}]')
                      for i, v in enumerate(jc.check(raw.get('per_class') or [], jc.LIST,
                                                     where, "'per_class'"))),
      error_rate_by_decile=jc.rows(raw.get('error_rate_by_decile') or [],
                                   'error_rate_by_decile', report_rows.DecileRow, where),
      quarantine_kinds=jc.int_maps(raw.get('quarantine_kinds') or {}, where,
                                   'quarantine_kinds'),
      settings=jc.field(raw, vocab.SETTINGS, jc.OBJ, where),
      checkpoints=jc.rows(jc.field(raw, vocab.CHECKPOINTS, jc.LIST, where), vocab.CHECKPOINTS,
                          Checkpoint, where),
      num_classes=jc.field(raw, 'num_classes', jc.INT, where, optional=True),
      model_inputs=None if inputs is None else _model_inputs(inputs, where),
      baseline=jc.field(raw, 'baseline', jc.OBJ, where, optional=True),
      drift=None if raw.get('drift') is None else parse_drift(raw['drift'], where),
      raw=raw, ranked_by=_ranked_by(raw, version, where),
      input_files=optional('input_files', lambda v: jc.int_map(v, where, 'input_files')),
      copied_splits=optional('copied_splits', lambda v: _names(v, where, 'copied_splits')),
      transform_graph=jc.field(raw, TRANSFORM_GRAPH, jc.STR, where, optional=True),
      signals=optional('signals', lambda v: _signals(v, where)),
      split_tallies={name: _tallies(v, where, f'splits[{name!r}]')
                     for name, v in splits.items()},
      damaged_files=jc.rows(raw.get('damaged_files') or [], 'damaged_files', DamagedFile,
                            where),
      drift_counts=jc.int_maps(raw.get('drift_counts') or {}, where, 'drift_counts'),
      streaks=jc.int_map(raw.get('streaks') or {}, where, 'streaks'),
      history_refused=(optional('history_refused', lambda v: _history_refused(v, where))
                       or HistoryRefused(0, None)),
      beam_counters=optional('beam_counters',
                             lambda v: jc.int_map(v, where, 'beam_counters')),
      auto_rank=optional(AUTO_RANK, lambda v: parse_auto_rank(v, where)),
      memorisation=optional(MEMORISATION, lambda v: parse_memorisation(v, where)),
      flag_kind_rule=optional(FLAG_KIND_RULE, lambda v: _flag_kind_rule(v, where)),
      flag_kinds=optional(FLAG_KINDS, lambda v: _flag_kinds(v, where)),
      slices=optional(SLICES, lambda v: _slices(v, where)))


def _evidence(raw: Any, where: str) -> EvidenceCounts:
  jc.check(raw, jc.OBJ, where, 'the evidence')
  counts = {k: jc.field(raw, k, jc.INT, where) for k in ('examples', 'fitted', 'non_finite')}
  if min(counts.values()) < 0 or counts['fitted'] > counts['examples']:
    jc.fail(where, f'has evidence counts {counts}; expected counts >= 0 and no more '
                   'fitted than examples')
  share = jc.field(raw, 'fitted_share', jc.NUM, where, optional=True)
  if share is not None and not 0.0 <= share <= 1.0:
    jc.fail(where, f"has 'fitted_share' {share!r}; expected a number from 0 to 1")
  return EvidenceCounts(fitted_share=share,
                        memorised=jc.field(raw, 'memorised', jc.BOOL, where), **counts)


def _optional_bool(raw: Mapping[str, Any], key: str, where: str) -> Optional[bool]:
  return jc.field(raw, key, jc.BOOL, where, optional=True)


def parse_auto_rank(raw: Any, where: str) -> AutoRank:
  """The AutoRank of summary.json's `auto_rank` (or of MemorisationSample.auto_rank's
  reason), checked."""
  jc.check(raw, jc.OBJ, where, repr(AUTO_RANK))
  at = f'{where}, {AUTO_RANK}'
  signal = jc.field(raw, 'signal', jc.STR, at)
  chosen = jc.field(raw, 'chosen', jc.STR, at)
  known = vocab.SIGNAL_NAMES
  if signal not in known or chosen != signal:
    jc.fail(at, f"has 'signal' {signal!r} and 'chosen' {chosen!r}; expected the same "
                f'signal, one of {", ".join(known)}')
  share = jc.field(raw, 'fitted_share', jc.NUM, at, optional=True)
  if share is not None and not 0.0 <= share <= 1.0:
    jc.fail(at, f"has 'fitted_share' {share!r}; expected a number from 0 to 1")
  evidence = raw.get('evidence')
  return AutoRank(
      signal=signal, chosen=chosen, rule=jc.field(raw, 'rule', jc.STR, at),
      memorised=jc.field(raw, 'memorised', jc.BOOL, at),
      memorised_fit_share=jc.field(raw, 'memorised_fit_share', jc.NUM, at),
      min_examples=jc.field(raw, 'min_examples', jc.INT, at),
      evidence=None if evidence is None else _evidence(evidence, f'{at}.evidence'),
      split=jc.field(raw, 'split', jc.STR, at), sampled=_count(raw, 'sampled', at),
      examples=_count(raw, 'examples', at), fitted_share=share,
      reason=jc.field(raw, 'reason', jc.STR, at))


def _count(raw: Mapping[str, Any], key: str, where: str) -> int:
  value = jc.field(raw, key, jc.INT, where)
  if value < 0:
    jc.fail(where, f'has {key!r} {value}; expected a count >= 0')
  return value


def parse_memorisation(raw: Any, where: str) -> Memorisation:
  """The Memorisation of summary.json's `memorisation`, checked."""
  jc.check(raw, jc.OBJ, where, repr(MEMORISATION))
  at = f'{where}, {MEMORISATION}'
  evidence = raw.get('evidence')
  return Memorisation(
      split=jc.field(raw, 'split', jc.STR, at), sampled=_count(raw, 'sampled', at),
      files=_count(raw, 'files', at),
      evidence=None if evidence is None else _evidence(evidence, f'{at}.evidence'),
      memorised=_optional_bool(raw, 'memorised', at), note=jc.field(raw, 'note', jc.STR, at))


def _flag_kind_rule(raw: Any, where: str) -> FlagKindRule:
  jc.check(raw, jc.OBJ, where, repr(FLAG_KIND_RULE))
  at = f'{where}, {FLAG_KIND_RULE}'
  rule = jc.field(raw, 'rule', jc.STR, at)
  if rule not in KIND_RULES:
    jc.fail(at, f"has 'rule' {rule!r}; expected one of {', '.join(KIND_RULES)}")
  return FlagKindRule(rule, _optional_bool(raw, 'memorised', at),
                      jc.field(raw, 'reason', jc.STR, at))


def _flag_kinds(raw: Any, where: str) -> Dict[str, Dict[str, int]]:
  found = jc.int_maps(raw, where, FLAG_KINDS)
  for split, kinds in found.items():
    if set(kinds) != set(flag_kinds.KINDS) or min(kinds.values()) < 0:
      jc.fail(where, f'has {FLAG_KINDS}[{split!r}] {kinds}; expected a count >= 0 for '
                     f'each of {", ".join(flag_kinds.KINDS)}')
  return found


def _slices(raw: Any, where: str) -> SlicesNote:
  jc.check(raw, jc.OBJ, where, repr(SLICES))
  at = f'{where}, {SLICES}'
  top = jc.field(raw, 'top', jc.OBJ, at)
  rows = {}
  for split, values in top.items():
    jc.check(values, jc.LIST, at, f'top[{split!r}]')
    if len(values) > TOP_SLICES:
      jc.fail(at, f'has {len(values)} rows in top[{split!r}]; expected at most {TOP_SLICES}')
    rows[split] = tuple(slice_row(r, f'{at}.top[{split!r}][{i}]')
                        for i, r in enumerate(values))
  file = jc.field(raw, 'file', jc.STR, at)
  if file != vocab.SLICES_FILE:
    jc.fail(at, f"has 'file' {file[:60]!r}; expected {vocab.SLICES_FILE!r}, the file in the "
                'report folder')
  return SlicesNote(file, rows)


def _ranked_by(raw: Mapping[str, Any], version: int, where: str) -> str:
  if version < vocab.RANKED_BY_MIN_VERSION:
    return vocab.VOG
  name = jc.field(raw, vocab.RANKED_BY, jc.STR, where)
  known = vocab.AGREEMENT_NAMES
  if name not in known:
    jc.fail(where, f'has {vocab.RANKED_BY!r} {name!r}; expected one of {", ".join(known)}')
  return name

