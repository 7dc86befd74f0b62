"""The review page and the flagged montage, read the way an analyst reads them, and in Chromium."""

import base64
import html.parser
import io
import re

import numpy as np
from PIL import Image
import pytest
from sklearn.datasets import load_digits

import browser
from components.vog.report import drift_model
from components.vog import vocabulary as vocab
from components.vog.report import report_html
from components.vog.report.report_html import ExamplePreview

HOSTILE_ID = '<script>alert("x")</script>'
HOSTILE_URI = '/pipelines/<script>alert(1)</script>/difficulty_report'
# eval class: (hard share then, now, PSI); class 3 rose most, class 5 fell.
EVAL_CLASSES = {0: (0.10, 0.10, 0.02), 3: (0.10, 0.22, 0.31), 5: (0.20, 0.15, 0.12)}


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


def _drift(baseline_uri='/pipelines/run6/difficulty_report'):
  """A Drift as the audit writes it: flagged 11.1% -> 13.0%, class 3 of eval hard share up 12 pts."""
  per_class = [drift_model.DriftClass(
      'eval', c, 40, 40, 0.1, 0.1, hard_share_now=now, hard_share_then=then,
      psi=psi) for c, (then, now, psi) in EVAL_CLASSES.items()]
  per_class.append(drift_model.DriftClass(
      'train', 3, count_now=120, count_then=118, flagged_share_now=0.12, flagged_share_then=0.1,
      hard_share_now=0.15, hard_share_then=0.1, psi=0.04))
  splits = (
      drift_model.DriftSplit('train', 0.112, 0.1, 0.2, 0.18, 1400, 32, 5,
                             newly_flagged=30, still_flagged=20, no_longer_flagged=9,
                             flagged_new_data=110, flagged_new_data_share=110 / 160),
      drift_model.DriftSplit('eval', 0.13, 0.111, 0.2, 0.18, 350, 8, 0,
                             newly_flagged=10, still_flagged=5, no_longer_flagged=2,
                             flagged_new_data=25, flagged_new_data_share=25 / 40))
  return drift_model.Drift(baseline_uri, '2026-11-20T09:00:00Z', None, 0.130, 0.111,
                           splits, tuple(per_class), {2: 18, 3: 6, 4: 1})


def _drift_summary(drift=None):
  return dict(_summary(), format_version=3, drift=(drift or _drift()).to_json())


def _with_statuses(flagged):
  """Flagged rows as an audit with a baseline writes them: each says how it stands now."""
  statuses = [(vocab.NEW_DATA, 1), (vocab.NEWLY_FLAGGED, 1),
              (vocab.STILL_FLAGGED, 4), (vocab.STILL_FLAGGED, 2)]
  return [dict(row, drift_status=statuses[i % 4][0], flagged_streak=statuses[i % 4][1])
          for i, row in enumerate(flagged)]


def _drift_section(page):
  return page.split('<section id="drift">', 1)[1].split('</section>', 1)[0]


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
  section = page.split('Per class, by flagged share', 1)[1].split('Error rate by decile of vog')[0]
  classes = [cell.split('</td>')[0] for cell in section.split('<tr><td>train</td><td>')[1:]]
  assert classes[:3] == ['3', '8', '1'] and classes[-1] == '4'
  deciles = page.split('Error rate by decile of vog', 1)[1].split('Quarantined examples')[0]
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
  page = report_html.render_report(_drift_summary(), _with_statuses(flagged), _QUARANTINE,
                                   previews)
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
  assert [cells[-1] for _, cells, _ in rows[:3]] == [
      'new data', 'newly flagged', 'still flagged (4 audits in a row)']
  assert '<script>alert' not in dom
  # The browser parsed the chart as SVG: six bars, first on the page after the title.
  assert len(_svg(_drift_section(dom)).bars) == 6
  assert dom.index('id="drift"') < dom.index('class="cards"')


