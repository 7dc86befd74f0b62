"""The review page of a VoG audit (`report.html`) and a PNG montage of the flagged images.

Pure Python (jinja2, NumPy, Pillow, matplotlib): the executor and `vog-audit report` both call
`render_report` with what the audit wrote (summary.json, flagged.jsonl, a quarantine sample) and
one `ExamplePreview` per flagged example. The page is one self-contained HTML string: CSS inline,
images as data: URIs, the chart as inline SVG, no JavaScript, so it opens from an artifact store or
a mail attachment.

The page opens with "Since the last shipped model": summary.json's `drift` (see
drift_model.Drift) as a headline, a chart of per-class hard share then and now, and per-split
and per-class tables with the shift statistic and how to read it; the reason when the drift
was unavailable; one line when there was no baseline. Flagged rows say whether each example
is newly flagged, still flagged (and for how many audits in a row) or new data.

Then "What the flagged examples have in common" (slices.json, report_format.Slices): per split
a ranked table of the feature values, numeric ranges, tokens and label pairs where the
flagged (or hard) examples gather, their share there against the split's with bars, the
lift and the adjusted p-value, the most confused class pairs, and a line for a split whose
features were not examined. Each flagged example shows its kind (flag_kinds.KINDS) as a
chip; radio buttons filter the flagged table by kind with CSS alone (no JavaScript), and the
header counts the kinds. A report without slices or kinds renders as before.
"""

import base64
import io
import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from components.vog.report import drift_model
from components.vog.report import json_checks
from components.vog.report import report_format

from components.vog import vocabulary as vocab
from components.vog.compute import flag_kinds as flag_kinds_lib
from components.vog.compute import signals as signals_lib
from components.vog.compute import slice_stats

THUMBNAIL_PX = 64  # small digits (8x8) are upscaled by whole pixels to about this size
MAX_THUMBNAIL_PX = 128  # larger images are shrunk to fit, so 200 previews keep the page light
MONTAGE_COLUMNS = 6
# write_flagged_montage reads the caption's "label -> predicted" from these preview features.
MONTAGE_LABEL_FEATURE = 'label'
MONTAGE_PREDICTED_FEATURE = 'predicted_class'
NA = 'n/a'
_REQUIRED_SUMMARY_KEYS = vocab.REQUIRED_SUMMARY_KEYS
_HEADLINE_COUNTS = vocab.HEADLINE


class ExamplePreview(NamedTuple):
  rank: int
  example_id: str
  image: Optional[np.ndarray]  # (H, W) or (H, W, C), C in {1, 3}; None when not an image
  features: Dict[str, str]  # short text of the example's features, already shortened


def _image_to_uint8(image: Any, what: str) -> np.ndarray:
  """(H, W) / (H, W, 1) / (H, W, 3) of any numeric range -> uint8 (H, W) or (H, W, 3).

  uint8 is kept as is, floats within [0, 1] are scaled by 255, anything else is stretched
  from its own min to max. Refuses other shapes and non-numeric data, naming `what`.
  """
  arr = np.asarray(image)
  if arr.ndim == 3 and arr.shape[-1] == 1:
    arr = arr[..., 0]
  if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3) or 0 in arr.shape:
    raise ValueError(f'{what}: image has shape {arr.shape}; expected (H, W), (H, W, 1) or '
                     '(H, W, 3) - pass image=None for data that is not an image')
  if arr.dtype == np.uint8:
    return arr
  if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
    raise ValueError(f'{what}: image has dtype {arr.dtype}; expected numbers')
  arr = arr.astype(np.float64)
  finite = np.isfinite(arr)
  if not finite.any():
    return np.zeros(arr.shape, np.uint8)
  lo, hi = float(arr[finite].min()), float(arr[finite].max())
  arr = np.where(finite, arr, lo)  # non-finite pixels show as the darkest value
  if lo >= 0.0 and hi <= 1.0:
    lo, hi = 0.0, 1.0
  scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
  return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _thumbnail_data_uri(pixels: np.ndarray) -> str:
  """uint8 pixels -> PNG data: URI, upscaled by a whole factor (nearest) or shrunk to fit."""
  img = Image.fromarray(pixels)
  longest = max(img.size)
  if longest > MAX_THUMBNAIL_PX:
    img.thumbnail((MAX_THUMBNAIL_PX, MAX_THUMBNAIL_PX), Image.Resampling.BILINEAR)
  else:
    factor = max(1, round(THUMBNAIL_PX / longest))
    img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
  buf = io.BytesIO()
  img.save(buf, format='PNG', optimize=True)
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _fmt(value: Any, spec: str = '') -> str:
  """A number with `spec`, other values as text, None or missing as 'n/a'."""
  if value is None:
    return NA
  if _is_number(value):
    if not math.isfinite(float(value)):
      return str(float(value))
    return format(value, spec) if spec else format(value, ',') if _is_integral(value) else str(value)
  return str(value)


def _is_integral(value: Any) -> bool:
  return isinstance(value, (int, np.integer))


def _pct(value: Any) -> str:
  return _fmt(value * 100.0, '.1f') + '%' if _is_number(value) else NA


def _file_name(path: Any) -> str:
  return str(path).rstrip('/').replace('\\', '/').rsplit('/', 1)[-1] if path else NA


def _mismatch(label: Any, predicted: Any) -> bool:
  return label is not None and predicted is not None and str(label) != str(predicted)


def _ranked_value(row: Mapping[str, Any], ranked_by: str) -> str:
  """The flagged row's value of what ranked it: its signal's field (signals.REGISTRY), or
  vog_score for VoG."""
  if ranked_by == vocab.VOG:
    return _fmt(row.get(vocab.VOG_SCORE), '.3f')
  signals = row.get('signals')
  value = (signals.get(signals_lib.by_name(ranked_by).field)
           if isinstance(signals, Mapping) else None)
  return _fmt(value, '.3g')


def _top_sigma(row: Mapping[str, Any]) -> List[Tuple[str, str]]:
  """(source, sigma) of where the example's gradients moved most, largest first."""
  pairs = row.get('top_sigma')
  if not isinstance(pairs, (list, tuple)):
    return []
  return [(str(p[0]), _fmt(p[1], '.3g')) for p in pairs
          if isinstance(p, (list, tuple)) and len(p) == 2]


def _agreeing(row: Mapping[str, Any], known: Sequence[str]) -> Optional[List[str]]:
  """The row's `agreeing` names among `known`; None when it has none."""
  names = row.get('agreeing')
  if not isinstance(names, (list, tuple)):
    return None
  return [str(n) for n in names if str(n) in known]


def _agreement_rows(flagged: Sequence[Mapping[str, Any]], known: Sequence[str]
                    ) -> List[Dict[str, Any]]:
  """How many flagged examples each of `known` (every signal, then VoG) agrees on, most
  first."""
  lists = [a for a in (_agreeing(r, known) for r in flagged) if a is not None]
  if not lists:
    return []
  counts = [(name, sum(name in a for a in lists)) for name in known]
  counts.sort(key=lambda kv: -kv[1])
  return [{'name': name, 'count': _fmt(n), 'share': _pct(n / len(lists)),
           'width': _bar_width(n, len(lists))} for name, n in counts]


