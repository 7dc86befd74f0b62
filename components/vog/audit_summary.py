"""What an audit counts for summary.json, combined inside the Beam pipeline.

The writers turn what they read, score, write and quarantine into small tally tuples;
`AuditSummaryFn` combines them into the summary's counts, per class and per decile.
Its accumulator is bounded by splits x classes x deciles, never by the examples.
`check_conservation` refuses a summary in which an example was lost or counted twice.
"""

from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam

from components.vog import report_format as fmt

Tally = Tuple  # ('kind', split, ...) as built by the functions below

WRITTEN = 'written'
WRITTEN_FLAGGED = 'written_flagged'
UNMATCHED = 'unmatched'  # read on the second pass, but neither scored nor quarantined
HISTORY_WRITTEN = 'history_written'  # rows of the history shards
SPLIT_COUNTS = fmt.HEADLINE + (WRITTEN, WRITTEN_FLAGGED, UNMATCHED, HISTORY_WRITTEN)
# Per-example drift counts per split (report_format.DriftSplit's fields of that name).
DRIFT_COUNTS = ('matched', 'new_examples', 'gone_examples', 'newly_flagged', 'still_flagged',
                'no_longer_flagged', 'flagged_new_data')


class AuditLostExamples(RuntimeError):
  """seen != written + quarantined in a split, or the flagged counts disagree."""


def file_tally(split: str, path: str, records: int, damage: Optional[str]) -> Tally:
  return ('file', split, path, records, damage)


def scored_tally(split: str, target_class: int, label: Optional[int], predicted: int,
                 decile: int, flagged: int, raw_hard: int,
                 signals: Sequence[float] = ()) -> Tally:
  """One scored example; `raw_hard` and `signals` as in ScoredExample."""
  return ('scored', split, target_class, -1 if label is None else label, predicted, decile,
          flagged, int(raw_hard), tuple(signals))


def drift_tally(split: str, what: str) -> Tally:
  """One example counted under `what` (one of DRIFT_COUNTS) in `split`."""
  return ('drift', split, what)


def streak_tally(split: str, streak: int) -> Tally:
  """A flagged example flagged by `streak` (>= 2) audits in a row."""
  return ('streak', split, streak)


def history_written_tally(split: str, rows: int) -> Tally:
  return ('history_written', split, rows)


def history_refused_tally(where: str, reason: str) -> Tally:
  return ('history_refused', '', where, reason)


def flag_status_file_tally() -> Tally:
  """The flagged examples' drift statuses were written (the summary waits for them)."""
  return ('flag_status_file', '')


def quarantined_tally(split: str, kind: str) -> Tally:
  return ('quarantined', split, kind)


def class_stats_tally(split: str, cls: int, stats: Tuple[int, float, float]) -> Tally:
  return ('class_stats', split, cls) + tuple(stats)


def flagged_file_tally() -> Tally:
  """The flagged rows' file was written (it makes the summary wait for it)."""
  return ('flagged_file', '')


def written_tally(split: str, written: int, written_flagged: int, unmatched: int) -> Tally:
  return ('written', split, written, written_flagged, unmatched)


class _Accumulator:
  __slots__ = ('counts', 'class_stats', 'damaged', 'refused')

  def __init__(self):
    self.counts: Dict[tuple, int] = {}
    self.class_stats: Dict[Tuple[str, int], Tuple[int, float, float]] = {}
    self.damaged: List[Dict[str, Any]] = []
    self.refused: List[Tuple[str, str]] = []  # the first few refused history lines

  def bump(self, key: tuple, n: int = 1) -> None:
    self.counts[key] = self.counts.get(key, 0) + n