class _Svg(html.parser.HTMLParser):
  """The drift chart's bars ({'when', 'height', 'title'}) and its text labels."""

  def __init__(self):
    super().__init__()
    self.svgs, self.bars, self.texts, self._in = 0, [], [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'svg':
      self.svgs += 1
    elif tag == 'rect' and (attrs.get('class') or '').startswith('hs-'):
      self.bars.append({'when': attrs['class'][3:], 'height': float(attrs['height']),
                        'title': ''})
    self._in = tag

  def handle_endtag(self, tag):
    self._in = None

  def handle_data(self, data):
    if self._in == 'title' and self.bars:
      self.bars[-1]['title'] += data
    elif self._in == 'text':
      self.texts.append(data)


def _svg(page):
  parser = _Svg()
  parser.feed(page)
  return parser


def _visible_text(fragment):
  text = []
  parser = html.parser.HTMLParser()
  parser.handle_data = text.append
  parser.feed(fragment)
  return ' '.join(' '.join(text).split())


def test_since_the_last_shipped_model_opens_the_page_with_its_headline():
  flagged, previews = _flagged_and_previews(n=4)
  page = report_html.render_report(_drift_summary(), flagged, [], previews)
  main = page.split('<main>', 1)[1]
  assert main.lstrip().startswith('<section id="drift"><h2>Since the last shipped model</h2>')
  assert main.index('Since the last shipped model') < main.index('<div class="cards">')
  text = _visible_text(_drift_section(page))
  assert '/pipelines/run6/difficulty_report , audited 2026-11-20T09:00:00Z' in text
  assert '13.0% flagged now was 11.1%; +1.9 pts' in text
  assert '40 newly flagged' in text  # 30 in train + 10 in eval
  assert '25 still flagged flagged then too; the longest for 4 audits in a row' in text
  assert '67.5% of flagged are new data 135 of 200 flagged' in text
  assert ('class 3 (eval) largest hard-share rise hard share 10.0% → 22.0% (+12.0 pts)'
          in text)
  assert 'Flagged in a row: 18 for 2 audits, 6 for 3 audits, 1 for 4 audits.' in text
  assert 'Drift against baseline' not in page


def test_hard_share_chart_is_inline_svg_of_the_eval_split_then_and_now():
  page = report_html.render_report(_drift_summary(), [], [], [])
  section = _drift_section(page)
  assert 'Hard share by class, eval split' in section
  chart = _svg(section)
  assert chart.svgs == 1
  # Two bars per eval class in class order, then before now; train's class is not drawn.
  assert [(b['when'], b['title']) for b in chart.bars] == [
      ('then', 'class 0, last shipped: 10.0% hard'), ('now', 'class 0, now: 10.0% hard'),
      ('then', 'class 3, last shipped: 10.0% hard'), ('now', 'class 3, now: 22.0% hard'),
      ('then', 'class 5, last shipped: 20.0% hard'), ('now', 'class 5, now: 15.0% hard')]
  heights = [b['height'] for b in chart.bars]
  assert heights[3] == pytest.approx(2.2 * heights[2], abs=0.2)  # to scale: 22% against 10%
  assert heights[4] == pytest.approx(2.0 * heights[0], abs=0.2)
  assert max(heights) > 100  # tall enough to read
  assert {'last shipped', 'now', 'class', 'hard share', '0.0%'} <= set(chart.texts)
  assert {'0', '3', '5'} <= set(chart.texts)
  # Self-contained: no script and nothing fetched from elsewhere.
  assert '<script' not in page and 'http://' not in page and 'https://' not in page


def test_chart_falls_back_to_the_first_split_without_eval():
  drift = _drift()
  drift = drift_model.Drift(drift.baseline_uri, None, None, 0.13, 0.111,
                            drift.splits[:1], drift.per_class[-1:], {})
  section = _drift_section(report_html.render_report(_drift_summary(drift), [], [], []))
  assert 'Hard share by class, train split' in section
  assert [b['title'] for b in _svg(section).bars] == [
      'class 3, last shipped: 10.0% hard', 'class 3, now: 15.0% hard']
  assert 'audited' not in section  # no creation time known for the baseline
  assert 'in a row' not in section  # nothing has been flagged twice in a row


def _class_rows(section):
  rows = section.split('<table class="drift-classes">', 1)[1].split('</table>', 1)[0]
  return [[_visible_text(cell) for cell in row.split('</td>')[:-1]]
          for row in rows.split('<tr>')[2:]]


def test_per_class_table_gives_the_shift_statistic_and_its_reading():
  section = _drift_section(report_html.render_report(_drift_summary(), [], [], []))
  rows = _class_rows(section)
  # Largest hard-share rise first.
  assert [(r[0], r[1]) for r in rows] == [('eval', '3'), ('train', '3'), ('eval', '0'),
                                          ('eval', '5')]
  assert rows[0] == ['eval', '3', '40 → 40', '10.0%', '22.0%', '+12.0 pts', '10.0%', '10.0%',
                     '+0.0 pts', '0.310', 'large']
  assert [(r[9], r[10]) for r in rows] == [('0.310', 'large'), ('0.040', 'stable'),
                                           ('0.020', 'stable'), ('0.120', 'moderate')]
  assert rows[3][5] == '-5.0 pts'
  text = _visible_text(section)
  assert 'shift (PSI)' in text
  assert ('population stability index of the class\'s vog_decile histogram now against then'
          in text)
  assert 'Under 0.1 reads as stable, 0.1 to 0.25 as a moderate shift, above 0.25 as a large one' \
      in text
  assert [report_html.psi_reading(v) for v in (0.0, 0.099, 0.1, 0.25, 0.2501, float('nan'))] \
      == ['stable', 'stable', 'moderate', 'moderate', 'large', 'n/a']


def test_per_split_table_counts_what_changed():
  section = _drift_section(report_html.render_report(_drift_summary(), [], [], []))
  table = section.split('<table class="drift-splits">', 1)[1].split('</table>', 1)[0]
  rows = [[_visible_text(c) for c in row.split('</td>')[:-1]] for row in table.split('<tr>')[2:]]
  assert rows == [
      ['train', '10.0%', '11.2%', '+1.2 pts', '18.0%', '20.0%', '+2.0 pts', '30', '20', '110',
       '9'],
      ['eval', '11.1%', '13.0%', '+1.9 pts', '18.0%', '20.0%', '+2.0 pts', '10', '5', '25', '2']]
  assert 'train 1,400 in both, 32 new, 5 gone; eval 350 in both, 8 new, 0 gone' in \
      _visible_text(section)


def test_unavailable_drift_says_why_and_shows_no_numbers():
  drift = drift_model.Drift(
      '/pipelines/run6/difficulty_report', None,
      'the baseline report /pipelines/run6 has format_version 2; drift needs 3 <or later>',
      None, None, (), (), {})
  section = _drift_section(report_html.render_report(_drift_summary(drift), [], [], []))
  assert ('Drift unavailable: the baseline report /pipelines/run6 has format_version 2; drift '
          'needs 3 &lt;or later&gt;') in section
  assert '/pipelines/run6/difficulty_report' in section
  assert '<svg' not in section and 'flagged now' not in section and 'PSI' not in section


def test_no_baseline_is_one_line():
  page = report_html.render_report(_summary(), [], [], [])  # drift: null
  section = _drift_section(page)
  assert _visible_text(section) == (
      'Since the last shipped model No baseline yet: no model has shipped since auditing began, '
      'so there is nothing to compare with.')
  del_drift = {k: v for k, v in _summary().items() if k != 'drift'}
  assert _drift_section(report_html.render_report(del_drift, [], [], [])) == section
  assert 'Drift against baseline' not in page


def test_an_unreadable_drift_is_shown_not_refused():
  summary = dict(_summary(), drift={'baseline': {'uri': 7}})
  section = _drift_section(report_html.render_report(summary, [], [], []))
  assert 'Drift cannot be shown: summary.json, drift, baseline: &#39;uri&#39; is an integer' \
      in section


def test_flagged_rows_say_how_they_stand_against_the_last_shipped_model():
  flagged, previews = _flagged_and_previews(n=5)
  page = report_html.render_report(_drift_summary(), _with_statuses(flagged), [], previews)
  assert '<th>since last shipped</th>' in page
  assert [cells[-1] for _, cells, _ in _rows(page)] == [
      'new data', 'newly flagged', 'still flagged (4 audits in a row)',
      'still flagged (2 audits in a row)', 'new data']
  # Without a baseline the rows carry no status and the column is left out.
  plain = report_html.render_report(_summary(), flagged, [], previews)
  assert 'since last shipped' not in plain
  assert [len(cells) for _, cells, _ in _rows(plain)] == [10] * 5


def test_text_from_the_drift_is_escaped():
  drift = _drift(baseline_uri=HOSTILE_URI)
  flagged, previews = _flagged_and_previews(n=1)
  flagged = [dict(flagged[0], drift_status='<b>odd</b>', flagged_streak=3)]
  page = report_html.render_report(_drift_summary(drift), flagged, [], previews)
  assert '<script>alert(1)' not in page and '<b>odd</b>' not in page
  assert '/pipelines/&lt;script&gt;alert(1)&lt;/script&gt;/difficulty_report' in page
  assert '<span class="status other">&lt;b&gt;odd&lt;/b&gt;</span>' in page
  unavailable = drift_model.Drift(HOSTILE_URI, None, f'cannot read {HOSTILE_URI}', None, None,
                                  (), (), {})
  page = report_html.render_report(_drift_summary(unavailable), [], [], [])
  assert '<script>' not in page
  assert page.count('&lt;script&gt;alert(1)&lt;/script&gt;') == 2


def test_a_signal_ranked_report_shows_the_signal_and_which_signals_agree():
  flagged, previews = _flagged_and_previews(n=4)
  agree = [['confidence', 'margin_mean', 'el2n', 'vog'], ['confidence', 'variability'],
           ['confidence', 'margin_mean'], ['confidence']]
  for row, names in zip(flagged, agree):
    row['signals'] = {f: 0.5 for f in vocab.SIGNAL_FIELDS}
    row['signals']['audit_confidence'] = 0.01 * row['rank']
    row['agreeing'] = names
  page = report_html.render_report(dict(_summary(), ranked_by='confidence'), flagged, [],
                                   previews)
  assert 'ranked by confidence, most suspect first' in page
  assert 'Error rate by decile of confidence' in page
  rows = _rows(page)
  # rank, example, id, split, label, predicted, confidence, VoG score, ...
  assert [cells[6] for _, cells, _ in rows] == ['0.01', '0.02', '0.03', '0.04']
  assert rows[0][1][-1].startswith('4 of 8') and 'el2n' in rows[0][1][-1]
  assert rows[3][1][-1] == '1 of 8 confidence'
  table = page.split('<table class="agreement">', 1)[1].split('</table>', 1)[0]
  counts = re.findall(r'<tr><td>([a-z0-9_]+)(?: \(ranks\))?</td><td class="num">(\d+)</td>',
                      table)
  assert counts[:2] == [('confidence', '4'), ('margin_mean', '2')]
  assert {n for n, c in counts[2:5]} == {'el2n', 'variability', 'vog'}
  assert dict(counts)['forgetting'] == '0' and len(counts) == 8


def test_a_vog_ranked_report_without_signals_has_no_agreement_column(page):
  assert 'ranked by vog' in page and 'signals that agree' not in page
  assert '<table class="agreement">' not in page


def test_tabular_rows_show_where_their_gradients_moved_most():
  flagged, previews = _flagged_and_previews(n=2, images=False)
  flagged[0]['top_sigma'] = [['numeric[2]', 0.031], ['color_embedding', 0.0042]]
  page = report_html.render_report(_summary(), flagged, [], previews)
  assert 'gradients moved most (sigma)' in page
  rows = _rows(page)
  assert rows[0][1][-1] == 'numeric[2] 0.031color_embedding 0.0042'
  assert rows[1][1][-1] == ''
  # Text and tabular features are shown as their values, not as a thumbnail.
  assert '<table class="features">' in page and 'pixels' in page


def _slices(feature='region', value='r3'):
  """slices.json's content as the audit writes it (compute/slice_stats.slice_rows): train
  examined (a value, a range, a token, a label pair), eval not copied (a label pair)."""
  from components.vog.compute import slice_stats as ss  # pylint: disable=g-import-not-at-top

  def split(features, candidates, sizes):
    rows, tests = ss.slice_rows(candidates, ss.GroupSizes(*sizes))
    return {'examples': sizes[0], 'flagged': sizes[1], 'hard': sizes[2],
            'features': features, 'tests': tests, 'rows': rows}

  train = [ss.SliceCounts(feature, ss.CATEGORICAL, value, 130, 42, 20, False),
           ss.SliceCounts('income_k', ss.NUMERIC, '[3, 7.5)', 100, 30, 12, True, 3.0, 7.5),
           ss.SliceCounts('text', ss.TOKEN, 'news', 90, 35, 15, False),
           ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, '3 -> 5', 25, 20, 10, False,
                          classes=(3, 5))]
  eval_ = [ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, '3 -> 8', 10, 8, 6, False,
                          classes=(3, 8))]
  return {'format_version': 1, 'settings': {'alpha': 0.05, 'min_support': 5},
          'splits': {'train': split('examined', train, (1000, 200, 100)),
                     'eval': split('not examined: the split is not copied', eval_,
                                   (300, 40, 30))}}