def flagged_rows(flagged: Sequence[Mapping[str, Any]],
                  previews: Sequence[ExamplePreview], ranked_by: str,
                  known: Sequence[str]) -> List[Dict[str, Any]]:
  by_rank = {p.rank: p for p in previews}
  rows = []
  for row in flagged:
    preview = by_rank.get(row.get('rank'))
    image_uri = None
    if preview is not None and preview.image is not None:
      pixels = _image_to_uint8(preview.image, f'preview of rank {preview.rank} '
                               f'({preview.example_id!r})')
      image_uri = _thumbnail_data_uri(pixels)
    rows.append({
        'rank': _fmt(row.get('rank')),
        'example_id': _fmt(row.get('example_id')),
        'split': _fmt(row.get('split')),
        'label': _fmt(row.get('label')),
        'predicted': _fmt(row.get('predicted_class')),
        'mismatch': _mismatch(row.get('label'), row.get('predicted_class')),
        'score': _fmt(row.get(vocab.VOG_SCORE), '.3f'),
        'raw': _fmt(row.get(vocab.VOG_RAW), '.3g'),
        'percentile': _fmt(row.get(vocab.VOG_PERCENTILE), '.1f'),
        'bucket': _fmt(row.get(vocab.VOG_BUCKET)),
        'image_uri': image_uri,
        'features': sorted(preview.features.items()) if preview and image_uri is None else [],
        'drift': _drift_status(row),
        'ranked': _ranked_value(row, ranked_by),
        'agreeing': _agreeing(row, known),
        'moved': _top_sigma(row),
        'kind': _kind_of(row),
        'kind_slug': kind_slug(row.get('kind')),
    })
  return rows


_NOT_EXAMINED = 'not examined: '
SLICE_TEXT_LIMIT = 120  # characters of a feature name or value shown (the file keeps it all)
_SLICE_KIND_TEXT = {slice_stats.CATEGORICAL: 'value', slice_stats.NUMERIC: 'range',
                    slice_stats.TOKEN: 'token', slice_stats.LABEL_PAIR: 'label pair'}


def _clip(text: Any, limit: int = SLICE_TEXT_LIMIT) -> str:
  """Text from a file on one line, at most `limit` characters, ending in … when cut."""
  text = ' '.join(str(text).split())
  return text if len(text) <= limit else text[:limit - 1] + '…'


def kind_slug(kind: Any) -> str:
  """The CSS name of a flag kind ('wrong label' -> 'wrong-label'); 'other' for one that
  flag_kinds.KINDS does not name."""
  return kind.replace(' ', '-') if kind in flag_kinds_lib.KINDS else 'other'


def _kind_of(row: Mapping[str, Any]) -> Optional[str]:
  kind = row.get('kind')
  return None if kind is None else _clip(kind, 40)


def _class_name(class_id: int, class_names: Optional[Sequence[str]]) -> str:
  if class_names and 0 <= class_id < len(class_names):
    name = _clip(class_names[class_id], 40)
    return name if name == str(class_id) else f'{name} ({class_id})'
  return str(class_id)


def slice_text(row: report_format.SliceRow,
               class_names: Optional[Sequence[str]] = None) -> str:
  """A slice as a reader says it: 'region = r3', 'income_k in [3, 7.5)', 'income_k >= 7.5',
  'token "news" in text', 'labelled 3, predicted 5' (with class names where known); text
  is clipped."""
  feature, value = _clip(row.feature), _clip(row.value)
  if row.kind == slice_stats.LABEL_PAIR and row.classes is not None:
    return (f'labelled {_class_name(row.classes[0], class_names)}, predicted '
            f'{_class_name(row.classes[1], class_names)}')
  if row.kind == slice_stats.NUMERIC:  # '[3, 7.5)', or '< 3' and '>= 7.5' at the ends
    return f'{feature} in {value}' if value.startswith('[') else f'{feature} {value}'
  if row.kind == slice_stats.TOKEN:
    return f'token "{value}" in {feature}'
  return f'{feature} = {value}'


def _slice_row_context(row: report_format.SliceRow, entry: report_format.SplitSlices,
                       class_names: Optional[Sequence[str]], top: float) -> Dict[str, Any]:
  """One row of a split's slice table; bars are scaled to `top`, the split's largest share."""
  size = entry.group_size(row.group)
  return {
      'rank': _fmt(row.rank), 'text': slice_text(row, class_names),
      'kind': _SLICE_KIND_TEXT[row.kind], 'count': _fmt(row.count),
      'split_share': _pct(row.share_in_split), 'group': row.group,
      'in_group': f'{_fmt(row.group_count)} of {_fmt(size)}',
      'group_share': _pct(row.group_share),
      'group_width': _bar_width(row.group_share, top),
      'split_width': _bar_width(row.share_in_split, top),
      'lift': f'{row.lift:.1f}×', 'p': _fmt(row.p_adjusted, '.2g'),
      'approximate': row.approximate,
  }


def _slices_context(raw: Any, class_names: Optional[Sequence[str]]) -> Optional[Dict[str, Any]]:
  """What "What the flagged examples have in common" shows of slices.json; None without
  one (an older report), the reason when it does not parse."""
  if raw is None:
    return None
  try:
    slices = raw if isinstance(raw, report_format.Slices) else report_format.parse_slices(raw)
  except json_checks.ReportFormatError as e:
    return {'state': 'unreadable', 'reason': str(e)}
  splits = []
  for name, entry in slices.splits.items():
    top = max((max(r.group_share, r.share_in_split) for r in entry.rows), default=1.0)
    rows = [_slice_row_context(r, entry, class_names, top) for r in entry.rows]
    reason = entry.features
    if reason.startswith(_NOT_EXAMINED):
      reason = reason[len(_NOT_EXAMINED):]
    pairs = [r for r, raw_row in zip(rows, entry.rows)
             if raw_row.kind == slice_stats.LABEL_PAIR]
    splits.append({
        'split': _clip(name, 80), 'examples': _fmt(entry.examples),
        'flagged': _fmt(entry.flagged), 'hard': _fmt(entry.hard),
        'not_examined': None if entry.examined else _clip(reason, 300),
        'tests': _fmt(entry.tests),
        'features': [r for r, raw_row in zip(rows, entry.rows)
                     if raw_row.kind != slice_stats.LABEL_PAIR],
        'pairs': pairs,
    })
  alpha = slices.settings.get('alpha')
  return {'state': 'available', 'splits': splits,
          'alpha': _fmt(alpha) if _is_number(alpha) else NA,
          'approximate': any(r['approximate'] for s in splits
                             for r in s['features'] + s['pairs'])}


def _kind_counts(summary: Mapping[str, Any]) -> Optional[List[Dict[str, str]]]:
  """The header's kind counts ({'kind', 'count', 'slug'}); None without kinds, and the
  reason as the only item's kind when summary.json's `flag_kinds` does not parse."""
  try:
    totals = report_format.flag_kind_totals(summary)
  except json_checks.ReportFormatError as e:
    return [{'kind': f'kinds cannot be shown: {e}', 'count': '', 'slug': 'other'}]
  if totals is None:
    return None
  return [{'kind': _clip(kind, 40), 'count': _fmt(count), 'slug': kind_slug(kind)}
          for kind, count in totals.items()]


def _kind_rule(summary: Mapping[str, Any]) -> Optional[Dict[str, str]]:
  """summary.json's `flag_kind_rule`: which signal decided the kinds, and why."""
  rule = summary.get('flag_kind_rule')
  if not isinstance(rule, Mapping):
    return None
  memorised = rule.get('memorised')
  return {'rule': _clip(rule.get('rule') or NA, 60), 'reason': _clip(rule.get('reason') or '', 600),
          'memorised': ('yes' if memorised is True else 'no' if memorised is False else NA)}


