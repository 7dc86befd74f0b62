"""The review page of a VoG audit (`report.html`) and a PNG montage of the flagged images.

Pure Python (jinja2, NumPy, Pillow, matplotlib): the executor and `vog-audit report` both call
`render_report` with what the audit wrote (summary.json, flagged.jsonl, a quarantine sample) and
one `ExamplePreview` per flagged example. The page is one self-contained HTML string: CSS inline,
images as data: URIs, no JavaScript, so it opens from an artifact store or a mail attachment.
"""

import base64
import io
import math
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

import jinja2
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from components.vog import report_format

THUMBNAIL_PX = 64  # small digits (8x8) are upscaled by whole pixels to about this size
MAX_THUMBNAIL_PX = 128  # larger images are shrunk to fit, so 200 previews keep the page light
MONTAGE_COLUMNS = 6
# write_flagged_montage reads the caption's "label -> predicted" from these preview features.
MONTAGE_LABEL_FEATURE = 'label'
MONTAGE_PREDICTED_FEATURE = 'predicted_class'
NA = 'n/a'
_REQUIRED_SUMMARY_KEYS = report_format.REQUIRED_SUMMARY_KEYS
_HEADLINE_COUNTS = report_format.HEADLINE


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


def _flagged_rows(flagged: Sequence[Mapping[str, Any]],
                  previews: Sequence[ExamplePreview]) -> List[Dict[str, Any]]:
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
        'score': _fmt(row.get(report_format.VOG_SCORE), '.3f'),
        'raw': _fmt(row.get(report_format.VOG_RAW), '.3g'),
        'percentile': _fmt(row.get(report_format.VOG_PERCENTILE), '.1f'),
        'bucket': _fmt(row.get(report_format.VOG_BUCKET)),
        'image_uri': image_uri,
        'features': sorted(preview.features.items()) if preview and image_uri is None else [],
    })
  return rows