def _slices_section(page):
  return page.split('<section id="slices">', 1)[1].split('</section>', 1)[0]


def _slice_rows(fragment):
  """[(rank, slice, kind, in split, in group, shares, lift, adjusted p)] of slice tables."""
  rows = []
  for row in fragment.split('<tr class="slice-row">')[1:]:
    cells = row.split('</tr>', 1)[0].split('</td>')[:-1]
    rows.append(tuple(_visible_text(c) for c in cells))
  return rows


def test_what_the_flagged_examples_have_in_common_comes_before_the_examples():
  flagged, previews = _flagged_and_previews(n=3)
  page = report_html.render_report(_drift_summary(), flagged, [], previews, slices=_slices())
  main = page.split('<main>', 1)[1]
  assert main.lstrip().startswith('<section id="drift">')  # the drift still opens the page
  assert (main.index('id="drift"') < main.index('What the flagged examples have in common')
          < main.index('<div class="cards">') < main.index('Flagged for review'))
  section = _slices_section(page)
  train = section.split('<h3>train split', 1)[1].split('<h3>eval split', 1)[0]
  assert 'train split 1,000 examples, 200 flagged, 100 hard' in _visible_text(
      '<h3>train split' + train)
  features, pairs = train.split('Most confused class pairs, train split')
  # Ranked by adjusted p-value across the split: the label pair is rank 1.
  assert _slice_rows(features) == [
      ('2', 'token "news" in text', 'token', '90', '35 of 200 flagged',
       '17.5% of flagged 9.0% of the split', '1.9×', '4.3e-05'),
      ('3', 'region = r3', 'value', '130', '42 of 200 flagged',
       '21.0% of flagged 13.0% of the split', '1.6×', '0.0005'),
      ('4', 'income_k in [3, 7.5)', 'range', '100 ≈', '30 of 200 flagged',
       '15.0% of flagged 10.0% of the split', '1.5×', '0.013')]
  assert _slice_rows(pairs) == [
      ('1', 'labelled 3, predicted 5', 'label pair', '25', '20 of 200 flagged',
       '10.0% of flagged 2.5% of the split', '4.0×', '7.7e-10')]
  # The bars are scaled to the split's largest share (21.0% of flagged is a full bar).
  assert 'class="sbar group"><span style="width:100.0%">' in features
  assert 'approximate: a sketch&#39;s bound' in features
  eval_ = _visible_text(section.split('<h3>eval split', 1)[1])
  assert ('Features of the eval split were not examined: the split is not copied. Its label '
          'pairs were.') in eval_
  assert 'Most confused class pairs, eval split' in eval_
  assert 'labelled 3, predicted 8 label pair 10 8 of 40 flagged' in eval_
  assert 'only slices with an adjusted p-value up to 0.05 are listed' in _visible_text(section)


