"""What an audit counts for its summary: written by Beam, read back by the driver.

Every scored or quarantined example adds keys such as ('scored', split),
('class_errors', split, class) or ('quarantine_kind', split, kind); Beam counts each
key once globally and writes one JSON line per key, beside the class statistics.
"""

import json
from typing import Any, Dict, Iterable, Mapping, Sequence, Tuple

import apache_beam as beam

from components.vog import examples_io

TALLIES_FILE = 'tallies.jsonl'
HEADLINE = ('seen', 'scored', 'quarantined', 'flagged')


def _tally_keys(s) -> Iterable[Tuple]:
  """Keys one scored example adds (s is a beam_audit.ScoredExample)."""
  yield ('scored', s.split)
  yield ('class', s.split, s.target_class)
  if s.vog_flagged:
    yield ('flagged', s.split)
    yield ('class_flagged', s.split, s.target_class)
  if s.label is not None:
    wrong = s.predicted_class != s.label
    yield ('class_labelled', s.split, s.target_class)
    yield ('decile_labelled', s.split, s.vog_decile)
    if wrong:
      yield ('class_errors', s.split, s.target_class)
      yield ('decile_errors', s.split, s.vog_decile)


def _quarantine_keys(q: examples_io.Quarantined) -> Iterable[Tuple]:
  yield ('quarantined', q.split)
  yield ('quarantine_kind', q.split, q.kind)


class WriteAuditTallies(beam.PTransform):
  """Counts everything the summary reports and writes them as one JSON-lines file."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def expand(self, inputs):
    records, flagged, quarantined, class_stats = inputs
    seen = records | 'SeenKeys' >> beam.Map(lambda r: ('seen', r[0]))
    scored = flagged | 'ScoredKeys' >> beam.FlatMap(_tally_keys)
    bad = quarantined | 'QuarantineKeys' >> beam.FlatMap(_quarantine_keys)
    counts = ((seen, scored, bad)
              | 'AllKeys' >> beam.Flatten()
              | 'Count' >> beam.combiners.Count.PerElement()
              | 'CountLines' >> beam.Map(
                  lambda kv: json.dumps({'key': list(kv[0]), 'count': kv[1]})))
    stats = class_stats | 'StatLines' >> beam.Map(lambda kv: json.dumps(
        {'class_stats': [kv[0][0], kv[0][1]], 'count': kv[1][0], 'mean': kv[1][1],
         'std': kv[1][2]}))
    return ((counts, stats)
            | 'AllLines' >> beam.Flatten()
            | 'Write' >> beam.io.WriteToText(self._path, shard_name_template=''))


def summarize_tallies(rows: Sequence[Mapping[str, Any]],
                      splits: Sequence[str]) -> Dict[str, Any]:
  """From the tallies file's rows: counts per split, class, decile and quarantine kind.

  Raises RuntimeError when a split's seen != scored + quarantined: an example was lost.
  """
  counts: Dict[tuple, int] = {}
  class_stats = {}
  for row in rows:
    if 'class_stats' in row:
      class_stats[tuple(row['class_stats'])] = row
    else:
      counts[tuple(row['key'])] = row['count']
  per_split = {}
  for split in splits:
    s = per_split[split] = {k: counts.get((k, split), 0) for k in HEADLINE}
    if s['seen'] != s['scored'] + s['quarantined']:
      raise RuntimeError(
          f'VoG audit lost examples in split {split!r}: seen {s["seen"]}, scored '
          f'{s["scored"]}, quarantined {s["quarantined"]}; nothing was published - '
          'report this with the Beam logs')
  per_class = []
  for (split, cls), stats in sorted(class_stats.items()):
    labelled = counts.get(('class_labelled', split, cls), 0)
    errors = counts.get(('class_errors', split, cls), 0)
    flagged = counts.get(('class_flagged', split, cls), 0)
    per_class.append({
        'split': split, 'class': cls, 'count': stats['count'], 'flagged': flagged,
        'flagged_share': flagged / stats['count'], 'vog_raw_mean': stats['mean'],
        'vog_raw_std': stats['std'],
        'error_rate': errors / labelled if labelled else None})
  by_decile = []
  for split in splits:
    for decile in range(1, 11):
      labelled = counts.get(('decile_labelled', split, decile), 0)
      if labelled:
        errors = counts.get(('decile_errors', split, decile), 0)
        by_decile.append({'split': split, 'decile': decile, 'count': labelled,
                          'errors': errors, 'error_rate': errors / labelled})
  kinds: Dict[str, Dict[str, int]] = {}
  for key, n in counts.items():
    if key[0] == 'quarantine_kind':
      kinds.setdefault(key[1], {})[key[2]] = n
  total = {k: sum(s[k] for s in per_split.values()) for k in HEADLINE}
  return {'counts': total, 'splits': per_split, 'quarantine_kinds': kinds,
          'per_class': per_class, 'error_rate_by_decile': by_decile}
