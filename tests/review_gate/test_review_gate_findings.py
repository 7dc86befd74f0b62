"""What the flagged examples share and the kinds of the flags, as a reviewer sees them in Slack.

The review message carries one line of the top slices of each split (slices.json) and one of
the kinds (summary.json's `flag_kinds`); both come from files others write, so every value is
put on one line, shortened and escaped, and the message stays within Slack's limits. A report
of an older release, without either, posts the message as before.
"""

import json
import os

import review_gate_support as support

from components.review_gate import review_summary
from components.review_gate import slack_message
from components.vog.compute import slice_stats as ss
from components.vog.report import report_format

ALICE = 'U0ALICE'
HOSTILE = 'r`3`<!channel> <@U0ALICE> *bold* &amp;'


def _slices(feature='region', value='r3', long_tail=0):
  """slices.json's content as the audit writes it: train with a value, a range and a label
  pair; eval with a token; `long_tail` more values in train."""
  def split(candidates, sizes, features='examined'):
    rows, tests = ss.slice_rows(candidates, ss.GroupSizes(*sizes))
    return {'examples': sizes[0], 'flagged': sizes[1], 'hard': sizes[2],
            'features': features, 'tests': tests, 'rows': rows}

  train = [ss.SliceCounts(feature, ss.CATEGORICAL, value, 130, 42, 20, False),
           ss.SliceCounts('income_k', ss.NUMERIC, '>= 7.5', 100, 30, 12, True, 7.5, None),
           ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, '3 -> 5', 25, 20, 10, False,
                          classes=(3, 5))]
  train += [ss.SliceCounts(f'f{i}', ss.CATEGORICAL, value, 100, 40, 20, False)
            for i in range(long_tail)]
  eval_ = [ss.SliceCounts('text', ss.TOKEN, 'news', 30, 20, 6, False)]
  return {'format_version': 1, 'settings': {'alpha': 0.05},
          'splits': {'train': split(train, (1000, 200, 100), 'examined'),
                     'eval': split(eval_, (300, 40, 30))}}


KINDS = {'train': {'wrong label': 120, 'atypical': 30, 'unclear': 10},
         'eval': {'wrong label': 0, 'atypical': 0, 'unclear': 40}}


def _summary(slices=None, flag_kinds=None, **changes):
  summary = review_summary.ReviewSummary(
      pipeline='digits', run_id='run-1', model_uri='/m/1', model_id=11, report_uri='/r/5',
      report_url='https://reports.example.com/5', counts=dict(support.SUMMARY['counts']),
      splits={}, worst_classes=[], top_flagged=[dict(r) for r in support.FLAGGED],
      slices=None if slices is None else report_format.parse_slices(slices),
      flag_kinds=(None if flag_kinds is None
                  else report_format.flag_kind_totals({'flag_kinds': flag_kinds})))
  for name, value in changes.items():
    setattr(summary, name, value)
  return summary


def _findings(blocks):
  return [b['text']['text'] for b in blocks if b['type'] == 'section' and 'text' in b
          and b['text']['text'].startswith(('What the flagged share', 'flags: '))]


def test_the_headlines_name_the_top_slices_and_count_the_kinds():
  summary = _summary(_slices(), KINDS)
  assert review_summary.slices_headline(summary.slices) == (
      'What the flagged share: train: label 3 -> predicted 5 (4.0x, 20 of 200 flagged), '
      'region=r3 (1.6x, 42 of 200 flagged); eval: "news" in text (5.0x, 20 of 40 flagged)')
  assert review_summary.kinds_headline(summary.flag_kinds) == (
      'flags: 120 wrong label, 30 atypical, 50 unclear')
  quiet = _slices()
  for entry in quiet['splits'].values():
    entry['rows'] = []
  assert review_summary.slices_headline(report_format.parse_slices(quiet)) == (
      'What the flagged share: no slice stands out among the flagged or hard examples')
  assert review_summary.slices_headline(None) is None
  assert review_summary.kinds_headline(None) is None


def test_slack_shows_one_block_of_slices_and_kinds_and_each_examples_kind():
  summary = _summary(_slices(), KINDS)
  summary.top_flagged[0]['kind'] = 'wrong label'
  text, blocks = slack_message.build(summary, '3fa9c21b-1', [ALICE], 60.0)
  assert slack_message.check_limits(text, blocks) == []
  [block] = _findings(blocks)
  assert block == (
      'What the flagged share: train: label 3 -&gt; predicted 5 (4.0x, 20 of 200 flagged), '
      'region=r3 (1.6x, 42 of 200 flagged); eval: "news" in text (5.0x, 20 of 40 flagged)\n'
      'flags: 120 wrong label, 30 atypical, 50 unclear')
  order = [b['text']['text'][:20] for b in blocks if b['type'] == 'section' and 'text' in b]
  assert order[0].startswith('First audit') and order[1].startswith('What the flagged')
  [top] = [b['text']['text'] for b in blocks if 'Top flagged' in json.dumps(b)]
  assert '1. `digit-0412` (train) label 8, predicted 1, score 4.20, wrong label' in top