def test_label_pairs_name_their_classes_where_the_summary_knows_them():
  summary = dict(_summary(), class_names=[f'class-{c}' for c in range(10)])
  page = report_html.render_report(summary, [], [], [], slices=_slices())
  assert 'labelled class-3 (3), predicted class-5 (5)' in page


def test_a_split_where_nothing_stands_out_says_so():
  slices = _slices()
  slices['splits']['eval'].update(rows=[], features='examined', tests=4)
  section = _visible_text(_slices_section(report_html.render_report(
      _summary(), [], [], [], slices=slices)))
  assert ('eval split 300 examples, 40 flagged, 30 hard Nothing over-indexes among the flagged '
          'or hard examples of this split (4 tests).') in section


def test_slice_values_from_the_data_are_escaped_and_clipped():
  long_value = 'v' * 5000
  page = report_html.render_report(_summary(), [], [], [], slices=_slices(
      feature=HOSTILE_ID, value='<img src=x onerror=alert(1)>'))
  assert '<script>alert' not in page and '<img src=x' not in page
  assert ('&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; = &lt;img src=x '
          'onerror=alert(1)&gt;') in page
  page = report_html.render_report(_summary(), [], [], [], slices=_slices(value=long_value))
  assert 'v' * 5000 not in page
  assert f'region = {"v" * (report_html.SLICE_TEXT_LIMIT - 1)}…' in page


