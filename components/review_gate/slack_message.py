"""The Slack review message: Block Kit blocks within Slack's limits, data escaped for mrkdwn.

Everything shown comes from files others write (example IDs, class names, split names, paths,
the drift reason, slice features and values, kinds), so each value is put on one line,
shortened, and escaped before it enters the message: `&`, `<` and `>` as Slack's entities
(no mention, link or `<!channel>` can be injected), and a backtick inside code, or anywhere
in the slices line, as `ˋ` (U+02CB), since mrkdwn has no way to escape one and a bare
backtick would open or end a code span. Lists (worst classes, top flagged examples) keep
whole lines up to the block's limit and say how many more the report holds.

Slack refuses a message whose blocks break a limit (`invalid_blocks`); these are the limits:
header text 150 characters, section text 3,000, each of at most 10 section fields 2,000, a
context element's text 3,000 (this message keeps to 2,000), 50 blocks. `check_limits` lists
what breaks them, and `build` asserts that nothing does.
"""

from typing import Dict, List, Optional, Sequence, Tuple

from components.review_gate import decision as decision_lib
from components.review_gate import review_summary

HEADER_LIMIT = 150
SECTION_TEXT_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
CONTEXT_LIMIT = 2000
MAX_BLOCKS = 50
TEXT_LIMIT = 3000  # the notification text; Slack truncates at 40,000 and advises 4,000
ID_LIMIT = 80  # characters of one example ID, class or split name
PATH_LIMIT = 300
DRIFT_LIMIT = 1000
SLICES_LIMIT = 1500  # the slices headline, escaped; each feature and value is shortened first
KINDS_LIMIT = 300  # the kinds headline, escaped
ELLIPSIS = '…'


def shorten(text: str, limit: int) -> str:
  """`text` on one line and at most `limit` characters, ending in … when cut."""
  text = review_summary.one_line(str(text))
  return text if len(text) <= limit else text[:limit - 1] + ELLIPSIS


def escape(value, limit: int = ID_LIMIT) -> str:
  """Data as mrkdwn text: one line, shortened to `limit`, then &, < and > escaped."""
  text = shorten(value, limit)
  return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def escape_within(value, limit: int) -> str:
  """`escape`d data of at most `limit` characters once escaped (an escaped `&`, `<` or `>`
  takes four or five), cut shorter where the entities need the room."""
  cut = limit
  while True:
    text = escape(value, cut)
    if len(text) <= limit or cut <= 1:
      return text[:limit]
    cut -= max(1, (len(text) - limit) // 4)


def code(value, limit: int = ID_LIMIT) -> str:
  """Data as inline code: backticks replaced (they would end the span), then `escape`d."""
  return '`' + escape(str(value).replace('`', '\u02cb'), limit) + '`'


def fit_lines(title: str, lines: Sequence[str], limit: int, more: str) -> str:
  """`title` and as many whole `lines` as fit in `limit`, then `more` with the count left."""
  text = title
  for i, line in enumerate(lines):
    tail = '\n' + more.format(len(lines) - i - 1) if i < len(lines) - 1 else ''
    if len(text) + 1 + len(line) + len(tail) > limit:
      return text + '\n' + more.format(len(lines) - i)
    text += '\n' + line
  return text


def _link(url: str, label: str) -> str:
  """A link, or the URL as code when it holds what would break Slack's <url|label> syntax."""
  if len(url) > PATH_LIMIT * 3 or any(c in url for c in '<>| \t\r\n') or '://' not in url:
    return code(url, PATH_LIMIT)
  return f'<{url.replace("&", "&amp;")}|{label}>'


def _mentions(users: Sequence[str], limit: int) -> str:
  """`<@U1>, <@U2>` for as many whole mentions as fit in `limit`, then how many more."""
  shown = []
  for i, user in enumerate(users):
    if len(', '.join(shown + [f'<@{user}>'])) > limit - 20:
      return ', '.join(shown) + f' and {len(users) - i} more'
    shown.append(f'<@{user}>')
  return ', '.join(shown)


def build(summary: review_summary.ReviewSummary, review_id: str, approvers: Sequence[str],
          timeout_seconds: float, deadline_at: Optional[float] = None,
          quorum: int = 1) -> Tuple[str, List[Dict]]:
  """Returns (notification text, Block Kit blocks) of the review message.

  The drift headline (review_summary.drift_headline) says what changed since the last shipped
  model, or why there is nothing to compare with; a report with slices or kinds adds a block
  with what the flagged examples have in common (review_summary.slices_headline) and how
  many flags are of each kind (review_summary.kinds_headline); the context block states the
  grammar and the decision rule.
  """
  c = summary.counts
  by = (f'by {decision_lib.iso_time(deadline_at)} ({timeout_seconds:g}s after this message)'
        if deadline_at else f'within {timeout_seconds:g}s of this message')
  acc = review_summary.format_accuracy
  more = '…and {} more in the report'
  classes = fit_lines('*Worst classes by flagged share*', [
      f'• class {escape(r.get("class"))} ({escape(r.get("split"))}): '
      f'{escape(r.get("flagged"))}/{escape(r.get("count"))} flagged '
      f'({100.0 * float(r.get("flagged_share") or 0):.1f}%)'
      for r in summary.worst_classes] or ['_no per-class statistics_'],
                      SECTION_TEXT_LIMIT, more)
  examples = fit_lines(
      f'*Top flagged examples* (ranked by {escape(summary.ranked_by)})', [
          f'{escape(r.get("rank"))}. {code(r.get("example_id"))} ({escape(r.get("split"))}) '
          f'label {escape(r.get("label"))}, predicted {escape(r.get("predicted_class"))}, '
          f'{escape(review_summary.flagged_line(r, summary.ranked_by), 200)}'
          for r in summary.top_flagged] or ['_none flagged_'], SECTION_TEXT_LIMIT, more)
  who = _mentions(approvers, 1000)
  need = 'an approver approves' if quorum == 1 else f'{quorum} approvers approve'
  drift = escape(review_summary.drift_headline(summary.drift), DRIFT_LIMIT)
  pipeline = escape(summary.pipeline, HEADER_LIMIT)
  text = (f'Model review `{review_id}` for {pipeline}: {c["flagged"]} of '
          f'{c["scored"]} examples flagged. {drift.rstrip(".")}. Reply "approve" or '
          '"reject: <why>" in the thread.')
  report = (_link(summary.report_url, 'open the review page') if summary.report_url
            else '_no link_')
  blocks = [
      {'type': 'header', 'text': {'type': 'plain_text',
                                  'text': shorten(f'Model review: {summary.pipeline}',
                                                  HEADER_LIMIT)}},
      {'type': 'section', 'fields': [
          {'type': 'mrkdwn', 'text': f'*Run*\n{escape(summary.run_id, PATH_LIMIT)}'},
          {'type': 'mrkdwn', 'text': f'*Model*\n{code(summary.model_uri, PATH_LIMIT)} '
                                     f'(id {escape(summary.model_id)})'},
          {'type': 'mrkdwn', 'text': (f'*Examples*\n{c["seen"]} seen, {c["scored"]} scored, '
                                      f'{c["quarantined"]} quarantined, {c["flagged"]} flagged')},
          {'type': 'mrkdwn', 'text': (f'*Evaluator accuracy*\noverall '
                                      f'{acc(summary.overall_accuracy)}, hard slice '
                                      f'{acc(summary.hard_accuracy)}')},
      ]},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': drift}},
      *_findings_block(summary),
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': classes}},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': examples}},
      {'type': 'section', 'text': {'type': 'mrkdwn', 'text': f'*Report*: {report}'}},
      {'type': 'context', 'elements': [{'type': 'mrkdwn', 'text': (
          f'To approve, reply in this thread with exactly `approve` or react :white_check_mark:. '
          f'To reject, start a reply with `reject` (or no, not, stop, veto, block, decline) and '
          f'your reason, or react :x:. The model ships only when {need} and no approver '
          f'rejects; any approver\'s rejection stops it, whenever it comes. Edited or deleted '
          f'replies do not count. Approvers: {who}. Review `{review_id}`; no decision {by} '
          'means not blessed.')}]},
  ]
  problems = check_limits(text, blocks)
  if problems:
    raise AssertionError('the review message breaks Slack\'s limits: ' + '; '.join(problems))
  return text, blocks


