"""What a reviewer is shown: headline numbers from the DifficultyReport and the Evaluator.

`build_summary` reads the report folder through `report_format.load_report` (the summary,
the flagged rows and the optional montage) and, when given, the Evaluator's TFMA output, into a
`ReviewSummary` that every backend renders in its own way. `drift_headline` is the one line
every backend shows of the comparison with the last shipped model's audit; `slices_headline`
the one of what the flagged examples have in common (slices.json's top rows), and
`kinds_headline` how many flags are of each kind (summary.json's `flag_kinds`).
"""

import dataclasses
import os
import re
import unicodedata
from typing import Dict, List, Optional, Sequence

from absl import logging

from components.vog.compute import slice_stats
from components.vog.report import drift_model
from components.vog.report import report_format
from components.vog.report import report_rows

from components.vog import vocabulary as vocab

WORST_CLASSES = 5
TOP_FLAGGED = 5
TOP_SLICES = 2  # slices per split in the slices headline
SLICE_VALUE_LIMIT = 40  # characters of a feature name or value there
# Keras names the same metric differently depending on how the model was compiled.
ACCURACY_METRICS = ('accuracy', 'sparse_categorical_accuracy', 'categorical_accuracy',
                    'binary_accuracy')
HARD_SLICE = (vocab.VOG_BUCKET, vocab.HARD)
REPORT_URL_FIELDS = ('report_uri', 'report_html', 'report_id', 'model_uri', 'model_id',
                     'pipeline', 'run_id')


@dataclasses.dataclass
class ReviewSummary:
  """Everything a review message shows; numbers are None when the input did not have them."""
  pipeline: str
  run_id: str
  model_uri: str
  model_id: int
  report_uri: str
  report_url: str
  counts: Dict[str, int]
  splits: Dict[str, Dict[str, int]]
  worst_classes: List[Dict]
  top_flagged: List[Dict]
  overall_accuracy: Optional[float] = None
  hard_accuracy: Optional[float] = None
  montage_path: Optional[str] = None
  per_class: List[Dict] = dataclasses.field(default_factory=list)
  # Against the last shipped model's audit; None when nothing had shipped (no baseline).
  drift: Optional[drift_model.Drift] = None
  # What ranked the flagged examples (vocab.AGREEMENT_NAMES).
  ranked_by: str = vocab.VOG
  # slices.json: what the flagged examples have in common; None in an older report.
  slices: Optional[report_format.Slices] = None
  # How many flags are of each kind (report_format.flag_kind_totals); None before kinds.
  flag_kinds: Optional[Dict[str, int]] = None

  def headline(self) -> Dict:
    """The few numbers that go into the pending-review record and the CLI listing."""
    return {'counts': self.counts, 'overall_accuracy': self.overall_accuracy,
            'hard_accuracy': self.hard_accuracy, 'report_url': self.report_url,
            'drift': drift_headline(self.drift)}


NO_BASELINE = 'First audit with no shipped model to compare with'
_CONTROL = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029]+')


def format_share(value: Optional[float]) -> str:
  """A fraction as a percentage: `0.1304` -> `13.0%`; None reads `n/a`."""
  return 'n/a' if value is None else f'{100.0 * value:.1f}%'


def format_points(change: Optional[float]) -> str:
  """A change of share in percentage points: `0.019` -> `+1.9 pts`; None reads `n/a`."""
  if change is None:
    return 'n/a'
  return f'{round(100.0 * change, 1) + 0.0:+.1f} pts'  # + 0.0: never `-0.0`


def one_line(text: str) -> str:
  """`text` with line breaks and other control characters as single spaces."""
  return ' '.join(_CONTROL.sub(' ', text).split())


def terminal_safe(value) -> str:
  """`value` as text a terminal shows as it is: control and format characters (escape
  sequences, carriage returns, bidirectional overrides, zero-width characters) are written as
  visible escapes like `\\x1b` or `\\u202e`, so text read from a file cannot move the cursor,
  recolour or rewrite what was printed before it."""
  out = []
  for ch in str(value):
    if unicodedata.category(ch) in ('Cc', 'Cf', 'Cs', 'Co', 'Cn', 'Zl', 'Zp'):
      code = ord(ch)
      out.append(f'\\x{code:02x}' if code < 0x100 else
                 f'\\u{code:04x}' if code < 0x10000 else f'\\U{code:08x}')
    else:
      out.append(ch)
  return ''.join(out)