def test_unreadable_slices_are_shown_not_refused():
  slices = _slices()
  slices['splits']['train']['rows'][1]['kind'] = '<b>odd</b>'
  section = _slices_section(report_html.render_report(_summary(), [], [], [], slices=slices))
  assert 'The slices cannot be shown: slices.json, splits[&#39;train&#39;], rows[1]: has ' \
         '&#39;kind&#39; &#39;&lt;b&gt;odd&lt;/b&gt;&#39;; expected one of' in section


def _with_kinds(flagged):
  """Rows as an audit with kinds writes them: the mismatched ones wrong labels."""
  return [dict(row, kind='wrong label' if row['label'] != row['predicted_class'] else
               ('atypical' if i % 2 else 'unclear')) for i, row in enumerate(flagged)]


def _kinds_summary():
  return dict(_summary(), flag_kinds={'train': {'wrong label': 150, 'atypical': 20,
                                                'unclear': 30},
                                      'eval': {'wrong label': 10, 'atypical': 0,
                                               'unclear': 30}},
              flag_kind_rule={'rule': 'margin_mean', 'memorised': False,
                              'reason': 'the model has not memorised its training labels'})


def test_each_flag_shows_its_kind_and_the_header_counts_them():
  flagged, previews = _flagged_and_previews(n=6)
  page = report_html.render_report(_kinds_summary(), _with_kinds(flagged), [], previews)
  header = _visible_text(page.split('<header>', 1)[1].split('</header>', 1)[0])
  assert header.endswith('flagged for review · 160 wrong label, 20 atypical, 60 unclear')
  rows = _rows(page)
  # rank, example, id, split, label, predicted, kind, ...
  assert [cells[6] for _, cells, _ in rows] == [
      'wrong label', 'atypical', 'unclear', 'wrong label', 'unclear', 'atypical']
  assert [c for c in rows[0][0] if c.startswith('kind-')] == ['kind-wrong-label']
  assert '<span class="kind-chip wrong-label">wrong label</span>' in page
  note = _visible_text(page.split('class="note kind-note">', 1)[1].split('</p>', 1)[0])
  assert note.endswith('Decided by margin_mean (memorised: no): the model has not memorised '
                       'its training labels.')
  # The kind filter: one choice per kind the rows hold, with its count, all checked first.
  choices = re.findall(r'<input type="radio" name="kind-filter" id="kind-([a-z-]+)" '
                       r'class="kind-radio"( checked)?><label for="kind-\1" '
                       r'class="kind-choice">([^<]+)</label>', page)
  assert [(slug, checked, ' '.join(text.split())) for slug, checked, text in choices] == [
      ('all', ' checked', 'all kinds (6)'), ('wrong-label', '', 'wrong label (2)'),
      ('atypical', '', 'atypical (2)'), ('unclear', '', 'unclear (2)')]


