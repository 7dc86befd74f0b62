"""The review page and the flagged montage, read the way an analyst reads them, and in Chromium."""

import base64
import html.parser
import io

import numpy as np
from PIL import Image
import pytest
from sklearn.datasets import load_digits

import browser
from components.vog import report_html
from components.vog.report_html import ExamplePreview

HOSTILE_ID = '<script>alert("x")</script>'


def _summary():
  per_class = [{'split': 'train', 'class': c, 'count': 120 + c, 'flagged': f,
                'flagged_share': round(f / (120 + c), 4), 'vog_raw_mean': 0.01 + c / 1000,
                'vog_raw_std': 0.004, 'error_rate': 0.05 if c != 8 else None}
               for c, f in zip(range(10), (2, 14, 5, 31, 0, 9, 3, 7, 22, 1))]
  return {
      'format_version': 1, 'created_at': '2026-11-23T16:00:00Z',
      'settings': {'label_key': 'label', 'target': 'loss', 'label_mode': 'label',
                   'normalize': 'class', 'stage': 'complete', 'num_checkpoints': 10,
                   'splits': ['train', 'eval'], 'batch_size': 256, 'inspection_budget': 200,
                   'bucket_percentiles': [50, 90], 'example_id_key': 'example_id'},
      'checkpoints': [{'path': f'/pipelines/run7/vog_checkpoints/ckpt-epoch{e:03d}.keras',
                       'epoch': e, 'step': 32 * e} for e in range(3, 31, 3)],
      'counts': {'seen': 1797, 'scored': 1790, 'quarantined': 7, 'flagged': 200},
      'splits': {'train': {'seen': 1437, 'scored': 1432, 'quarantined': 5, 'flagged': 160},
                 'eval': {'seen': 360, 'scored': 358, 'quarantined': 2, 'flagged': 40}},
      'quarantine_kinds': {'train': {'missing label': 3, 'wrong shape': 2},
                           'eval': {'non-finite feature': 2}},
      'per_class': per_class,
      'error_rate_by_decile': [{'split': 'train', 'decile': d, 'count': 143, 'errors': d * d,
                                'error_rate': round(d * d / 143, 4)} for d in range(1, 11)],
      'baseline': {'artifact_id': 7, 'uri': '/pipelines/run6/difficulty_report'},
      'drift': None,
  }


def _flagged_and_previews(n=12, images=True):
  digits = load_digits()
  flagged, previews = [], []
  for rank in range(1, n + 1):
    label = int(digits.target[rank])
    predicted = (label + 2) % 10 if rank % 3 == 1 else label
    example_id = HOSTILE_ID if rank == 2 else f'digits-{rank:04d}'
    flagged.append({'rank': rank, 'example_id': example_id, 'split': 'train', 'label': label,
                    'predicted_class': predicted, 'target_class': label,
                    'vog_score': 5.0 - rank * 0.1, 'vog_raw': 0.03, 'vog_percentile': 99.9,
                    'vog_bucket': 'hard'})
    features = {'label': str(label), 'predicted_class': str(predicted)}
    image = digits.images[rank] if images else None
    if not images:
      features['pixels'] = '[0.0, 0.0, 5.0, 13.0, ...]'
    previews.append(ExamplePreview(rank, example_id, image, features))
  return flagged, previews


_QUARANTINE = [
    {'split': 'train', 'example_id': 'digits-9001', 'kind': 'missing label',
     'reason': "missing label: no value for 'label'"},
    {'split': 'eval', 'example_id': 'digits-9002', 'kind': 'non-finite feature',
     'reason': 'non-finite feature: pixels has NaN at 17 <b>'},
]