def kind_filter(flagged: Sequence[Mapping[str, Any]]) -> List[Dict[str, str]]:
  """The kind filter's choices: every kind the flagged rows hold, KINDS first, with counts."""
  found: Dict[str, int] = {}
  for row in flagged:
    kind = _kind_of(row)
    if kind is not None:
      slug = kind_slug(kind)
      found[slug] = found.get(slug, 0) + 1
  order = [kind_slug(k) for k in flag_kinds_lib.KINDS] + ['other']
  return [{'slug': slug, 'text': slug.replace('-', ' ') if slug != 'other' else 'other kind',
           'count': _fmt(found[slug])} for slug in order if slug in found]


def _per_class_rows(per_class: Sequence[Mapping[str, Any]]) -> List[Dict[str, str]]:
  def key(row):
    share = row.get('flagged_share')
    return (-share if _is_number(share) else math.inf, str(row.get('split')), str(row.get('class')))
  return [{
      'split': _fmt(r.get('split')), 'class': _fmt(r.get('class')), 'count': _fmt(r.get('count')),
      'flagged': _fmt(r.get(vocab.FLAGGED)), 'share': _pct(r.get('flagged_share')),
      'share_width': _bar_width(r.get('flagged_share'), 1.0),
      'raw': (f"{_fmt(r.get(vocab.VOG_RAW_MEAN), '.3g')} ± "
              f"{_fmt(r.get(vocab.VOG_RAW_STD), '.2g')}"),
      'error_rate': _pct(r.get('error_rate')),
  } for r in sorted(per_class, key=key)]


def _bar_width(value: Any, top: float) -> float:
  """Bar length in percent of the cell; bars are scaled to `top` so small rates stay visible."""
  if not _is_number(value) or not math.isfinite(float(value)) or top <= 0:
    return 0.0
  return round(max(0.0, min(1.0, float(value) / top)) * 100.0, 1)


def _decile_rows(deciles: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  rates = [float(d['error_rate']) for d in deciles
           if _is_number(d.get('error_rate')) and math.isfinite(float(d['error_rate']))]
  top = max(rates, default=0.0)
  ordered = sorted(deciles, key=lambda d: (str(d.get('split')), d.get('decile') or 0))
  return [{
      'split': _fmt(d.get('split')), 'decile': _fmt(d.get('decile')), 'count': _fmt(d.get('count')),
      'errors': _fmt(d.get('errors')), 'rate': _pct(d.get('error_rate')),
      'width': _bar_width(d.get('error_rate'), top),
  } for d in ordered]


def _quarantine_kind_rows(kinds: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, str]]:
  rows = [(str(split), str(kind), count) for split, by_kind in kinds.items()
          for kind, count in (by_kind or {}).items()]
  rows.sort(key=lambda r: (-(r[2] if _is_number(r[2]) else 0), r[0], r[1]))
  return [{'split': s, 'kind': k, 'count': _fmt(c)} for s, k, c in rows]


PSI_MODERATE = 0.1  # drift_model.SHIFT_STATISTIC is read as stable below this,
PSI_LARGE = 0.25  # as a moderate shift up to this, and as a large one above it
_STATUS_TEXT = {vocab.NEW_DATA: 'new data',
                vocab.NEWLY_FLAGGED: 'newly flagged',
                vocab.STILL_FLAGGED: 'still flagged'}
# The hard-share chart: one group of two bars (then, now) per class.
_CHART_BAR = 12
_CHART_GAP = 8
_CHART_PLOT_H = 160
_CHART_LEFT, _CHART_RIGHT, _CHART_TOP, _CHART_BOTTOM = 64, 16, 34, 42


def _pts(change: Any) -> str:
  """A change of share in points: 0.019 -> '+1.9 pts'."""
  if not _is_number(change) or not math.isfinite(float(change)):
    return NA
  points = round(float(change) * 100.0, 1)
  return f'{points + 0.0:+.1f} pts'  # + 0.0: no '-0.0'


def psi_reading(psi: Any) -> str:
  """'stable', 'moderate' or 'large' for a value of drift_model.SHIFT_STATISTIC."""
  if not _is_number(psi) or not math.isfinite(float(psi)):
    return NA
  if psi < PSI_MODERATE:
    return 'stable'
  return 'moderate' if psi <= PSI_LARGE else 'large'


def _drift_status(row: Mapping[str, Any]) -> Optional[Dict[str, str]]:
  """How a flagged row stands against the last shipped model's audit; None without one."""
  status = row.get('drift_status')
  if status is None:
    return None
  text = _STATUS_TEXT.get(status, str(status))
  streak = row.get('flagged_streak')
  if status == vocab.STILL_FLAGGED and _is_integral(streak) and streak >= 2:
    text += f' ({streak} audits in a row)'
  return {'text': text, 'kind': status if status in _STATUS_TEXT else 'other'}


def _chart_split(drift: drift_model.Drift) -> Optional[str]:
  """The split the chart shows: eval when it has classes, else the first that has."""
  with_classes = {c.split for c in drift.per_class}
  order = [s.split for s in drift.splits] + [c.split for c in drift.per_class]
  chosen = [s for s in order if s in with_classes]
  if not chosen:
    return None
  return 'eval' if 'eval' in with_classes else chosen[0]


def _nice_top(value: float) -> float:
  """The axis' top: the next multiple of 10% (5% below 20%) at or above `value`."""
  step = 0.05 if value <= 0.2 else 0.1
  return min(1.0, max(step, math.ceil(round(value / step, 6)) * step))


def _hard_share_chart(drift: drift_model.Drift) -> Optional[Dict[str, Any]]:
  """Geometry of the grouped bar chart of per-class hard share, then and now, for one split."""
  split = _chart_split(drift)
  if split is None:
    return None
  classes = sorted((c for c in drift.per_class if c.split == split), key=lambda c: c.class_id)
  shares = [v for c in classes for v in (c.hard_share_then, c.hard_share_now)
            if math.isfinite(v)]
  top = _nice_top(max(shares, default=0.0))
  group = 2 * _CHART_BAR + _CHART_GAP
  width = _CHART_LEFT + len(classes) * group + _CHART_RIGHT
  width = max(width, 360)
  base = _CHART_TOP + _CHART_PLOT_H

  def height(share: float) -> float:
    if not math.isfinite(share):
      return 0.0
    return round(max(0.0, min(1.0, share / top)) * _CHART_PLOT_H, 1)

  bars, labels = [], []
  for i, c in enumerate(classes):
    x = _CHART_LEFT + i * group + _CHART_GAP / 2
    for j, (when, share) in enumerate((('then', c.hard_share_then), ('now', c.hard_share_now))):
      h = height(share)
      bars.append({'x': x + j * _CHART_BAR, 'y': round(base - h, 1), 'h': h, 'when': when,
                   'title': f'class {c.class_id}, {"last shipped" if when == "then" else "now"}'
                            f': {_pct(share)} hard'})
    labels.append({'x': x + _CHART_BAR, 'text': str(c.class_id)})
  ticks = [{'y': round(base - k / 4 * _CHART_PLOT_H, 1), 'text': _pct(top * k / 4)}
           for k in range(5)]
  return {'split': split, 'width': width, 'height': base + _CHART_BOTTOM, 'left': _CHART_LEFT,
          'right': width - _CHART_RIGHT, 'base': base, 'top': _CHART_TOP, 'bars': bars,
          'labels': labels, 'ticks': ticks, 'bar': _CHART_BAR,
          'mid_x': round((_CHART_LEFT + width - _CHART_RIGHT) / 2, 1),
          'mid_y': round(_CHART_TOP + _CHART_PLOT_H / 2, 1),
          'legend_x': width - _CHART_RIGHT - 190, 'splits': len({c.split for c in drift.per_class})}