def test_a_report_without_kinds_or_slices_has_neither():
  flagged, previews = _flagged_and_previews(n=3)
  page = report_html.render_report(_summary(), flagged, [], previews)
  assert 'kind-filter' not in page and 'kind-chip' not in page and 'id="slices"' not in page
  assert '.kind-chip' not in page  # not even their style
  assert [len(cells) for _, cells, _ in _rows(page)] == [10] * 3


def test_unknown_kinds_and_hostile_kind_counts_are_escaped():
  flagged, previews = _flagged_and_previews(n=2)
  flagged[0]['kind'] = '<i>new</i>'
  summary = dict(_summary(), flag_kinds={'train': {'<i>new</i>': 1, 'wrong label': 1}})
  page = report_html.render_report(summary, flagged, [], previews)
  assert '<i>new</i>' not in page
  assert '<span class="kind-chip other">&lt;i&gt;new&lt;/i&gt;</span>' in page
  assert '<b>1</b> &lt;i&gt;new&lt;/i&gt;' in page
  assert [cells[6] for _, cells, _ in _rows(page)] == ['<i>new</i>', 'n/a']
  bad = dict(_summary(), flag_kinds={'train': {'wrong label': 'many'}})
  header = report_html.render_report(bad, [], [], []).split('</header>')[0]
  assert 'kinds cannot be shown: summary.json: flag_kinds[&#39;train&#39;][&#39;wrong ' \
         'label&#39;] is a string' in header


