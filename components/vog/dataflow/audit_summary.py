"""What an audit counts for summary.json, combined inside the Beam pipeline.

The writers turn what they read, score, write and quarantine into small named tallies
(`Tally`), one per work unit (or history shard) for the scored examples (`file_counts`
in a CountsTally), never one per example;
`AuditSummaryFn` combines them into the summary's counts, per class and per decile.
Its accumulator is bounded by splits x classes x deciles, never by the examples.
`check_conservation` refuses a summary in which an example was lost or counted twice.
"""

from typing import (Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import apache_beam as beam
import numpy as np

from components.vog import vocabulary as vocab
from components.vog.compute import flag_kinds
from components.vog.compute import signals as signals_lib
from components.vog.report import report_rows
from components.vog.report import summary_model

WRITTEN = 'written'
WRITTEN_FLAGGED = 'written_flagged'
UNMATCHED = 'unmatched'  # read on the second pass, but neither scored nor quarantined
HISTORY_WRITTEN = 'history_written'  # rows of the history shards
SPLIT_COUNTS = vocab.HEADLINE + (WRITTEN, WRITTEN_FLAGGED, UNMATCHED, HISTORY_WRITTEN)
# Per-example drift counts per split (drift_model.DriftSplit's fields of that name).
DRIFT_COUNTS = ('matched', 'new_examples', 'gone_examples', 'newly_flagged', 'still_flagged',
                'no_longer_flagged', 'flagged_new_data')


class AuditLostExamples(RuntimeError):
  """seen != written + quarantined in a split, or the flagged counts disagree."""


class FileTally(NamedTuple):
  """One input file was read: its records, and the damage that stopped it early."""
  split: str
  path: str
  records: int
  damage: Optional[str]


class CountsTally(NamedTuple):
  """Counts by key (`file_counts` of a unit's examples, or drift's counts), summed."""
  split: str
  counts: Dict[tuple, Any]


class QuarantinedTally(NamedTuple):
  """One example was quarantined, for the reason `kind`."""
  split: str
  kind: str


class ClassStatsTally(NamedTuple):
  """The count, mean and population std of vog_raw in one class of a split."""
  split: str
  class_id: int
  count: int
  mean: float
  std: float


class WrittenTally(NamedTuple):
  """What one unit's writer wrote (beam_writers.FileWritten)."""
  split: str
  written: int
  written_flagged: int
  unmatched: int


class HistoryWrittenTally(NamedTuple):
  """A writer wrote `rows` history rows of the split."""
  split: str
  rows: int


class HistoryRefusedTally(NamedTuple):
  """A baseline history line was refused: where, and why."""
  where: str
  reason: str


class DoneTally(NamedTuple):
  """A file the summary waits for was written: FLAGGED_FILE_DONE or STATUS_FILE_DONE."""
  what: str


FLAGGED_FILE_DONE = 'flagged rows'
STATUS_FILE_DONE = 'drift statuses'
SLICES_FILE_DONE = 'slice statistics'
FLAG_KIND = 'flag_kind'  # the counts key of flagged examples by kind
Tally = Union[FileTally, CountsTally, QuarantinedTally, ClassStatsTally, WrittenTally,
              HistoryWrittenTally, HistoryRefusedTally, DoneTally]


def file_counts(split: str, target_class: np.ndarray, label: np.ndarray,
                predicted: np.ndarray, decile: np.ndarray, flagged: np.ndarray,
                raw_hard: np.ndarray, signals: Mapping[str, np.ndarray]
                ) -> Dict[tuple, Any]:
  """What the scored examples of one input file add to the summary, as counts by key
  (the keys AuditSummaryFn reads), computed on the file's columns at once.

  `label` is -1 where there is none; `raw_hard` 1 where the ranked value is above the
  hard cut among the split's (the drift's per-class hard share); `signals` the
  label-error signals by field name (score_batch.signal_columns), {} without them: their
  per-class sums give the class means.
  """
  counts: Dict[tuple, Any] = {(vocab.SCORED, split): int(len(target_class))}
  flagged = np.asarray(flagged).astype(bool)
  labelled = np.asarray(label) >= 0
  errors = labelled & (np.asarray(predicted) != np.asarray(label))
  decile = np.asarray(decile, dtype=np.int64)
  if not isinstance(signals, Mapping):
    raise TypeError(f'signals is a {type(signals).__name__}; give the columns by field name '
                    '(score_batch.signal_columns)')
  fields = list(signals)
  # One [n, S] float64 table, so that each class sums every signal at once.
  table = (np.stack([np.asarray(signals[f], dtype=np.float64) for f in fields], axis=1)
           if fields else np.zeros((len(target_class), 0)))

  def put(key, n):
    if n:
      counts[key] = n

  put((vocab.FLAGGED, split), int(flagged.sum()))
  for d in range(1, 11):
    at = decile == d
    put(('decile_labelled', split, d), int((at & labelled).sum()))
    put(('decile_errors', split, d), int((at & errors).sum()))
  for c in np.unique(target_class).tolist():
    members = np.asarray(target_class) == c
    for d, n in enumerate(np.bincount(decile[members], minlength=11).tolist()):
      put(('class_decile', split, c, d), n)
    put(('class_hard', split, c), int(np.asarray(raw_hard)[members].sum()))
    put(('class_flagged', split, c), int(flagged[members].sum()))
    put(('class_labelled', split, c), int(labelled[members].sum()))
    put(('class_errors', split, c), int(errors[members].sum()))
    for field, value in zip(fields, table[members].sum(axis=0).tolist()):
      counts[('class_signal', split, c, field)] = value
  return counts


def kind_counts(split: str, kinds: Sequence[str]) -> Dict[tuple, int]:
  """What a unit's flagged examples add to summary.json's `flag_kinds`: how many of
  them are of each kind (flag_kinds.KINDS), as counts by key."""
  counts: Dict[tuple, int] = {}
  for kind, n in flag_kinds.counts(np.asarray(list(kinds), dtype=object)).items():
    if n:
      counts[(FLAG_KIND, split, kind)] = n
  return counts


class _Accumulator:
  __slots__ = ('counts', 'class_stats', 'damaged', 'refused')

  def __init__(self):
    self.counts: Dict[tuple, int] = {}
    self.class_stats: Dict[Tuple[str, int], Tuple[int, float, float]] = {}
    self.damaged: List[summary_model.DamagedFile] = []
    self.refused: List[Tuple[str, str]] = []  # the first few refused history lines

  def bump(self, key: tuple, n: int = 1) -> None:
    self.counts[key] = self.counts.get(key, 0) + n


class AuditSummaryFn(beam.CombineFn):
  """Tallies -> summary.json's counted part (a dict); `base` is merged in as is."""

  def __init__(self, splits: Sequence[str], base: Optional[Dict[str, Any]] = None):
    super().__init__()
    self._splits = list(splits)
    self._base = dict(base or {})

  def create_accumulator(self):
    return _Accumulator()

  def add_input(self, acc: _Accumulator, tally: Tally):
    if isinstance(tally, FileTally):
      acc.bump((vocab.SEEN, tally.split), tally.records)
      if tally.damage:
        acc.damaged.append(summary_model.DamagedFile(tally.split, tally.path, tally.records,
                                                     tally.damage))
    elif isinstance(tally, CountsTally):
      for key, n in tally.counts.items():
        acc.bump(key, n)
    elif isinstance(tally, QuarantinedTally):
      acc.bump((vocab.QUARANTINED, tally.split))
      acc.bump(('quarantine_kind', tally.split, tally.kind))
    elif isinstance(tally, ClassStatsTally):
      acc.class_stats[(tally.split, tally.class_id)] = (tally.count, tally.mean, tally.std)
    elif isinstance(tally, DoneTally):
      pass
    elif isinstance(tally, HistoryWrittenTally):
      acc.bump((HISTORY_WRITTEN, tally.split), tally.rows)
    elif isinstance(tally, HistoryRefusedTally):
      acc.bump(('history_refused',))
      if len(acc.refused) < 3:
        acc.refused.append((tally.where, tally.reason))
    elif isinstance(tally, WrittenTally):
      acc.bump((WRITTEN, tally.split), tally.written)
      acc.bump((WRITTEN_FLAGGED, tally.split), tally.written_flagged)
      acc.bump((UNMATCHED, tally.split), tally.unmatched)
    else:
      raise ValueError(f'unknown audit tally {tally!r}')
    return acc

  def merge_accumulators(self, accumulators: Iterable[_Accumulator]):
    out = _Accumulator()
    for acc in accumulators:
      for key, n in acc.counts.items():
        out.bump(key, n)
      out.class_stats.update(acc.class_stats)
      out.damaged.extend(acc.damaged)
      out.refused.extend(acc.refused[:max(0, 3 - len(out.refused))])
    return out

  def extract_output(self, acc: _Accumulator) -> Dict[str, Any]:
    """summary.json's counted part (summary_model.SummaryCounts) as JSON, `base` merged in."""
    counts = acc.counts
    per_split = {split: {k: counts.get((k, split), 0) for k in SPLIT_COUNTS}
                 for split in self._splits}
    per_class = []
    for (split, cls), (count, mean, std) in sorted(acc.class_stats.items()):
      labelled = counts.get(('class_labelled', split, cls), 0)
      errors = counts.get(('class_errors', split, cls), 0)
      flagged = counts.get(('class_flagged', split, cls), 0)
      per_class.append(report_rows.ClassRow(
          split=split, class_id=cls, count=count, flagged=flagged,
          flagged_share=flagged / count if count else 0.0, vog_raw_mean=mean,
          vog_raw_std=std, error_rate=errors / labelled if labelled else None,
          hard=counts.get(('class_hard', split, cls), 0),
          signal_means={
              field: counts[('class_signal', split, cls, field)] / count
              for field in signals_lib.fields()
              if count and ('class_signal', split, cls, field) in counts} or None,
          decile_counts=tuple(counts.get(('class_decile', split, cls, d), 0)
                              for d in range(1, 11))))
    by_decile = []
    for split in self._splits:
      for decile in range(1, 11):
        labelled = counts.get(('decile_labelled', split, decile), 0)
        if labelled:
          errors = counts.get(('decile_errors', split, decile), 0)
          by_decile.append(report_rows.DecileRow(split, decile, labelled, errors,
                                                 errors / labelled))
    kinds: Dict[str, Dict[str, int]] = {}
    for key, n in sorted(counts.items()):
      if key[0] == 'quarantine_kind':
        kinds.setdefault(key[1], {})[key[2]] = n
    total = {k: sum(s[k] for s in per_split.values()) for k in vocab.HEADLINE}
    drift_counts = {split: {k: counts.get(('drift', split, k), 0) for k in DRIFT_COUNTS}
                    for split in sorted({key[1] for key in counts if key[0] == 'drift'})}
    streaks = {str(key[1]): n for key, n in sorted(counts.items()) if key[0] == 'streak'}
    refused = sorted(acc.refused)
    kinds_of = {split: {kind: counts.get((FLAG_KIND, split, kind), 0)
                        for kind in flag_kinds.KINDS} for split in self._splits}
    counted = summary_model.SummaryCounts(
        counts=total, splits=per_split, quarantine_kinds=kinds, per_class=tuple(per_class),
        error_rate_by_decile=tuple(by_decile),
        damaged_files=tuple(sorted(acc.damaged, key=lambda d: (d.split, d.path))),
        drift_counts=drift_counts, streaks=streaks,
        history_refused=summary_model.HistoryRefused(
            counts.get(('history_refused',), 0), ': '.join(refused[0]) if refused else None),
        flag_kinds=kinds_of)
    return dict(self._base, **counted.to_json())


def check_conservation(summary: Dict[str, Any], flagged_rows: int) -> None:
  """Raises AuditLostExamples unless every example read was written or quarantined.

  Per split: seen = written + quarantined, written = scored, no record went
  unmatched, and every flagged example has one kind; overall: flagged = examples
  written with vog_flagged=1 = `flagged_rows`.
  """
  for split, s in summary['splits'].items():
    if (s[vocab.SEEN] != s[WRITTEN] + s[vocab.QUARANTINED] or s[WRITTEN] != s[vocab.SCORED]
        or s[UNMATCHED] or s[HISTORY_WRITTEN] != s[vocab.SCORED]):
      raise AuditLostExamples(
          f'VoG audit lost examples in split {split!r}: seen {s[vocab.SEEN]}, written '
          f'{s[WRITTEN]}, quarantined {s[vocab.QUARANTINED]}, scored {s[vocab.SCORED]}, '
          f'unmatched on re-read {s[UNMATCHED]}, in the history {s[HISTORY_WRITTEN]}; '
          'nothing was published - check that the '
          'input files did not change during the audit, and report this with the Beam '
          'logs')
  for split, kinds in (summary.get('flag_kinds') or {}).items():
    flagged_in_split = summary['splits'].get(split, {}).get(vocab.FLAGGED, 0)
    if sum(kinds.values()) != flagged_in_split:
      raise AuditLostExamples(
          f'VoG audit flagged {flagged_in_split} examples in split {split!r} but gave '
          f'{sum(kinds.values())} of them a kind ({kinds}); nothing was published - '
          'report this with the Beam logs')
  flagged = summary['counts'][vocab.FLAGGED]
  written_flagged = sum(s[WRITTEN_FLAGGED] for s in summary['splits'].values())
  if not flagged == written_flagged == flagged_rows:
    raise AuditLostExamples(
        f'VoG audit flagged {flagged} examples but wrote {written_flagged} with '
        f'vog_flagged=1 and {flagged_rows} rows for review; nothing was published - '
        'report this with the Beam logs')