def _drift_context(raw: Any) -> Dict[str, Any]:
  """What the 'Since the last shipped model' section shows of summary.json's `drift`."""
  if raw is None:
    return {'state': 'none'}
  try:
    drift = raw if isinstance(raw, drift_model.Drift) else drift_model.parse_drift(
        raw, vocab.SUMMARY_FILE)
  except json_checks.ReportFormatError as e:
    return {'state': 'unreadable', 'reason': str(e)}
  baseline = {'uri': drift.baseline_uri, 'created_at': drift.baseline_created_at}
  if drift.unavailable is not None:
    return {'state': 'unavailable', 'reason': drift.unavailable, 'baseline': baseline}
  flagged_now = sum(s.newly_flagged + s.still_flagged + s.flagged_new_data
                    for s in drift.splits)
  new_data = sum(s.flagged_new_data for s in drift.splits)
  top = drift.largest_hard_share_increase
  order = {s.split: i for i, s in enumerate(drift.splits)}
  classes = sorted(drift.per_class, key=lambda c: (
      -c.hard_share_change, -c.psi if math.isfinite(c.psi) else 0.0,
      order.get(c.split, len(order)), c.split, c.class_id))
  return {
      'state': 'available', 'baseline': baseline,
      'flagged_now': _pct(drift.flagged_share_now),
      'flagged_then': _pct(drift.flagged_share_then),
      'flagged_change': _pts(drift.flagged_share_change),
      'newly_flagged': _fmt(drift.newly_flagged), 'still_flagged': _fmt(drift.still_flagged),
      'longest_streak': drift.longest_streak,
      'new_data': _fmt(new_data), 'flagged_total': _fmt(flagged_now),
      'new_data_share': _pct(new_data / flagged_now) if flagged_now else NA,
      'top_class': None if top is None else {
          'class': str(top.class_id), 'split': top.split, 'then': _pct(top.hard_share_then),
          'now': _pct(top.hard_share_now), 'change': _pts(top.hard_share_change)},
      'streaks': [(str(n), _fmt(count)) for n, count in sorted(drift.streaks.items())],
      'splits': [{
          'split': s.split, 'flagged_then': _pct(s.flagged_share_then),
          'flagged_now': _pct(s.flagged_share_now), 'flagged_change': _pts(s.flagged_share_change),
          'hard_then': _pct(s.hard_share_then), 'hard_now': _pct(s.hard_share_now),
          'hard_change': _pts(s.hard_share_change), 'matched': _fmt(s.matched),
          'new': _fmt(s.new_examples), 'gone': _fmt(s.gone_examples),
          'newly': _fmt(s.newly_flagged), 'still': _fmt(s.still_flagged),
          'new_data': _fmt(s.flagged_new_data), 'no_longer': _fmt(s.no_longer_flagged),
      } for s in drift.splits],
      'classes': [{
          'split': c.split, 'class': str(c.class_id), 'count_then': _fmt(c.count_then),
          'count_now': _fmt(c.count_now), 'hard_then': _pct(c.hard_share_then),
          'hard_now': _pct(c.hard_share_now), 'hard_change': _pts(c.hard_share_change),
          'rose': c.hard_share_change > 0, 'flagged_then': _pct(c.flagged_share_then),
          'flagged_now': _pct(c.flagged_share_now),
          'flagged_change': _pts(c.flagged_share_change), 'psi': _fmt(c.psi, '.3f'),
          'reading': psi_reading(c.psi),
      } for c in classes],
      'chart': _hard_share_chart(drift),
      'psi_moderate': PSI_MODERATE, 'psi_large': PSI_LARGE,
  }


def _check_summary(summary: Any) -> None:
  name = vocab.SUMMARY_FILE
  if not isinstance(summary, Mapping):
    raise ValueError(f'summary must be the mapping read from {name}, got '
                     f'{type(summary).__name__}')
  missing = [k for k in _REQUIRED_SUMMARY_KEYS if k not in summary]
  if missing:
    raise ValueError(f'{name} has no {", ".join(missing)}; the report needs '
                     f'{", ".join(_REQUIRED_SUMMARY_KEYS)} - rerun the audit to rebuild it')
  for key, kind in ((vocab.SETTINGS, Mapping), (vocab.COUNTS, Mapping),
                    (vocab.CHECKPOINTS, list)):
    if not isinstance(summary[key], kind):
      raise ValueError(f"{name} '{key}' is a {type(summary[key]).__name__}; expected "
                       f"{'an object' if kind is Mapping else 'a list'}")


def render_report(summary: Mapping[str, Any], flagged: Sequence[Mapping[str, Any]],
                  quarantine_sample: Sequence[Mapping[str, Any]],
                  previews: Sequence[ExamplePreview], slices: Any = None) -> str:
  """The self-contained review page (one HTML string, no external resources: CSS inline, images as data: URIs).

  In: `summary` as in summary.json (settings, checkpoints and counts are required; every other
  key may be missing and shows as n/a), `flagged` rows of flagged.jsonl highest score first,
  up to ~50 rows of the quarantine shards, and previews matched to flagged rows by rank. Everything
  from the data is HTML-escaped. A `drift` that does not parse (drift_model.parse_drift) is
  shown as unreadable, with why, rather than refused; so are `slices` (slices.json's content
  or report_format.Slices; None: no section) that report_format.parse_slices refuses and a
  summary's `flag_kinds` that report_format.flag_kind_totals refuses. Label pairs name
  their classes by summary.json's `class_names` where it has them. Refuses a summary without
  settings/checkpoints/counts and a preview image of an unsupported shape (ValueError naming it).
  """
  _check_summary(summary)
  counts = summary[vocab.COUNTS]
  seen, scored, quarantined = (counts.get(k) for k in (
      vocab.SEEN, vocab.SCORED, vocab.QUARANTINED))
  flagged_count = counts.get(vocab.FLAGGED)
  counts_add_up = not all(_is_number(v) for v in (seen, scored, quarantined)) or (
      seen == scored + quarantined)
  splits = summary.get('splits')
  baseline = summary.get('baseline')
  # What `agreeing` may name: every signal of signals.REGISTRY by its short name, then VoG.
  known = vocab.AGREEMENT_NAMES
  ranked_by = summary.get(vocab.RANKED_BY)
  if ranked_by not in known:
    ranked_by = vocab.VOG  # reports before format_version 4 were ranked by VoG
  names = summary.get('class_names')
  class_names = ([str(n) for n in names] if isinstance(names, list)
                 and all(isinstance(n, (str, int)) for n in names) else None)
  context = {
      'created_at': _fmt(summary.get('created_at')),
      'headline': [(k, _fmt(counts.get(k))) for k in _HEADLINE_COUNTS],
      'counts_add_up': counts_add_up,
      'flagged_share': _pct(flagged_count / scored) if _is_number(flagged_count)
                       and _is_number(scored) and scored else NA,
      'settings': [(str(k), _fmt(v)) for k, v in summary[vocab.SETTINGS].items()],
      'checkpoints': [{'epoch': _fmt(c.get('epoch')), 'step': _fmt(c.get('step')),
                       'file': _file_name(c.get('path'))}
                      for c in summary[vocab.CHECKPOINTS] if isinstance(c, Mapping)],
      'splits': None if not isinstance(splits, Mapping) else [
          {'split': str(name), **{k: _fmt((v or {}).get(k)) for k in _HEADLINE_COUNTS}}
          for name, v in splits.items()],
      'flagged': flagged_rows(flagged, previews, ranked_by, known),
      'ranked_by': ranked_by,
      'agreement': _agreement_rows(flagged, known),
      'agreement_total': len(known),
      'drift_column': any(r.get('drift_status') is not None for r in flagged),
      'moved_column': any(r.get('top_sigma') for r in flagged),
      'per_class': _per_class_rows(summary['per_class']) if summary.get('per_class') else None,
      'deciles': _decile_rows(summary['error_rate_by_decile'])
                 if summary.get('error_rate_by_decile') else None,
      'quarantine_kinds': _quarantine_kind_rows(summary['quarantine_kinds'])
                          if isinstance(summary.get('quarantine_kinds'), Mapping) else None,
      'quarantine_sample': [{k: _fmt(q.get(k)) for k in ('split', 'example_id', 'kind', 'reason')}
                            for q in quarantine_sample],
      'baseline': None if not isinstance(baseline, Mapping) else [
          (str(k), _fmt(v)) for k, v in baseline.items()],
      'drift': _drift_context(summary.get('drift')),
      'slices': _slices_context(slices, class_names),
      'kinds': _kind_counts(summary),
      'kind_rule': _kind_rule(summary),
      'kind_column': any(r.get('kind') is not None for r in flagged),
      'kind_filter': kind_filter(flagged),
  }
  return _TEMPLATE.render(**context)