def _pink_pixels(png):
  with Image.open(png) as img:
    pixels = np.asarray(img.convert('RGB')).reshape(-1, 3)
  return int((pixels == (0xfd, 0xe8, 0xeb)).all(axis=1).sum())


def test_chromium_filters_the_flagged_rows_by_kind_without_javascript(tmp_path):
  """The mismatched rows (pink) are the wrong labels: choosing `atypical` hides them all."""
  flagged, previews = _flagged_and_previews(n=12)
  page = report_html.render_report(_kinds_summary(), _with_kinds(flagged), [], previews,
                                   slices=_slices())
  assert '<script' not in page.lower()
  shown = tmp_path / 'all.html'
  shown.write_text(page, encoding='utf-8')
  chosen = tmp_path / 'atypical.html'  # as after a click on `atypical`
  chosen.write_text(page.replace('class="kind-radio" checked>', 'class="kind-radio">').replace(
      'id="kind-atypical" class="kind-radio">', 'id="kind-atypical" class="kind-radio" checked>'),
                    encoding='utf-8')
  pink = [_pink_pixels(browser.screenshot(str(p), str(tmp_path / f'{p.stem}.png'),
                                          str(tmp_path / 'profile'), height=4000))
          for p in (shown, chosen)]
  assert pink[0] > 10000 and pink[1] == 0, pink
  dom = browser.dump_dom(str(shown), str(tmp_path / 'profile'))
  assert len(_rows(dom)) == 12
  section = _slices_section(dom)
  assert len(_slice_rows(section)) == 5 and '<script>' not in section