class _FlaggedRows(html.parser.HTMLParser):
  """Rows of the flagged table: (classes, [cell texts], [img srcs])."""

  def __init__(self):
    super().__init__()
    self.rows, self._row, self._depth = [], None, 0

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'tr' and 'flagged-row' in (attrs.get('class') or '') and self._row is None:
      self._row = (attrs['class'].split(), [], [])
    elif self._row is not None and tag == 'td' and self._depth == 0:
      self._row[1].append('')
    elif self._row is not None and tag == 'img':
      self._row[2].append(attrs['src'])
    if self._row is not None and tag == 'table':
      self._depth += 1

  def handle_endtag(self, tag):
    if self._row is None:
      return
    if tag == 'table':
      self._depth -= 1
    elif tag == 'tr' and self._depth == 0:
      classes, cells, srcs = self._row
      self.rows.append((classes, [c.strip() for c in cells], srcs))
      self._row = None

  def handle_data(self, data):
    if self._row is not None and self._row[1] and self._depth == 0:
      self._row[1][-1] += data


def _rows(page):
  parser = _FlaggedRows()
  parser.feed(page)
  return parser.rows


@pytest.fixture(name='page')
def _page():
  flagged, previews = _flagged_and_previews()
  return report_html.render_report(_summary(), flagged, _QUARANTINE, previews)


def test_headline_counts_settings_and_checkpoints_are_on_the_page(page):
  for count, name in (('1,797', 'seen'), ('1,790', 'scored'), ('7', 'quarantined'),
                      ('200', 'flagged')):
    assert f'<b>{count}</b><span>{name}</span>' in page
  assert '2026-11-23T16:00:00Z' in page
  assert '11.2%' in page  # 200 of 1790 scored flagged
  assert '<th>target</th><td>loss</td>' in page
  assert 'ckpt-epoch030.keras' in page and '/pipelines/run7' not in page
  assert 'Checkpoints used (10)' in page
  assert '<td>eval</td><td class="num">360</td>' in page
  assert 'Counts do not add up' not in page


def test_flagged_rows_come_in_rank_order_with_mismatches_highlighted(page):
  rows = _rows(page)
  assert [cells[0] for _, cells, _ in rows] == [str(r) for r in range(1, 13)]
  assert [cells[2] for _, cells, _ in rows][:3] == ['digits-0001', HOSTILE_ID, 'digits-0003']
  mismatched = [cells[0] for classes, cells, _ in rows if 'mismatch' in classes]
  assert mismatched == ['1', '4', '7', '10']
  first = rows[0][1]
  assert first[4] != first[5].replace('label ≠ predicted', '')
  assert 'label ≠ predicted' in first[5] and 'label ≠ predicted' not in rows[1][1][5]


def test_data_from_the_audit_is_escaped(page):
  assert HOSTILE_ID not in page
  assert '&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;' in page
  assert 'NaN at 17 &lt;b&gt;' in page
  assert 'missing label: no value for &#39;label&#39;' in page


def test_images_become_nearest_neighbour_png_data_uris(page):
  digits = load_digits()
  srcs = [src for _, _, imgs in _rows(page) for src in imgs]
  assert len(srcs) == 12 and all(s.startswith('data:image/png;base64,') for s in srcs)
  thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(srcs[0].split(',', 1)[1]))))
  assert thumb.shape == (64, 64)
  expected = np.round(digits.images[1] / 16.0 * 255).astype(np.uint8)
  np.testing.assert_array_equal(thumb, np.kron(expected, np.ones((8, 8), np.uint8)))
  assert 'image-rendering:pixelated' in page


def test_tabular_examples_show_their_features_instead_of_a_thumbnail():
  flagged, previews = _flagged_and_previews(n=3, images=False)
  page = report_html.render_report(_summary(), flagged, [], previews)
  assert 'data:image' not in page
  assert '<td><b>pixels</b></td><td>[0.0, 0.0, 5.0, 13.0, ...]</td>' in page