def _caption(preview: ExamplePreview) -> str:
  example_id = preview.example_id if len(preview.example_id) <= 18 else (
      preview.example_id[:17] + '…')
  label = preview.features.get(MONTAGE_LABEL_FEATURE)
  predicted = preview.features.get(MONTAGE_PREDICTED_FEATURE)
  if label is None and predicted is None:
    return f'#{preview.rank} {example_id}'
  return f'#{preview.rank} {example_id}\n{_fmt(label)} -> {_fmt(predicted)}'


def write_flagged_montage(path: str, previews: Sequence[ExamplePreview],
                          max_examples: int = 24) -> bool:
  """Writes a PNG grid of the top flagged images (rank, id, label->predicted under each); False (and no file) when no preview has an image.

  In: previews (any order; drawn by rank, the first `max_examples` that have an image). The
  caption's label and predicted class come from the preview features `label` and
  `predicted_class` (the line is left out when both are absent); a mismatch is captioned in
  red. `path` is a local path or a URI that tf.io.gfile writes (gs://, ...). Refuses
  max_examples < 1 and unsupported image shapes (ValueError). The file appears whole or
  not at all.
  """
  if max_examples < 1:
    raise ValueError(f'max_examples={max_examples}; give at least 1 image for the montage')
  chosen = sorted((p for p in previews if p.image is not None), key=lambda p: p.rank)
  chosen = chosen[:max_examples]
  if not chosen:
    return False
  cols = min(MONTAGE_COLUMNS, len(chosen))
  rows = math.ceil(len(chosen) / cols)
  fig = Figure(figsize=(cols * 1.7, rows * 2.0), dpi=100)
  FigureCanvasAgg(fig)
  for i, preview in enumerate(chosen):
    pixels = _image_to_uint8(preview.image, f'preview of rank {preview.rank} '
                             f'({preview.example_id!r})')
    ax = fig.add_subplot(rows, cols, i + 1)
    ax.imshow(pixels, cmap='gray' if pixels.ndim == 2 else None, vmin=0, vmax=255,
              interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    wrong = _mismatch(preview.features.get(MONTAGE_LABEL_FEATURE),
                      preview.features.get(MONTAGE_PREDICTED_FEATURE))
    ax.set_xlabel(_caption(preview), fontsize=7, color='#b00020' if wrong else 'black',
                  parse_math=False)
  fig.tight_layout(pad=0.4)
  buf = io.BytesIO()
  fig.savefig(buf, format='png')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buf.getvalue())
  return True