def _per_class_rows(per_class: Sequence[Mapping[str, Any]]) -> List[Dict[str, str]]:
  def key(row):
    share = row.get('flagged_share')
    return (-share if _is_number(share) else math.inf, str(row.get('split')), str(row.get('class')))
  return [{
      'split': _fmt(r.get('split')), 'class': _fmt(r.get('class')), 'count': _fmt(r.get('count')),
      'flagged': _fmt(r.get(report_format.FLAGGED)), 'share': _pct(r.get('flagged_share')),
      'share_width': _bar_width(r.get('flagged_share'), 1.0),
      'raw': (f"{_fmt(r.get(report_format.VOG_RAW_MEAN), '.3g')} ± "
              f"{_fmt(r.get(report_format.VOG_RAW_STD), '.2g')}"),
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


def _check_summary(summary: Any) -> None:
  name = report_format.SUMMARY_FILE
  if not isinstance(summary, Mapping):
    raise ValueError(f'summary must be the mapping read from {name}, got '
                     f'{type(summary).__name__}')
  missing = [k for k in _REQUIRED_SUMMARY_KEYS if k not in summary]
  if missing:
    raise ValueError(f'{name} has no {", ".join(missing)}; the report needs '
                     f'{", ".join(_REQUIRED_SUMMARY_KEYS)} - rerun the audit to rebuild it')
  for key, kind in ((report_format.SETTINGS, Mapping), (report_format.COUNTS, Mapping),
                    (report_format.CHECKPOINTS, list)):
    if not isinstance(summary[key], kind):
      raise ValueError(f"{name} '{key}' is a {type(summary[key]).__name__}; expected "
                       f"{'an object' if kind is Mapping else 'a list'}")


def render_report(summary: Mapping[str, Any], flagged: Sequence[Mapping[str, Any]],
                  quarantine_sample: Sequence[Mapping[str, Any]],
                  previews: Sequence[ExamplePreview]) -> str:
  """The self-contained review page (one HTML string, no external resources: CSS inline, images as data: URIs).

  In: `summary` as in summary.json (settings, checkpoints and counts are required; every other
  key may be missing and shows as n/a), `flagged` rows of flagged.jsonl highest score first,
  up to ~50 rows of the quarantine shards, and previews matched to flagged rows by rank. Everything
  from the data is HTML-escaped. Refuses a summary without settings/checkpoints/counts and a
  preview image of an unsupported shape (ValueError naming it).
  """
  _check_summary(summary)
  counts = summary[report_format.COUNTS]
  seen, scored, quarantined = (counts.get(k) for k in (
      report_format.SEEN, report_format.SCORED, report_format.QUARANTINED))
  flagged_count = counts.get(report_format.FLAGGED)
  counts_add_up = not all(_is_number(v) for v in (seen, scored, quarantined)) or (
      seen == scored + quarantined)
  splits = summary.get('splits')
  baseline = summary.get('baseline')
  drift = summary.get('drift')
  context = {
      'created_at': _fmt(summary.get('created_at')),
      'headline': [(k, _fmt(counts.get(k))) for k in _HEADLINE_COUNTS],
      'counts_add_up': counts_add_up,
      'flagged_share': _pct(flagged_count / scored) if _is_number(flagged_count)
                       and _is_number(scored) and scored else NA,
      'settings': [(str(k), _fmt(v)) for k, v in summary[report_format.SETTINGS].items()],
      'checkpoints': [{'epoch': _fmt(c.get('epoch')), 'step': _fmt(c.get('step')),
                       'file': _file_name(c.get('path'))}
                      for c in summary[report_format.CHECKPOINTS] if isinstance(c, Mapping)],
      'splits': None if not isinstance(splits, Mapping) else [
          {'split': str(name), **{k: _fmt((v or {}).get(k)) for k in _HEADLINE_COUNTS}}
          for name, v in splits.items()],
      'flagged': _flagged_rows(flagged, previews),
      'per_class': _per_class_rows(summary['per_class']) if summary.get('per_class') else None,
      'deciles': _decile_rows(summary['error_rate_by_decile'])
                 if summary.get('error_rate_by_decile') else None,
      'quarantine_kinds': _quarantine_kind_rows(summary['quarantine_kinds'])
                          if isinstance(summary.get('quarantine_kinds'), Mapping) else None,
      'quarantine_sample': [{k: _fmt(q.get(k)) for k in ('split', 'example_id', 'kind', 'reason')}
                            for q in quarantine_sample],
      'baseline': None if not isinstance(baseline, Mapping) else [
          (str(k), _fmt(v)) for k, v in baseline.items()],
      'drift': None if not isinstance(drift, Mapping) else [
          (str(k), _fmt(v)) for k, v in drift.items()],
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
  red. `path` is a local file: write remote artifacts through a local copy. Refuses
  max_examples < 1 and unsupported image shapes (ValueError). The file appears whole or not at all.
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
  with open(path, 'wb') as f:
    f.write(buf.getvalue())
  return True


_TEMPLATE = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
    lstrip_blocks=True).from_string('''<!DOCTYPE html>
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
h2{font-size:17px;margin:4px 0 10px}.grid{display:flex;gap:14px;flex-wrap:wrap}.grid section{flex:1;min-width:300px;margin:0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e7ee;vertical-align:middle}
th{background:#eef1f6;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.mismatch{background:#fde8eb}tr.mismatch td.label,tr.mismatch td.pred{color:#b00020;font-weight:700}
.badge{display:inline-block;background:#b00020;color:#fff;border-radius:4px;padding:0 5px;font-size:11px;margin-left:4px}
.warn{background:#fff4d6;border-left:4px solid #a15c00;padding:8px 12px}
img.thumb{image-rendering:pixelated;image-rendering:crisp-edges;border:1px solid #ccd;background:#000;display:block}
.id{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
table.features td{border:0;padding:0 6px 0 0;font-size:12px}
.bar{display:inline-block;vertical-align:middle;background:#e3e7ee;height:12px;width:80px;margin-right:6px;border-radius:2px}td.rate{white-space:nowrap}.bar div{background:#3d6fd1;height:12px;border-radius:2px}
.na{color:#7a8294}
</style></head><body>
<header><h1>Variance of Gradients audit</h1><p>created {{ created_at }} &middot; {{ flagged_share }} of scored examples flagged for review</p></header>
<main>
<div class="cards">
{% for name, value in headline %}<div class="card {{ name }}"><b>{{ value }}</b><span>{{ name }}</span></div>
{% endfor %}</div>
{% if not counts_add_up %}<p class="warn">Counts do not add up: seen is not scored + quarantined. Some examples are unaccounted for.</p>{% endif %}
<div class="grid">
<section><h2>Settings</h2><table>{% for k, v in settings %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table></section>
<section><h2>Checkpoints used ({{ checkpoints|length }})</h2><table><tr><th class="num">epoch</th><th class="num">step</th><th>file</th></tr>
{% for c in checkpoints %}<tr><td class="num">{{ c.epoch }}</td><td class="num">{{ c.step }}</td><td class="id">{{ c.file }}</td></tr>
{% endfor %}</table></section>
<section><h2>Per split</h2>{% if splits %}<table><tr><th>split</th><th class="num">seen</th><th class="num">scored</th><th class="num">quarantined</th><th class="num">flagged</th></tr>
{% for s in splits %}<tr><td>{{ s.split }}</td><td class="num">{{ s.seen }}</td><td class="num">{{ s.scored }}</td><td class="num">{{ s.quarantined }}</td><td class="num">{{ s.flagged }}</td></tr>
{% endfor %}</table>{% else %}<p class="na">n/a (not in this summary)</p>{% endif %}
{% if baseline %}<h2>Baseline</h2><table>{% for k, v in baseline %}<tr><th>{{ k }}</th><td class="id">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if drift %}<h2>Drift against baseline</h2><table>{% for k, v in drift %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
</section></div>
<section id="flagged"><h2>Flagged for review ({{ flagged|length }}, highest score first)</h2>
{% if flagged %}<table class="flagged"><thead><tr><th class="num">rank</th><th>example</th><th>id</th><th>split</th><th>label</th><th>predicted</th><th class="num">score</th><th class="num">raw</th><th class="num">percentile</th><th>bucket</th></tr></thead><tbody>
{% for r in flagged %}<tr class="flagged-row{% if r.mismatch %} mismatch{% endif %}" data-rank="{{ r.rank }}"><td class="num">{{ r.rank }}</td>
<td>{% if r.image_uri %}<img class="thumb" src="{{ r.image_uri }}" alt="example {{ r.example_id }}" width="64">{% elif r.features %}<table class="features">{% for k, v in r.features %}<tr><td><b>{{ k }}</b></td><td>{{ v }}</td></tr>{% endfor %}</table>{% else %}<span class="na">n/a</span>{% endif %}</td>
<td class="id">{{ r.example_id }}</td><td>{{ r.split }}</td><td class="label">{{ r.label }}</td><td class="pred">{{ r.predicted }}{% if r.mismatch %}<span class="badge">label &ne; predicted</span>{% endif %}</td>
<td class="num">{{ r.score }}</td><td class="num">{{ r.raw }}</td><td class="num">{{ r.percentile }}</td><td>{{ r.bucket }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p class="na">No examples were flagged.</p>{% endif %}</section>
<div class="grid">
<section><h2>Per class, by flagged share</h2>{% if per_class %}<table><tr><th>split</th><th>class</th><th class="num">count</th><th class="num">flagged</th><th>flagged share</th><th class="num">vog_raw mean &plusmn; std</th><th class="num">error rate</th></tr>
{% for c in per_class %}<tr><td>{{ c.split }}</td><td>{{ c.class }}</td><td class="num">{{ c.count }}</td><td class="num">{{ c.flagged }}</td><td class="rate"><div class="bar"><div style="width:{{ c.share_width }}%"></div></div>{{ c.share }}</td><td class="num rate">{{ c.raw }}</td><td class="num">{{ c.error_rate }}</td></tr>
{% endfor %}</table>{% else %}<p class="na">n/a (not in this summary)</p>{% endif %}</section>
<section><h2>Error rate by VoG decile</h2>{% if deciles %}<table><tr><th>split</th><th class="num">decile</th><th class="num">count</th><th class="num">errors</th><th>error rate (bars scaled to the highest)</th></tr>
{% for d in deciles %}<tr><td>{{ d.split }}</td><td class="num">{{ d.decile }}</td><td class="num">{{ d.count }}</td><td class="num">{{ d.errors }}</td><td class="rate"><div class="bar"><div style="width:{{ d.width }}%"></div></div>{{ d.rate }}</td></tr>
{% endfor %}</table>{% else %}<p class="na">n/a (no labels or predictions in this audit)</p>{% endif %}</section>
</div>
<section id="quarantine"><h2>Quarantined examples (not scored)</h2>
{% if quarantine_kinds %}<table><tr><th>split</th><th>kind</th><th class="num">count</th></tr>
{% for q in quarantine_kinds %}<tr><td>{{ q.split }}</td><td>{{ q.kind }}</td><td class="num">{{ q.count }}</td></tr>
{% endfor %}</table>{% elif quarantine_kinds is none %}<p class="na">Kinds: n/a (not in this summary)</p>{% else %}<p>Nothing was quarantined.</p>{% endif %}
{% if quarantine_sample %}<h2>Sample ({{ quarantine_sample|length }})</h2><table><tr><th>split</th><th>id</th><th>kind</th><th>reason</th></tr>
{% for q in quarantine_sample %}<tr><td>{{ q.split }}</td><td class="id">{{ q.example_id }}</td><td>{{ q.kind }}</td><td>{{ q.reason }}</td></tr>
{% endfor %}</table>{% endif %}</section>
</main></body></html>
''')