def test_hostile_slice_values_are_escaped_and_shortened():
  summary = _summary(_slices(feature=HOSTILE * 100, value=HOSTILE + 'v' * 5000),
                     {'train': {'wrong label': 1, '<!here> `x`' * 50: 2}})
  text, blocks = slack_message.build(summary, '3fa9c21b-1', [ALICE], 60.0)
  assert slack_message.check_limits(text, blocks) == []
  [block] = _findings(blocks)
  rendered = json.dumps(blocks, ensure_ascii=False)
  assert '<!channel>' not in rendered and '<@U0ALICE> *' not in rendered
  assert '<!here>' not in rendered
  slices_line, kinds_line = block.split('\n')
  assert '`' not in slices_line  # no value can open a code span
  assert 'r\u02cb3\u02cb&lt;!channel&gt; &lt;@U0ALICE&gt; *bold* &amp;amp;' in slices_line
  # Each feature and value is cut to its limit ...
  assert 'v' * review_summary.SLICE_VALUE_LIMIT not in slices_line
  assert slices_line.count('…') == 2  # the region row's feature and value
  # ... and many slices to the block's.
  many = _summary(_slices(feature=HOSTILE * 100, value=HOSTILE + 'v' * 5000, long_tail=60))
  line = slack_message.escape_within(review_summary.slices_headline(many.slices, top=60),
                                     slack_message.SLICES_LIMIT)
  assert len(line) <= slack_message.SLICES_LIMIT and line.endswith('…')
  assert '<!channel>' not in line
  assert kinds_line.startswith('flags: 1 wrong label, 0 atypical, 0 unclear, 2 &lt;!here&gt;')
  assert len(kinds_line) <= slack_message.KINDS_LIMIT


def test_a_line_of_characters_slack_escapes_still_fits_its_block():
  summary = _summary(_slices(feature='<' * 5000, value='&' * 5000, long_tail=60),
                     {'train': {'>' * 5000: 1}})
  text, blocks = slack_message.build(summary, '3fa9c21b-1', [ALICE], 60.0)
  assert slack_message.check_limits(text, blocks) == []
  slices_line, kinds_line = _findings(blocks)[0].split('\n')
  assert '&amp;' * 10 in slices_line and len(slices_line) <= slack_message.SLICES_LIMIT
  assert kinds_line.startswith('flags: 0 wrong label, 0 atypical, 0 unclear, 1 &gt;&gt;')
  assert len(kinds_line) <= slack_message.KINDS_LIMIT
  assert '<' not in slices_line + kinds_line and '&&' not in slices_line


def test_an_older_report_posts_no_findings_block():
  _, blocks = slack_message.build(_summary(), '3fa9c21b-1', [ALICE], 60.0)
  assert _findings(blocks) == []
  assert not [b for b in blocks if 'flags:' in json.dumps(b)]


def test_the_gate_reads_slices_and_kinds_from_the_report_and_posts_them(tmp_path, slack):
  slack.auto_replies = [(ALICE, 'approve')]
  report = os.path.join(str(tmp_path), 'VarianceOfGradients', 'difficulty_report', '5')
  support.write_report(report, with_montage=False, flagged=[
      dict(support.FLAGGED[0], kind='wrong label'), dict(support.FLAGGED[1], kind='atypical')])
  with open(os.path.join(report, 'summary.json')) as f:
    summary = json.load(f)
  with open(os.path.join(report, 'summary.json'), 'w') as f:
    json.dump(dict(summary, flag_kinds=KINDS), f)
  with open(os.path.join(report, 'slices.json'), 'w') as f:
    json.dump(_slices(value=HOSTILE), f)
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      slack_api_url=slack.api_url), with_montage=False)
  assert blessing.get_string_custom_property('review_decision') == 'approved'
  [post] = slack.top_level_posts()
  [block] = _findings(post['params']['blocks'])
  assert block.startswith('What the flagged share: train: label 3 -&gt; predicted 5 (4.0x, '
                          '20 of 200 flagged), region=r\u02cb3\u02cb&lt;!channel&gt;')
  assert block.endswith('\nflags: 120 wrong label, 30 atypical, 50 unclear')
  assert 'predicted 5, score 3.90, atypical' in json.dumps(post['params']['blocks'])


def test_a_hostile_slices_file_stops_the_gate_naming_it(tmp_path):
  report = os.path.join(str(tmp_path), 'VarianceOfGradients', 'difficulty_report', '5')
  support.write_report(report, with_montage=False)
  content = _slices()
  content['splits']['train']['rows'][0]['count'] = '<!channel>'
  with open(os.path.join(report, 'slices.json'), 'w') as f:
    json.dump(content, f)
  try:
    review_summary.build_summary(
        report_uri=report, model_uri='/m', model_id=1, report_id=5, pipeline='p', run_id='r',
        evaluation_uri=None, report_url_template=None)
  except ValueError as e:
    message = str(e)
  else:
    raise AssertionError('a slices.json with a text count was read')
  assert message.startswith(os.path.join(report, 'slices.json') + ", splits['train'], rows[0]")
  assert "'count' is a string ('<!channel>')" in message