def test_per_class_is_sorted_by_flagged_share_and_deciles_have_bars(page):
  section = page.split('Per class, by flagged share', 1)[1].split('Error rate by VoG decile')[0]
  classes = [cell.split('</td>')[0] for cell in section.split('<tr><td>train</td><td>')[1:]]
  assert classes[:3] == ['3', '8', '1'] and classes[-1] == '4'
  deciles = page.split('Error rate by VoG decile', 1)[1].split('Quarantined examples')[0]
  assert 'width:100.0%' in deciles and '69.9%' in deciles  # decile 10: 100 errors / 143
  assert '<td>train</td><td>missing label</td><td class="num">3</td>' in page


def test_a_summary_with_only_the_required_keys_still_renders():
  summary = {k: v for k, v in _summary().items() if k in ('settings', 'checkpoints', 'counts')}
  summary['counts'] = {'seen': 10, 'scored': 8, 'quarantined': 1}  # flagged missing too
  page = report_html.render_report(summary, [], [], [])
  assert page.count('n/a') >= 5
  assert 'No examples were flagged.' in page
  assert 'Counts do not add up' in page  # 10 != 8 + 1


def test_a_summary_without_counts_or_a_bad_image_is_refused():
  summary = _summary()
  del summary['counts']
  with pytest.raises(ValueError, match='summary.json has no counts'):
    report_html.render_report(summary, [], [], [])
  flagged, previews = _flagged_and_previews(n=1)
  bad = [previews[0]._replace(image=np.zeros((8, 8, 2)))]
  with pytest.raises(ValueError, match=r"rank 1 \('digits-0001'\).*\(8, 8, 2\)"):
    report_html.render_report(_summary(), flagged, [], bad)


def test_montage_is_a_png_grid_of_the_top_images(tmp_path):
  _, previews = _flagged_and_previews(n=30)
  path = str(tmp_path / 'flagged.png')
  assert report_html.write_flagged_montage(path, previews[::-1], max_examples=24)
  with Image.open(path) as img:
    assert img.format == 'PNG'
    assert 900 <= img.width <= 1200 and 700 <= img.height <= 900  # 6 columns x 4 rows
    pixels = np.asarray(img.convert('RGB'))
  assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
  assert (pixels[..., 0] > pixels[..., 1] + 80).any()  # a mismatch caption in red
  bare = [p._replace(features={}) for p in previews[:2]]
  assert report_html.write_flagged_montage(path, bare)
  with Image.open(path) as img:
    assert img.width < 500 and (np.asarray(img.convert('RGB'))[..., 0] > 200).any()


def test_montage_without_images_writes_nothing(tmp_path):
  _, previews = _flagged_and_previews(n=3, images=False)
  path = tmp_path / 'flagged.png'
  assert report_html.write_flagged_montage(str(path), previews) is False
  assert not path.exists()
  with pytest.raises(ValueError, match='max_examples=0'):
    report_html.write_flagged_montage(str(path), previews, max_examples=0)


def test_chromium_renders_the_page(tmp_path):
  flagged, previews = _flagged_and_previews(n=40)
  page = report_html.render_report(_summary(), flagged, _QUARANTINE, previews)
  html_path = tmp_path / 'report.html'
  html_path.write_text(page, encoding='utf-8')
  png = browser.screenshot(str(html_path), str(tmp_path / 'report.png'),
                           str(tmp_path / 'profile'))
  with Image.open(png) as img:
    assert img.size == (1280, 2000)
    pixels = np.asarray(img.convert('RGB'))
  colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
  non_white = (pixels.min(axis=-1) < 240).mean()
  assert colours > 100, f'screenshot has only {colours} colours'
  assert non_white > 0.05, f'screenshot is {1 - non_white:.1%} white'
  dom = browser.dump_dom(str(html_path), str(tmp_path / 'profile'))
  rows = _rows(dom)
  assert len(rows) == 40
  assert [cells[2] for _, cells, _ in rows[:3]] == ['digits-0001', HOSTILE_ID, 'digits-0003']
  assert '<script>alert' not in dom