_TEMPLATE = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
    lstrip_blocks=True).from_string('''{% macro slice_row(r) %}\
<tr class="slice-row"><td class="num">{{ r.rank }}</td><td>{{ r.text }}</td><td>{{ r.kind }}</td>\
<td class="num">{{ r.count }}{% if r.approximate %} <span class="approx" title="approximate: a \
sketch&#39;s bound or a histogram&#39;s estimate">&asymp;</span>{% endif %}</td>\
<td class="num">{{ r.in_group }} {{ r.group }}</td><td class="shares"><span class="line">\
<span class="sbar group"><span style="width:{{ r.group_width }}%"></span></span>\
{{ r.group_share }} of {{ r.group }}</span><span class="line"><span class="sbar split"><span \
style="width:{{ r.split_width }}%"></span></span>{{ r.split_share }} of the split</span></td><td\
 class="num lift">{{ r.lift }}</td><td class="num">{{ r.p }}</td></tr>
{% endmacro %}<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>VoG audit {{ created_at }}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f4f6f9}
main{max-width:1200px;margin:0 auto;padding:16px 24px 40px}
header{background:#1d2c4d;color:#fff;padding:18px 24px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c9d3e6}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border-radius:8px;padding:10px 18px;min-width:130px;box-shadow:0 1px 3px #0002}
.card b{display:block;font-size:26px}.card span{color:#5a6478;text-transform:uppercase;font-size:12px}
.card.flagged b{color:#b00020}.card.quarantined b{color:#a15c00}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:14px 0;box-shadow:0 1px 3px #0002}
h2{font-size:17px;margin:4px 0 10px}.grid{display:flex;gap:14px;flex-wrap:wrap}\
.grid section{flex:1;min-width:300px;margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;\
border-bottom:1px solid #e3e7ee;vertical-align:middle}
th{background:#eef1f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.mismatch{background:#fde8eb}tr.mismatch td.label,tr.mismatch td.pred{color:#b00020;font-weight:700}
.badge{display:inline-block;background:#b00020;color:#fff;border-radius:4px;padding:0 5px;\
font-size:11px;margin-left:4px}
.warn{background:#fff4d6;border-left:4px solid #a15c00;padding:8px 12px}
img.thumb{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccd;background:#000;display:block}
.id{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
table.features td{border:0;padding:0 6px 0 0;font-size:12px}
.bar{display:inline-block;vertical-align:middle;background:#e3e7ee;height:12px;width:80px;\
margin-right:6px;border-radius:2px}td.rate{white-space:nowrap}\
.bar div{background:#3d6fd1;height:12px;border-radius:2px}
.na{color:#7a8294}
.drift-cards .card{flex:1;min-width:150px}.drift-cards .card small{display:block;color:#5a6478;font-size:12px}
.drift-cards .card b{font-size:22px}
.up{color:#b00020;font-weight:600}.psi-stable{color:#1b7a3a}\
.psi-moderate{color:#a15c00;font-weight:600}.psi-large{color:#b00020;font-weight:700}
.status{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;white-space:nowrap}
.status.newly_flagged{background:#fde8eb;color:#b00020}\
.status.still_flagged{background:#fff4d6;color:#7a4500}\
.status.new_data,.status.other{background:#e6effc;color:#1d4fa8}
figure.chart{margin:6px 0;overflow-x:auto}figure.chart figcaption{color:#5a6478;font-size:12px}
p.note{color:#5a6478;font-size:12px;margin:6px 0}.chip{display:inline-block;border-radius:8px;\
padding:0 6px;margin:1px;font-size:11px;background:#e6effc;color:#1d4fa8}\
td.agreeing{min-width:160px}details.drift-classes summary{cursor:pointer;margin:10px 0 6px}
{% if slices or kind_column %}
h3{font-size:15px;margin:14px 0 6px}h3 small{color:#5a6478;font-weight:400;font-size:12px}
.sbar{display:inline-block;vertical-align:middle;background:#e3e7ee;height:8px;width:120px;\
margin:1px 6px 1px 0;border-radius:2px}.sbar span{display:block;height:8px;border-radius:2px}\
.sbar.group span{background:#b00020}.sbar.split span{background:#9aa5b8}
td.shares{white-space:nowrap;font-size:12px}td.shares .line{display:block}.approx{color:#a15c00;cursor:help}
.kind-chip{display:inline-block;border-radius:8px;padding:0 7px;font-size:12px;white-space:nowrap}
.kind-chip.wrong-label{background:#fde8eb;color:#b00020}.kind-chip.atypical{background:#e6f4ea;\
color:#1b7a3a}.kind-chip.unclear{background:#eef1f6;color:#3a4256}\
.kind-chip.other{background:#fff4d6;color:#7a4500}
header .kinds b{color:#fff}
input.kind-radio{position:absolute;opacity:0;width:1px;height:1px}\
label.kind-choice{display:inline-block;border:1px solid #ccd3df;border-radius:14px;padding:1px\
 10px;margin:0 6px 8px 0;cursor:pointer;font-size:13px}\
input.kind-radio:checked+label.kind-choice{background:#1d2c4d;color:#fff;border-color:#1d2c4d}\
input.kind-radio:focus-visible+label.kind-choice{outline:2px solid #3d6fd1}
#kind-wrong-label:checked~table.flagged tr.flagged-row:not(.kind-wrong-label),\
#kind-atypical:checked~table.flagged tr.flagged-row:not(.kind-atypical),\
#kind-unclear:checked~table.flagged tr.flagged-row:not(.kind-unclear),\
#kind-other:checked~table.flagged tr.flagged-row:not(.kind-other){display:none}
{% endif %}
</style></head><body>
<header><h1>Variance of Gradients audit</h1><p>created {{ created_at }} &middot; \
{{ flagged_share }} of scored examples flagged for review{% if kinds %} &middot; <span\
 class="kinds">{% for k in kinds %}<b>{{ k.count }}</b> {{ k.kind }}{% if not loop.last %}, {%\
 endif %}{% endfor %}</span>{% endif %}</p></header>
<main>
<section id="drift"><h2>Since the last shipped model</h2>
{% if drift.state == 'none' %}<p class="drift-none">\
No baseline yet: no model has shipped since auditing began, so there is nothing to compare with.</p>
{% elif drift.state == 'unreadable' %}<p class="warn">Drift cannot be shown: {{ drift.reason }}</p>
{% elif drift.state == 'unavailable' %}<p class="warn drift-unavailable">Drift unavailable: {{ drift.reason }}</p>
<p class="note">Baseline (the audit of the last model that shipped): <span class="id">\
{{ drift.baseline.uri }}</span></p>
{% else %}
<p class="note">Against the audit of the last model that shipped: <span class="id">\
{{ drift.baseline.uri }}</span>{% if drift.baseline.created_at %}\
, audited {{ drift.baseline.created_at }}{% endif %}\
. Shares are of scored examples; changes are now minus then, in percentage points (pts).</p>
<div class="cards drift-cards">
<div class="card"><b>{{ drift.flagged_now }}</b><span>flagged now</span>\
<small>was {{ drift.flagged_then }}; {{ drift.flagged_change }}</small></div>
<div class="card"><b>{{ drift.newly_flagged }}</b><span>newly flagged</span>\
<small>in the last shipped model's data, not flagged then</small></div>
<div class="card"><b>{{ drift.still_flagged }}</b><span>still flagged</span>\
<small>{% if drift.longest_streak >= 2 %}flagged then too; the longest for \
{{ drift.longest_streak }} audits in a row{% else %}flagged then too{% endif %}</small></div>
<div class="card"><b>{{ drift.new_data_share }}</b><span>of flagged are new data</span>\
<small>{{ drift.new_data }} of {{ drift.flagged_total }} flagged were not in the last shipped \
model's data</small></div>
<div class="card"><b>{% if drift.top_class %}class {{ drift.top_class.class }} \
({{ drift.top_class.split }}){% else %}none{% endif %}</b><span>largest hard-share rise</span>\
<small>{% if drift.top_class %}hard share {{ drift.top_class.then }} &rarr; \
{{ drift.top_class.now }} ({{ drift.top_class.change }}){% else %}no class&#39;s hard share rose\
{% endif %}</small></div>
</div>
{% if drift.streaks %}<p class="note">Flagged in a row: {% for n, count in drift.streaks %}\
{{ count }} for {{ n }} audits{% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}
{% set c = drift.chart %}{% if c %}<h2>Hard share by class, {{ c.split }} split</h2><figure class="chart">
<svg class="hard-share" width="{{ c.width }}" height="{{ c.height }}" \
viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-label="Hard share by class in the \
{{ c.split }} split: the last shipped model&#39;s audit against now">
<rect x="{{ c.legend_x }}" y="8" width="10" height="10" fill="#9aa5b8"/>\
<text x="{{ c.legend_x + 14 }}" y="17" font-size="12">last shipped</text>
<rect x="{{ c.legend_x + 110 }}" y="8" width="10" height="10" fill="#3d6fd1"/>\
<text x="{{ c.legend_x + 124 }}" y="17" font-size="12">now</text>
{% for t in c.ticks %}<line x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ t.y }}" y2="{{ t.y }}" \
stroke="#e3e7ee"/><text x="{{ c.left - 6 }}" y="{{ t.y + 4 }}" font-size="11" text-anchor="end">\
{{ t.text }}</text>
{% endfor %}
{% for b in c.bars %}<rect class="hs-{{ b.when }}" x="{{ b.x }}" y="{{ b.y }}" width="{{ c.bar }}" \
height="{{ b.h }}" fill="{{ '#9aa5b8' if b.when == 'then' else '#3d6fd1' }}">\
<title>{{ b.title }}</title></rect>
{% endfor %}
<line x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ c.base }}" y2="{{ c.base }}" stroke="#1d2330"/>\
<line x1="{{ c.left }}" x2="{{ c.left }}" y1="{{ c.top }}" y2="{{ c.base }}" stroke="#1d2330"/>
{% for l in c.labels %}<text x="{{ l.x }}" y="{{ c.base + 15 }}" font-size="11" \
text-anchor="middle">{{ l.text }}</text>
{% endfor %}
<text x="{{ c.mid_x }}" y="{{ c.height - 6 }}" font-size="12" text-anchor="middle">class</text>
<text transform="rotate(-90)" x="{{ -c.mid_y }}" y="14" font-size="12" text-anchor="middle">hard share</text>
</svg><figcaption>Hard share: the share of a class&#39;s scored examples among the split&#39;s \
hardest (above the hard cut of {{ ranked_by }}{% if ranked_by == 'vog' %} raw VoG{% endif %}\
 ranked across the split; class normalisation would leave every class about the same share).\
{% if c.splits > 1 %} The per-class table below lists every split.{% endif %}</figcaption></figure>\
{% endif %}
<h2>Per split</h2><table class="drift-splits"><tr><th>split</th><th class="num">flagged then</th>\
<th class="num">now</th><th class="num">change</th><th class="num">hard then</th>\
<th class="num">now</th><th class="num">change</th><th class="num">newly flagged</th>\
<th class="num">still flagged</th><th class="num">flagged new data</th>\
<th class="num">no longer flagged</th></tr>
{% for s in drift.splits %}<tr><td>{{ s.split }}</td><td class="num">{{ s.flagged_then }}</td>\
<td class="num">{{ s.flagged_now }}</td><td class="num">{{ s.flagged_change }}</td>\
<td class="num">{{ s.hard_then }}</td><td class="num">{{ s.hard_now }}</td>\
<td class="num">{{ s.hard_change }}</td><td class="num">{{ s.newly }}</td>\
<td class="num">{{ s.still }}</td><td class="num">{{ s.new_data }}</td>\
<td class="num">{{ s.no_longer }}</td></tr>
{% endfor %}</table>
<p class="note">Examples matched by example_id: {% for s in drift.splits %}\
{{ s.split }} {{ s.matched }} in both, {{ s.new }} new, {{ s.gone }} gone\
{% if not loop.last %}; {% endif %}{% endfor %}.</p>
<details class="drift-classes"{% if drift.classes|length <= 30 %} open{% endif %}><summary><b>\
Per class ({{ drift.classes|length }} rows), largest hard-share rise first</b></summary>
<table class="drift-classes"><tr><th>split</th><th>class</th>\
<th class="num">examples then &rarr; now</th><th class="num">hard share then</th>\
<th class="num">now</th><th class="num">change</th><th class="num">flagged share then</th>\
<th class="num">now</th><th class="num">change</th><th class="num">shift (PSI)</th>\
<th>reading</th></tr>
{% for r in drift.classes %}<tr><td>{{ r.split }}</td><td>{{ r.class }}</td>\
<td class="num">{{ r.count_then }} &rarr; {{ r.count_now }}</td>\
<td class="num">{{ r.hard_then }}</td><td class="num">{{ r.hard_now }}</td>\
<td class="num{% if r.rose %} up{% endif %}">{{ r.hard_change }}</td>\
<td class="num">{{ r.flagged_then }}</td><td class="num">{{ r.flagged_now }}</td>\
<td class="num">{{ r.flagged_change }}</td><td class="num">{{ r.psi }}</td>\
<td class="psi-{{ r.reading if r.reading != 'n/a' else 'na' }}">{{ r.reading }}</td></tr>
{% endfor %}</table>
<p class="note">Shift (PSI): the population stability index of the class&#39;s vog_decile \
histogram now against then. Percentiles are ranks of what ranks the examples ({{ ranked_by }}), so \
they compare across models where raw values do not. Under {{ drift.psi_moderate }} reads as \
stable, {{ drift.psi_moderate }} to {{ drift.psi_large }} as a moderate shift, above \
{{ drift.psi_large }} as a large one.</p></details>
{% endif %}</section>
{% if slices %}<section id="slices"><h2>What the flagged examples have in common</h2>
{% if slices.state == 'unreadable' %}<p class="warn">The slices cannot be shown: {{ slices.reason }}</p>
{% else %}<p class="note">Feature values, numeric ranges, text tokens and label pairs that the\
 flagged examples (or the hard bucket) hold more often than the split does, best first: the share\
 of the group that holds the slice (red bar) against the share of the split (grey bar), their ratio\
 (lift) and the chance of so large a share by luck, adjusted for every slice tried\
 (Benjamini-Hochberg; only slices with an adjusted p-value up to {{ slices.alpha }} are listed).{%\
 if slices.approximate %} <span class="approx">&asymp;</span> marks counts that are a sketch&#39;s\
 bound or a histogram&#39;s estimate.{% endif %}</p>
{% for s in slices.splits %}<h3>{{ s.split }} split <small>{{ s.examples }} examples, {{ s.flagged\
 }} flagged, {{ s.hard }} hard</small></h3>
{% if s.not_examined %}<p class="note slices-not-examined">Features of the {{ s.split }} split were\
 not examined: {{ s.not_examined }}. Its label pairs were.</p>
{% endif %}
{% if s.features %}<table class="slices"><tr><th class="num">rank</th><th>slice</th><th>kind</th>\
<th class="num">in split</th><th class="num">in group</th><th>share of group vs share of split</th>\
<th class="num">lift</th><th class="num">adjusted p</th></tr>
{% for r in s.features %}{{ slice_row(r) }}{% endfor %}</table>
{% endif %}
{% if s.pairs %}<h3>Most confused class pairs, {{ s.split }} split</h3><table class="slices pairs">\
<tr><th class="num">rank</th><th>label pair</th><th>kind</th><th class="num">in split</th><th\
 class="num">in group</th><th>share of group vs share of split</th><th class="num">lift</th><th\
 class="num">adjusted p</th></tr>
{% for r in s.pairs %}{{ slice_row(r) }}{% endfor %}</table>
{% endif %}
{% if not s.features and not s.pairs %}<p class="na">Nothing over-indexes among the flagged or hard\
 examples of this split ({{ s.tests }} tests).</p>
{% endif %}
{% endfor %}{% endif %}</section>
{% endif %}
<div class="cards">
{% for name, value in headline %}<div class="card {{ name }}"><b>{{ value }}</b><span>{{ name }}</span></div>
{% endfor %}</div>
{% if not counts_add_up %}<p class="warn">Counts do not add up: seen is not scored + quarantined. \
Some examples are unaccounted for.</p>{% endif %}
<div class="grid">
<section><h2>Settings</h2><table>\
{% for k, v in settings %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}\
</table></section>
<section><h2>Checkpoints used ({{ checkpoints|length }})</h2><table><tr><th class="num">epoch</th>\
<th class="num">step</th><th>file</th></tr>
{% for c in checkpoints %}<tr><td class="num">{{ c.epoch }}</td><td class="num">{{ c.step }}</td>\
<td class="id">{{ c.file }}</td></tr>
{% endfor %}</table></section>
<section><h2>Per split</h2>{% if splits %}<table><tr><th>split</th><th class="num">seen</th>\
<th class="num">scored</th><th class="num">quarantined</th><th class="num">flagged</th></tr>
{% for s in splits %}<tr><td>{{ s.split }}</td><td class="num">{{ s.seen }}</td>\
<td class="num">{{ s.scored }}</td><td class="num">{{ s.quarantined }}</td>\
<td class="num">{{ s.flagged }}</td></tr>
{% endfor %}</table>{% else %}<p class="na">n/a (not in this summary)</p>{% endif %}
{% if baseline %}<h2>Baseline</h2><table>{% for k, v in baseline %}<tr><th>{{ k }}</th>\
<td class="id">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
</section></div>
<section id="flagged"><h2>Flagged for review ({{ flagged|length }}, ranked by {{ ranked_by }}, most suspect first)</h2>
{% if agreement %}<div class="agreement"><p class="note">\
Which signals agree: a signal agrees with a flag when its own rank across the split puts the \
example among the hardest (above the hard cut). Where the signals that find wrong labels \
(confidence, margin, el2n, loss, VoG) agree, the label is probably wrong; where only variability \
or forgetting agree, the example is more likely atypical but rightly labeled.</p>
<table class="agreement"><tr><th>signal</th><th class="num">agrees on</th><th>share of flagged</th></tr>
{% for a in agreement %}<tr><td>{{ a.name }}{% if a.name == ranked_by %} (ranks){% endif %}</td>\
<td class="num">{{ a.count }}</td><td class="rate"><div class="bar"><div \
style="width:{{ a.width }}%"></div></div>{{ a.share }}</td></tr>
{% endfor %}</table></div>{% endif %}
{% if kind_column %}<p class="note kind-note">Kind of each flag: <b>wrong label</b>, relabel it; \
<b>atypical</b>, the label is right and the example unusual; <b>unclear</b>, the signals do not say\
 which.{% if kind_rule %} Decided by {{ kind_rule.rule }} (memorised: {{ kind_rule.memorised }}){%\
 if kind_rule.reason %}: {{ kind_rule.reason }}{% endif %}.{% endif %}</p>
{% endif %}
{% if kind_filter and flagged %}<input type="radio" name="kind-filter" id="kind-all"\
 class="kind-radio" checked><label for="kind-all" class="kind-choice">all kinds ({{ flagged|length\
 }})</label>
{% for k in kind_filter %}<input type="radio" name="kind-filter" id="kind-{{ k.slug }}"\
 class="kind-radio"><label for="kind-{{ k.slug }}" class="kind-choice">{{ k.text }} ({{ k.count }})\
</label>
{% endfor %}{% endif %}
{% if flagged %}<table class="flagged"><thead><tr><th class="num">rank</th><th>example</th>\
<th>id</th><th>split</th><th>label</th><th>predicted</th>{% if kind_column %}<th>kind</th>\
{% endif %}{% if ranked_by != 'vog' %}\
<th class="num">{{ ranked_by }}</th>{% endif %}<th class="num">VoG score</th>\
<th class="num">VoG raw</th><th class="num">percentile</th><th>bucket</th>{% if agreement %}\
<th>signals that agree</th>{% endif %}{% if moved_column %}<th>gradients moved most (sigma)</th>\
{% endif %}{% if drift_column %}<th>since last shipped</th>{% endif %}</tr></thead><tbody>
{% for r in flagged %}<tr class="flagged-row{% if r.mismatch %} mismatch{% endif %}\
{% if kind_column %} kind-{{ r.kind_slug }}{% endif %}" \
data-rank="{{ r.rank }}"><td class="num">{{ r.rank }}</td>
<td>{% if r.image_uri %}<img class="thumb" src="{{ r.image_uri }}" \
alt="example {{ r.example_id }}" width="64">{% elif r.features %}\
<table class="features">\
{% for k, v in r.features %}<tr><td><b>{{ k }}</b></td><td>{{ v }}</td></tr>{% endfor %}\
</table>{% else %}<span class="na">n/a</span>{% endif %}</td>
<td class="id">{{ r.example_id }}</td><td>{{ r.split }}</td><td class="label">{{ r.label }}</td>\
<td class="pred">{{ r.predicted }}{% if r.mismatch %}\
<span class="badge">label &ne; predicted</span>{% endif %}</td>
{% if kind_column %}<td class="kind">{% if r.kind %}<span class="kind-chip {{ r.kind_slug }}">\
{{ r.kind }}</span>{% else %}<span class="na">n/a</span>{% endif %}</td>{% endif %}\
{% if ranked_by != 'vog' %}<td class="num ranked">{{ r.ranked }}</td>{% endif %}\
<td class="num">{{ r.score }}</td><td class="num">{{ r.raw }}</td>\
<td class="num">{{ r.percentile }}</td><td>{{ r.bucket }}</td>{% if agreement %}\
<td class="agreeing">{% if r.agreeing is not none %}\
<b>{{ r.agreeing|length }} of {{ agreement_total }}</b> {% for a in r.agreeing %}\
<span class="chip">{{ a }}</span>{% endfor %}{% else %}<span class="na">n/a</span>{% endif %}</td>\
{% endif %}{% if moved_column %}<td class="moved">{% for name, value in r.moved %}\
<span class="chip">{{ name }} {{ value }}</span>{% endfor %}</td>{% endif %}{% if drift_column %}\
<td class="drift-status">{% if r.drift %}\
<span class="status {{ r.drift.kind }}">{{ r.drift.text }}</span>\
{% else %}<span class="na">n/a</span>{% endif %}</td>{% endif %}</tr>
{% endfor %}</tbody></table>{% else %}<p class="na">No examples were flagged.</p>{% endif %}</section>
<div class="grid">
<section><h2>Per class, by flagged share</h2>{% if per_class %}<table><tr><th>split</th>\
<th>class</th><th class="num">count</th><th class="num">flagged</th><th>flagged share</th>\
<th class="num">vog_raw mean &plusmn; std</th><th class="num">error rate</th></tr>
{% for c in per_class %}<tr><td>{{ c.split }}</td><td>{{ c.class }}</td>\
<td class="num">{{ c.count }}</td><td class="num">{{ c.flagged }}</td>\
<td class="rate"><div class="bar"><div style="width:{{ c.share_width }}%"></div></div>\
{{ c.share }}</td><td class="num rate">{{ c.raw }}</td><td class="num">{{ c.error_rate }}</td></tr>
{% endfor %}</table>{% else %}<p class="na">n/a (not in this summary)</p>{% endif %}</section>
<section><h2>Error rate by decile of {{ ranked_by }}</h2>{% if deciles %}<table><tr><th>split</th>\
<th class="num">decile</th><th class="num">count</th><th class="num">errors</th>\
<th>error rate (bars scaled to the highest)</th></tr>
{% for d in deciles %}<tr><td>{{ d.split }}</td><td class="num">{{ d.decile }}</td>\
<td class="num">{{ d.count }}</td><td class="num">{{ d.errors }}</td>\
<td class="rate"><div class="bar"><div style="width:{{ d.width }}%"></div></div>{{ d.rate }}</td>\
</tr>
{% endfor %}</table>{% else %}<p class="na">n/a (no labels or predictions in this audit)</p>{% endif %}</section>
</div>
<section id="quarantine"><h2>Quarantined examples (not scored)</h2>
{% if quarantine_kinds %}<table><tr><th>split</th><th>kind</th><th class="num">count</th></tr>
{% for q in quarantine_kinds %}<tr><td>{{ q.split }}</td><td>{{ q.kind }}</td><td class="num">{{ q.count }}</td></tr>
{% endfor %}</table>{% elif quarantine_kinds is none %}\
<p class="na">Kinds: n/a (not in this summary)</p>{% else %}<p>Nothing was quarantined.</p>\
{% endif %}
{% if quarantine_sample %}<h2>Sample ({{ quarantine_sample|length }})</h2><table><tr><th>split</th>\
<th>id</th><th>kind</th><th>reason</th></tr>
{% for q in quarantine_sample %}<tr><td>{{ q.split }}</td><td class="id">{{ q.example_id }}</td>\
<td>{{ q.kind }}</td><td>{{ q.reason }}</td></tr>
{% endfor %}</table>{% endif %}</section>
</main></body></html>
''')