def drift_headline(drift: Optional[drift_model.Drift]) -> str:
  """One line on how this audit compares with the audit of the last shipped model.

  For example `Since the last shipped model: flagged 11.1% → 13.0% (+1.9 pts); class 3 hard
  share +12.0 pts (eval); 40 newly flagged, 25 still flagged (up to 4 audits in a row)`;
  NO_BASELINE when no model had shipped; `Drift unavailable: <why>` when the baseline could not
  be compared. Text from the report (the reason) is put on one line but not escaped: each
  backend escapes for its medium.
  """
  if drift is None:
    return NO_BASELINE
  if drift.unavailable is not None:
    return one_line(f'Drift unavailable: {drift.unavailable}')
  parts = [f'flagged {format_share(drift.flagged_share_then)} → '
           f'{format_share(drift.flagged_share_now)} '
           f'({format_points(drift.flagged_share_change)})']
  top = drift.largest_hard_share_increase
  parts.append('no class\'s hard share rose' if top is None else
               f'class {top.class_id} hard share {format_points(top.hard_share_change)} '
               f'({one_line(top.split)})')
  streak = drift.longest_streak
  parts.append(f'{drift.newly_flagged} newly flagged, {drift.still_flagged} still flagged'
               + (f' (up to {streak} audits in a row)' if streak >= 2 else ''))
  return 'Since the last shipped model: ' + '; '.join(parts)


def clip(text, limit: int) -> str:
  """`text` on one line and at most `limit` characters, ending in … when cut."""
  text = one_line(str(text))
  return text if len(text) <= limit else text[:limit - 1] + '…'


def slice_name(row: report_format.SliceRow) -> str:
  """A slice in a few words: `region=r3`, `income_k in [3, 7.5)`, `income_k >= 7.5`, `"news"
  in text`, `label 3 -> predicted 5`; names and values from the file are put on one line and
  shortened."""
  feature, value = clip(row.feature, SLICE_VALUE_LIMIT), clip(row.value, SLICE_VALUE_LIMIT)
  if row.kind == slice_stats.LABEL_PAIR and row.classes is not None:
    return f'label {row.classes[0]} -> predicted {row.classes[1]}'
  if row.kind == slice_stats.NUMERIC:  # '[3, 7.5)', or '< 3' and '>= 7.5' at the ends
    return f'{feature} in {value}' if value.startswith('[') else f'{feature} {value}'
  if row.kind == slice_stats.TOKEN:
    return f'"{value}" in {feature}'
  return f'{feature}={value}'


def slice_evidence(row: report_format.SliceRow, entry: report_format.SplitSlices) -> str:
  """`3.1x, 42 of 200 flagged`: the slice's lift and its count in its group."""
  return (f'{row.lift:.1f}x, {row.group_count} of {entry.group_size(row.group)} '
          f'{row.group}')


def slices_headline(slices: Optional[report_format.Slices], top: int = TOP_SLICES
                    ) -> Optional[str]:
  """One line on what the flagged examples have in common, the `top` slices of each split,
  e.g. `What the flagged share: eval: region=r3 (3.1x, 42 of 200 flagged); train: label 3
  -> predicted 5 (4.0x, 20 of 200 flagged)`; None without slices.json (an older report).
  Text from the file is put on one line and shortened but not escaped: each backend
  escapes for its medium."""
  if slices is None:
    return None
  parts = []
  for split, entry in slices.splits.items():
    rows = entry.rows[:top]
    if rows:
      parts.append(f'{clip(split, 40)}: ' + ', '.join(
          f'{slice_name(r)} ({slice_evidence(r, entry)})' for r in rows))
  if not parts:
    return 'What the flagged share: no slice stands out among the flagged or hard examples'
  return 'What the flagged share: ' + '; '.join(parts)


def kinds_headline(totals: Optional[Dict[str, int]]) -> Optional[str]:
  """`flags: 120 wrong label, 30 atypical, 50 unclear` (report_format.flag_kind_totals);
  None without kinds (an older report)."""
  if totals is None:
    return None
  return 'flags: ' + ', '.join(f'{n} {clip(kind, 40)}' for kind, n in totals.items())


def format_accuracy(value: Optional[float]) -> str:
  """`0.9312` -> `93.1%`; a missing number reads `n/a`."""
  return 'n/a' if value is None else f'{100.0 * value:.1f}%'


def report_url(template: Optional[str], fields: Dict[str, str]) -> str:
  """Fills `template` (placeholders from REPORT_URL_FIELDS); without one, the file path.

  Refuses a template with an unknown placeholder, naming the ones it knows.
  """
  if not template:
    return fields['report_html']
  try:
    return template.format(**fields)
  except (KeyError, IndexError) as e:
    raise ValueError(
        f'report_url_template {template!r} uses unknown placeholder {e}; use any of '
        + ', '.join('{%s}' % f for f in REPORT_URL_FIELDS)) from None


def check_report_url_template(template: Optional[str]) -> None:
  """Raises ValueError now for a template that would fail at run time."""
  report_url(template, {f: 'x' for f in REPORT_URL_FIELDS})