def _findings_block(summary: review_summary.ReviewSummary) -> List[Dict]:
  """The block of the slices and kinds headlines; none for a report that has neither."""
  lines = []
  shared = review_summary.slices_headline(summary.slices)
  if shared is not None:
    lines.append(escape_within(shared.replace('`', '\u02cb'), SLICES_LIMIT))
  kinds = review_summary.kinds_headline(summary.flag_kinds)
  if kinds is not None:
    lines.append(escape_within(kinds, KINDS_LIMIT))
  if not lines:
    return []
  return [{'type': 'section', 'text': {'type': 'mrkdwn', 'text': '\n'.join(lines)}}]


def check_limits(text: str, blocks: Sequence[Dict]) -> List[str]:
  """What in a message breaks Slack's limits (see the module docstring), e.g.
  'block 5: section text has 20435 characters, more than 3000'; [] when nothing does."""
  problems = []
  if len(text) > TEXT_LIMIT:
    problems.append(f'the text has {len(text)} characters, more than {TEXT_LIMIT}')
  if len(blocks) > MAX_BLOCKS:
    problems.append(f'{len(blocks)} blocks, more than {MAX_BLOCKS}')
  for i, block in enumerate(blocks, 1):
    kind = block.get('type')
    items = []
    if kind == 'header':
      items.append(('header text', block['text']['text'], HEADER_LIMIT))
    if kind == 'section':
      if 'text' in block:
        items.append(('section text', block['text']['text'], SECTION_TEXT_LIMIT))
      fields = block.get('fields') or []
      if len(fields) > MAX_FIELDS:
        problems.append(f'block {i}: {len(fields)} fields, more than {MAX_FIELDS}')
      items += [('section field', f['text'], FIELD_LIMIT) for f in fields]
    if kind == 'context':
      items += [('context element', e.get('text', ''), CONTEXT_LIMIT)
                for e in block.get('elements') or []]
    for what, value, limit in items:
      if len(value) > limit:
        problems.append(f'block {i}: {what} has {len(value)} characters, more than {limit}')
  return problems