class AuditSummaryFn(beam.CombineFn):
  """Tally tuples -> summary.json's counted part (a dict); `base` is merged in as is."""

  def __init__(self, splits: Sequence[str], base: Optional[Dict[str, Any]] = None):
    super().__init__()
    self._splits = list(splits)
    self._base = dict(base or {})

  def create_accumulator(self):
    return _Accumulator()

  def add_input(self, acc: _Accumulator, tally: Tally):
    kind, split = tally[0], tally[1]
    if kind == 'file':
      _, _, path, records, damage = tally
      acc.bump((fmt.SEEN, split), records)
      if damage:
        acc.damaged.append({'split': split, 'path': path, 'records_read': records,
                            'damage': damage})
    elif kind == 'scored':
      _, _, cls, label, predicted, decile, flagged, hard, values = tally
      acc.bump((fmt.SCORED, split))
      for j, value in enumerate(values):
        acc.bump(('class_signal', split, cls, j), value)
      acc.bump(('class_decile', split, cls, decile))
      if hard:
        acc.bump(('class_hard', split, cls))
      if flagged:
        acc.bump((fmt.FLAGGED, split))
        acc.bump(('class_flagged', split, cls))
      if label >= 0:
        acc.bump(('class_labelled', split, cls))
        acc.bump(('decile_labelled', split, decile))
        if predicted != label:
          acc.bump(('class_errors', split, cls))
          acc.bump(('decile_errors', split, decile))
    elif kind == 'quarantined':
      acc.bump((fmt.QUARANTINED, split))
      acc.bump(('quarantine_kind', split, tally[2]))
    elif kind == 'class_stats':
      acc.class_stats[(split, tally[2])] = tuple(tally[3:6])
    elif kind in ('flagged_file', 'flag_status_file'):
      pass
    elif kind == 'drift':
      acc.bump(('drift', split, tally[2]))
    elif kind == 'streak':
      acc.bump(('streak', tally[2]))
    elif kind == 'history_written':
      acc.bump((HISTORY_WRITTEN, split), tally[2])
    elif kind == 'history_refused':
      acc.bump(('history_refused',))
      if len(acc.refused) < 3:
        acc.refused.append((tally[2], tally[3]))
    elif kind == 'written':
      _, _, written, written_flagged, unmatched = tally
      acc.bump((WRITTEN, split), written)
      acc.bump((WRITTEN_FLAGGED, split), written_flagged)
      acc.bump((UNMATCHED, split), unmatched)
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
    counts = acc.counts
    per_split = {split: {k: counts.get((k, split), 0) for k in SPLIT_COUNTS}
                 for split in self._splits}
    per_class = []
    for (split, cls), (count, mean, std) in sorted(acc.class_stats.items()):
      labelled = counts.get(('class_labelled', split, cls), 0)
      errors = counts.get(('class_errors', split, cls), 0)
      flagged = counts.get(('class_flagged', split, cls), 0)
      per_class.append({
          'split': split, 'class': cls, 'count': count, 'flagged': flagged,
          'flagged_share': flagged / count if count else 0.0, 'vog_raw_mean': mean,
          'vog_raw_std': std, 'error_rate': errors / labelled if labelled else None,
          'hard': counts.get(('class_hard', split, cls), 0),
          'signal_means': {
              name: counts[('class_signal', split, cls, j)] / count
              for j, name in enumerate(fmt.SIGNAL_FIELDS)
              if count and ('class_signal', split, cls, j) in counts} or None,
          'decile_counts': [counts.get(('class_decile', split, cls, d), 0)
                            for d in range(1, 11)]})
    by_decile = []
    for split in self._splits:
      for decile in range(1, 11):
        labelled = counts.get(('decile_labelled', split, decile), 0)
        if labelled:
          errors = counts.get(('decile_errors', split, decile), 0)
          by_decile.append({'split': split, 'decile': decile, 'count': labelled,
                            'errors': errors, 'error_rate': errors / labelled})
    kinds: Dict[str, Dict[str, int]] = {}
    for key, n in sorted(counts.items()):
      if key[0] == 'quarantine_kind':
        kinds.setdefault(key[1], {})[key[2]] = n
    total = {k: sum(s[k] for s in per_split.values()) for k in fmt.HEADLINE}
    drift_counts = {split: {k: counts.get(('drift', split, k), 0) for k in DRIFT_COUNTS}
                    for split in sorted({key[1] for key in counts if key[0] == 'drift'})}
    streaks = {str(key[1]): n for key, n in sorted(counts.items()) if key[0] == 'streak'}
    refused = sorted(acc.refused)
    return dict(self._base, counts=total, splits=per_split, quarantine_kinds=kinds,
                per_class=per_class, error_rate_by_decile=by_decile,
                damaged_files=sorted(acc.damaged, key=lambda d: (d['split'], d['path'])),
                drift_counts=drift_counts, streaks=streaks,
                history_refused={'count': counts.get(('history_refused',), 0),
                                 'first': ': '.join(refused[0]) if refused else None})


def check_conservation(summary: Dict[str, Any], flagged_rows: int) -> None:
  """Raises AuditLostExamples unless every example read was written or quarantined.

  Per split: seen = written + quarantined, written = scored, and no record went
  unmatched; overall: flagged = examples written with vog_flagged=1 = `flagged_rows`.
  """
  for split, s in summary['splits'].items():
    if (s[fmt.SEEN] != s[WRITTEN] + s[fmt.QUARANTINED] or s[WRITTEN] != s[fmt.SCORED]
        or s[UNMATCHED] or s[HISTORY_WRITTEN] != s[fmt.SCORED]):
      raise AuditLostExamples(
          f'VoG audit lost examples in split {split!r}: seen {s[fmt.SEEN]}, written '
          f'{s[WRITTEN]}, quarantined {s[fmt.QUARANTINED]}, scored {s[fmt.SCORED]}, '
          f'unmatched on re-read {s[UNMATCHED]}, in the history {s[HISTORY_WRITTEN]}; '
          'nothing was published - check that the '
          'input files did not change during the audit, and report this with the Beam '
          'logs')
  flagged = summary['counts'][fmt.FLAGGED]
  written_flagged = sum(s[WRITTEN_FLAGGED] for s in summary['splits'].values())
  if not flagged == written_flagged == flagged_rows:
    raise AuditLostExamples(
        f'VoG audit flagged {flagged} examples but wrote {written_flagged} with '
        f'vog_flagged=1 and {flagged_rows} rows for review; nothing was published - '
        'report this with the Beam logs')