def worst_classes(per_class: Sequence[report_rows.ClassRow],
                  limit: int = WORST_CLASSES) -> List[Dict]:
  """Classes by flagged share, largest first, ties broken by flagged count then class.

  In: the summary's typed per-class rows; out: summary.json's dicts of the first `limit`.
  """
  rows = sorted((r for r in per_class if r.count),
                key=lambda r: (-r.flagged_share, -r.flagged, r.split, r.class_id))
  return [r.to_json() for r in rows[:limit]]


def read_accuracies(evaluation_uri: Optional[str]):
  """(overall, hard-slice) accuracy from TFMA output; None for what is not there."""
  if not evaluation_uri:
    return None, None
  # TFMA imports TensorFlow and Beam; only pay for it when there is an evaluation.
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  try:
    metrics = list(tfma.load_metrics(evaluation_uri))
  except Exception as e:  # pylint: disable=broad-except
    # A missing or unreadable evaluation shows as n/a; the Evaluator's blessing still gates.
    logging.warning('Cannot read TFMA metrics at %s (%s); accuracy shows as n/a',
                    evaluation_uri, str(e).splitlines()[0] if str(e) else type(e).__name__)
    return None, None
  overall = hard = None
  for per_slice in metrics:
    keys = [(k.column, k.bytes_value.decode('utf-8', 'replace') if k.HasField('bytes_value')
             else str(k.int64_value if k.HasField('int64_value') else k.float_value))
            for k in per_slice.slice_key.single_slice_keys]
    value = _accuracy(per_slice)
    if value is None:
      continue
    if not keys and overall is None:
      overall = value
    elif keys == [HARD_SLICE] and hard is None:
      hard = value
  return overall, hard


def _accuracy(per_slice) -> Optional[float]:
  found = {}
  for kv in per_slice.metric_keys_and_values:
    if kv.key.HasField('sub_key') or kv.key.is_diff or not kv.value.HasField('double_value'):
      continue
    if kv.key.name in ACCURACY_METRICS:
      found.setdefault(kv.key.name, kv.value.double_value.value)
  for name in ACCURACY_METRICS:
    if name in found:
      return found[name]
  return None


def build_summary(*, report_uri: str, model_uri: str, model_id: int, report_id: int,
                  pipeline: str, run_id: str, evaluation_uri: Optional[str],
                  report_url_template: Optional[str]) -> ReviewSummary:
  """Reads the report folder and the evaluation into a ReviewSummary.

  Refuses (json_checks.ReportFormatError, a ValueError naming the file) a report folder
  without a readable summary.json or flagged.jsonl, or with a slices.json or `flag_kinds`
  that do not hold what the format says.
  """
  report = report_format.load_report(report_uri)
  overall, hard = read_accuracies(evaluation_uri)
  url = report_url(report_url_template, {
      'report_uri': report_uri, 'report_html': report.page_path,
      'report_id': str(report_id), 'model_uri': model_uri, 'model_id': str(model_id),
      'pipeline': pipeline, 'run_id': run_id})
  return ReviewSummary(
      pipeline=pipeline, run_id=run_id, model_uri=model_uri, model_id=model_id,
      report_uri=report_uri, report_url=url, counts=dict(report.summary.counts),
      splits={name: dict(c) for name, c in report.summary.splits.items()},
      per_class=[row.to_json() for row in report.summary.per_class],
      worst_classes=worst_classes(report.summary.per_class),
      top_flagged=[report_rows.flagged_row_to_json(r) for r in report.flagged[:TOP_FLAGGED]],
      overall_accuracy=overall, hard_accuracy=hard, montage_path=report.montage_path,
      drift=report.summary.drift, ranked_by=report.summary.ranked_by, slices=report.slices,
      flag_kinds=report_format.flag_kind_totals(
          report.summary.raw, os.path.join(report_uri, vocab.SUMMARY_FILE)))


def flagged_line(row: Dict, ranked_by: str) -> str:
  """What ranked one flagged row (flagged.jsonl's line), how many signals agree and its
  kind: `confidence 0.12, 5 of 8 signals agree, wrong label`, or `score 3.41` where VoG
  ranked it."""
  signals = row.get('signals') if isinstance(row.get('signals'), dict) else {}
  value = signals.get('audit_' + ranked_by)
  if ranked_by == vocab.VOG or not isinstance(value, (int, float)):
    text = f'score {float(row.get("vog_score") or 0):.2f}'
  else:
    text = f'{ranked_by} {float(value):.2f}'
  agreeing = row.get('agreeing')
  if isinstance(agreeing, list):
    text += f', {len(agreeing)} of {len(vocab.AGREEMENT_NAMES)} signals agree'
  kind = row.get('kind')
  if isinstance(kind, str):
    text += f', {clip(kind, 40)}'
  return text
