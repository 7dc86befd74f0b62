"""`vog-audit review`: list reviews, answer the ones HumanReviewGate(backend='local') waits on,
and keep analysts' verdicts on flagged examples.

    vog-audit review list [--all]
    vog-audit review approve ID --by NAME [--comment TEXT]
    vog-audit review reject ID --by NAME [--comment TEXT]
    vog-audit review mark EXAMPLE_ID VERDICT --report DIR --by NAME [--label N] [--note TEXT]
    vog-audit review verdicts [--report DIR] [--all]
    vog-audit review export --format csv|jsonl --output FILE
    vog-audit review serve --report DIR --by NAME [--port P]

Reviews live in `<pipeline root>/reviews` (override with --reviews-dir). Only the gate's
approvers may answer, once each, before the review's deadline; the gate checks each answer
against its own approvers again when it reads it, and decides when `quorum` of them approved
and none rejected. Files in the folder that are not review records are skipped with a warning
on stderr. Everything printed from a record is terminal-safe (control characters shown as
escapes). Bad input, and a folder that cannot be read or written, exit 2 with one line.

Verdicts (`wrong label` with the right class, `correct`, `ambiguous`, `exclude`) live in
`<pipeline root>/verdicts` (override with --verdicts-dir), one file per verdict; the latest
verdict on an example supersedes the earlier ones (see components/review_gate/verdicts.py).
Only approvers give verdicts and only theirs are listed and exported: the names in
--approvers, or else the approvers of the gate's reviews in the reviews folder (of the report,
for `mark`, `verdicts --report` and `serve`).

`serve` opens the review workspace (components/review_gate/review_app.py): a page on
http://127.0.0.1:PORT/ (a free port unless --port says which) to walk the report's flagged
examples, give verdicts with the keys or the mouse, and approve or reject the model in the
report's pending local review, as NAME. It prints the URL to open, with the token every
request needs; Ctrl-C or SIGTERM stops it.
"""

import os
from typing import List, Optional, Sequence, Tuple

import click

from components.review_gate import backends
from components.review_gate import local_backend
from components.review_gate import review_record
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import verdicts as verdicts_lib
from components.vog import vocabulary as vocab
from pipeline.cli import fail

DEFAULT_PIPELINE_ROOT = os.path.join('demo_output', 'pipeline')
_show = review_summary.terminal_safe


def _fail(message: str):
  fail(_show(review_summary.one_line(message)))


def _store(pipeline_root: str, reviews_dir: str,
           allow_empty: bool = False) -> review_store.ReviewStore:
  folder = reviews_dir or review_store.default_reviews_dir(pipeline_root)
  # A pipeline root whose gate has not asked yet has no reviews, which is not a mistake.
  known_root = os.path.isdir(reviews_dir or pipeline_root)
  if not os.path.isdir(folder) and not (allow_empty and known_root):
    _fail(f'no reviews folder at {folder}; pass --pipeline-root of the pipeline whose gate is '
          'waiting (or --reviews-dir)')
  try:
    return review_store.ReviewStore(folder)
  except review_store.ReviewStoreError as e:
    _fail(str(e))


def _location_options(fn):
  # readable=False: a folder that cannot be read is reported by the store, in one line.
  fn = click.option('--reviews-dir', default=None,
                    type=click.Path(file_okay=False, readable=False),
                    help='Folder of review files; default <pipeline root>/reviews.')(fn)
  return click.option('--pipeline-root', default=DEFAULT_PIPELINE_ROOT, show_default=True,
                      type=click.Path(file_okay=False, readable=False),
                      help='Pipeline root the gate runs under.')(fn)


@click.group()
def review():
  """List model reviews, answer local ones, and keep verdicts on flagged examples."""


@review.command('list')
@_location_options
@click.option('--all', 'show_all', is_flag=True, help='Also show closed reviews.')
def list_reviews(pipeline_root, reviews_dir, show_all):
  """Show pending reviews: ID, status, model, headline counts, drift, who may answer."""
  store = _store(pipeline_root, reviews_dir, allow_empty=True)
  records = _read(store, lambda: store.list(include_closed=show_all))
  if not records:
    click.echo(_show(f'no {"" if show_all else "pending "}reviews in {store.reviews_dir}'))
    return
  for r in records:
    for line in _describe(r):
      click.echo(_show(line))


def _describe(r: review_record.ReviewRecord) -> List[str]:
  """The lines `review list` prints for one record (made terminal-safe by the caller).

  Every value from the record is made terminal-safe on its own, so that a line break or an
  escape sequence in a field shows as `\\x0a` or `\\x1b` instead of forging the listing.
  """
  f = review_summary.terminal_safe
  counts = r.headline.get('counts') or {}
  state = r.decision.decision if r.closed and r.decision else r.status
  lines = [f'{r.review_id}  {state:<9} {r.backend}  {r.created_at}  pipeline '
           f'{f(r.pipeline) or "-"}  model #{r.model_id} {f(r.model_uri)}']
  flagged, scored, quarantined = (counts.get(k, '?') for k in (
      vocab.FLAGGED, vocab.SCORED, vocab.QUARANTINED))
  lines.append(f'    {flagged} flagged of {scored} scored, {quarantined} quarantined; report '
               f'{f(r.headline.get("report_url", "-"))}')
  drift = r.headline.get('drift')
  if drift:
    lines.append(f'    {f(drift)}')
  if r.decision and r.closed:
    d = r.decision
    who = f' by {f(d.reviewer)}' if d.reviewer else ''
    note = f': {f(d.comment)}' if d.comment else ''
    lines.append(f'    {d.decision}{who} at {f(d.reviewed_at)}{note}')
  try:
    lines.append('    ' + f(backends.get(r.backend).where_to_answer(r)))
  except ValueError:
    pass  # a record of a backend this version lacks is skipped by the store before this
  return lines


def _answer(approve: bool, review_id, by, comment, pipeline_root, reviews_dir):
  store = _store(pipeline_root, reviews_dir)
  try:
    record = local_backend.answer(store, review_id, approve=approve, by=by,
                                  comment=comment or '')
  except review_store.ReviewStoreError as e:
    _fail(str(e))
  verdict = 'approved' if approve else 'rejected'
  if record.status == review_record.PENDING:
    given = sum(a['verdict'] == 'approved' for a in record.state['answers'])
    click.echo(_show(f'review {record.review_id}: {by.strip()} {verdict}; {given} of the '
                     f'{record.quorum} approvals needed so far, the gate waits for more'))
  else:
    click.echo(_show(f'review {record.review_id} {record.status} by {by.strip()}; the waiting '
                     'gate picks it up at its next poll'))


@review.command()
@click.argument('review_id')
@click.option('--by', default='', help='Who approves (one of the gate\'s approvers).')
@click.option('--comment', default='', help='Why, for the record.')
@_location_options
def approve(review_id, by, comment, pipeline_root, reviews_dir):
  """Approve pending review REVIEW_ID; with enough approvals and no rejection, it blesses."""
  _answer(True, review_id, by, comment, pipeline_root, reviews_dir)


@review.command()
@click.argument('review_id')
@click.option('--by', default='', help='Who rejects (one of the gate\'s approvers).')
@click.option('--comment', default='', help='Why, for the record and the next training run.')
@_location_options
def reject(review_id, by, comment, pipeline_root, reviews_dir):
  """Reject pending review REVIEW_ID: the gate does not bless the model."""
  _answer(False, review_id, by, comment, pipeline_root, reviews_dir)


def _verdict_options(fn):
  fn = click.option('--verdicts-dir', default=None,
                    type=click.Path(file_okay=False, readable=False),
                    help='Folder of verdict files; default <pipeline root>/verdicts.')(fn)
  fn = click.option('--approvers', default=None,
                    help='Comma-separated names whose verdicts count; default: the approvers '
                         'of the gate\'s reviews in the reviews folder.')(fn)
  return _location_options(fn)


def _approvers(given: Optional[str], pipeline_root: str, reviews_dir: str,
               report_uri: Optional[str] = None) -> Tuple[Tuple[str, ...], Optional[int]]:
  """(approvers, the report's ML Metadata id or None) for verdicts.

  With --approvers, those names. Otherwise the approvers of the gate's reviews, as
  `review approve` checks them: the reviews of `report_uri` when given, else every review in
  the folder (closed ones too: they were approvers when they gave their verdicts).
  """
  folder = reviews_dir or review_store.default_reviews_dir(pipeline_root)
  records = []
  if os.path.isdir(folder):
    store = _store(pipeline_root, reviews_dir)
    records = _read(store, lambda: store.list(include_closed=True))
  if report_uri is not None:
    records = [r for r in records if r.report_uri and verdicts_lib.normal_uri(r.report_uri) == report_uri]
  ids = {r.report_id for r in records if r.report_id}
  report_id = ids.pop() if len(ids) == 1 else None
  if given is not None:
    names = tuple(dict.fromkeys(n.strip() for n in given.split(',') if n.strip()))
    if not names:
      _fail('--approvers names nobody; give the approvers\' names separated by commas')
    return names, report_id
  names = tuple(dict.fromkeys(a for r in records for a in r.approvers))
  if not names:
    of = f' of the report {report_uri}' if report_uri is not None else ''
    _fail(f'no approvers known: the reviews folder {folder} holds no review{of} to take them '
          'from; pass --approvers A,B')
  return names, report_id


def _verdict_store(pipeline_root: str, verdicts_dir: str,
                   create: bool = False) -> verdicts_lib.VerdictStore:
  folder = verdicts_dir or verdicts_lib.default_verdicts_dir(pipeline_root)
  if create:
    if not verdicts_dir and not os.path.isdir(pipeline_root):
      _fail(f'no pipeline root at {pipeline_root}; pass --pipeline-root of the pipeline whose '
            'audit you judge (or --verdicts-dir)')
  elif not os.path.isdir(folder) and not os.path.isdir(verdicts_dir or pipeline_root):
    _fail(f'no verdicts folder at {folder}; pass --pipeline-root of the pipeline (or '
          '--verdicts-dir)')
  try:
    return verdicts_lib.VerdictStore(folder)
  except verdicts_lib.VerdictError as e:
    _fail(str(e))


def _read(store, read):
  """What `read()` returns from `store` (a review or verdict store), after warning on stderr
  about each file it skipped; a folder that cannot be read exits 2 with one line."""
  try:
    found = read()
  except review_store.ReviewStoreError as e:
    _fail(str(e))
  for path, why in store.skipped:
    click.echo(_show(f'warning: skipped {path}: {why}'), err=True)
  return found


def _history(store: verdicts_lib.VerdictStore,
             approvers: Sequence[str]) -> List[verdicts_lib.Verdict]:
  return _read(store, lambda: store.history(approvers))


def _load_report(report_uri: str):
  # Imported here: reading a report loads TensorFlow, which the other commands do not need.
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  from components.vog.report import json_checks  # pylint: disable=g-import-not-at-top
  from components.vog.report import report_format  # pylint: disable=g-import-not-at-top
  try:
    return report_format.load_report(report_uri)
  except json_checks.ReportFormatError as e:
    _fail(str(e))
  except storage.ERRORS as e:
    _fail(f'the report {report_uri} cannot be read ({e}); give the difficulty_report folder '
          'of an audit that this user can read')


@review.command()
@click.argument('example_id')
@click.argument('verdict')
@click.option('--report', 'report_uri', default=None,
              help='The difficulty report folder that flagged the example.')
@click.option('--by', default='', help='Who gives the verdict (one of the approvers).')
@click.option('--label', default=None,
              help='The right class, for the verdict "wrong label" (and only for it).')
@click.option('--split', default=None,
              help='The example\'s split, when the report flagged its id in several.')
@click.option('--note', default='', help=f'Why, in one line of at most '
              f'{verdicts_lib.MAX_NOTE} characters.')
@_verdict_options
def mark(example_id, verdict, report_uri, by, label, split, note, approvers, verdicts_dir,
         pipeline_root, reviews_dir):
  """Give a verdict on flagged example EXAMPLE_ID: "wrong label" (with --label), correct,
  ambiguous or exclude. A later verdict on the same example supersedes this one."""
  if not report_uri:
    _fail('say which audit flagged the example: pass --report with its difficulty_report '
          'folder')
  try:
    verdict = verdicts_lib.parse_verdict(verdict)
  except verdicts_lib.VerdictError as e:
    _fail(str(e))
  label_number = None
  if label is not None:
    if not label.strip().isdigit() or not label.strip().isascii():
      _fail(f'--label {label!r} is not a class (a whole number >= 0)')
    label_number = int(label.strip())
  report_uri = verdicts_lib.normal_uri(report_uri)
  names, report_id = _approvers(approvers, pipeline_root, reviews_dir, report_uri)
  store = _verdict_store(pipeline_root, verdicts_dir, create=True)
  report = _load_report(report_uri)
  # Imported here, as in _load_report.
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  from components.vog.report import json_checks  # pylint: disable=g-import-not-at-top
  try:
    before = store.latest(names)
    recorded = verdicts_lib.mark(store, report, example_id=example_id, verdict=verdict, by=by,
                                 approvers=names, label=label_number, note=note, split=split,
                                 report_id=report_id)
  except (review_store.ReviewStoreError, json_checks.ReportFormatError) as e:
    _fail(str(e))
  except storage.ERRORS as e:
    _fail(f'the report {report_uri} cannot be read ({e}); give the difficulty_report folder '
          'of an audit that this user can read')
  f = review_summary.terminal_safe
  line = (f'verdict {recorded.verdict_id}: {f(recorded.by)} marked {f(recorded.example_id)} '
          f'({f(recorded.split)}) {f(recorded.describe())}')
  prior = before.get(recorded.key())
  if prior is not None:
    line += (f'; it supersedes verdict {prior.verdict_id} ({f(prior.describe())} by '
             f'{f(prior.by)})')
  click.echo(line)


def _verdict_lines(v: verdicts_lib.Verdict, superseded_by: Optional[int] = None) -> List[str]:
  """The lines `review verdicts` prints for one verdict, each value made terminal-safe."""
  f = review_summary.terminal_safe
  line = (f'{v.verdict_id:>4}  {v.at}  {f(v.example_id)} ({f(v.split)})  {f(v.describe())}  '
          f'by {f(v.by)}')
  if superseded_by is not None:
    line += f'  [superseded by {superseded_by}]'
  lines = [line]
  if v.note:
    lines.append(f'      note: {f(v.note)}')
  audit = f(v.report_uri) + (f' (artifact {v.report_id})' if v.report_id else '')
  lines.append(f'      fingerprint {v.fingerprint}; audit {audit}')
  return lines


@review.command('verdicts')
@click.option('--report', 'report_uri', default=None,
              help='Only the verdicts given on this difficulty report folder.')
@click.option('--all', 'show_all', is_flag=True,
              help='Every verdict, superseded ones too, in the order they were given.')
@_verdict_options
def list_verdicts(report_uri, show_all, approvers, verdicts_dir, pipeline_root, reviews_dir):
  """Show the latest verdict on each example (with --all, every verdict)."""
  if report_uri is not None:
    report_uri = verdicts_lib.normal_uri(report_uri)
  names, _ = _approvers(approvers, pipeline_root, reviews_dir, report_uri)
  store = _verdict_store(pipeline_root, verdicts_dir)
  history = _history(store, names)
  latest = verdicts_lib.latest_of(history)
  shown = history if show_all else sorted(latest.values(), key=lambda v: v.verdict_id)
  if report_uri is not None:
    shown = [v for v in shown if verdicts_lib.normal_uri(v.report_uri) == report_uri]
  if not shown:
    of = f' on {report_uri}' if report_uri is not None else ''
    click.echo(_show(f'no verdicts{of} in {store.folder}'))
    return
  for v in shown:
    latest_one = latest[v.key()]
    superseded_by = None if latest_one.verdict_id == v.verdict_id else latest_one.verdict_id
    for line in _verdict_lines(v, superseded_by):
      click.echo(line)


@review.command('export')
@click.option('--format', 'fmt', default=None, help='csv or jsonl.')
@click.option('--output', default=None,
              help='The file to write (replaced if it exists).')
@_verdict_options
def export(fmt, output, approvers, verdicts_dir, pipeline_root, reviews_dir):
  """Write the latest "wrong label" and "exclude" verdicts, for relabelling elsewhere.

  Columns: example_id, split, fingerprint, verdict, corrected_label, by, at, audit (the
  report folder), note. CSV cells that a spreadsheet would run as a formula start with '.
  """
  if fmt not in ('csv', 'jsonl'):
    _fail(f'--format {fmt!r} is not csv or jsonl' if fmt else 'pass --format csv or jsonl')
  if not output:
    _fail('say where to write the export: pass --output FILE')
  names, _ = _approvers(approvers, pipeline_root, reviews_dir)
  store = _verdict_store(pipeline_root, verdicts_dir)
  rows = verdicts_lib.export_rows(verdicts_lib.latest_of(_history(store, names)).values())
  try:
    with open(output, 'w', encoding='utf-8', newline='') as out:
      if fmt == 'csv':
        verdicts_lib.write_csv(rows, out)
      else:
        verdicts_lib.write_jsonl(rows, out)
  except OSError as e:
    _fail(f'cannot write {output} ({review_store.os_reason(e)}); give a file this user can '
          'write')
  counts = {kind: sum(r['verdict'] == kind for r in rows) for kind in verdicts_lib.EXPORTED}
  said = ', '.join(f'{n} {kind}' for kind, n in counts.items())
  click.echo(_show(f'exported {len(rows)} verdicts ({said}) to {output}'))


@review.command()
@click.option('--report', 'report_uri', default=None,
              help='The difficulty report folder whose flagged examples to review.')
@click.option('--by', default='', help='Who reviews (one of the approvers).')
@click.option('--port', default='0', show_default=True,
              help='TCP port on 127.0.0.1 to listen on; 0 picks a free one.')
@click.option('--module-file', default=None,
              help='The audit\'s module file, when it used vog_inputs_fn (for thumbnails).')
@_verdict_options
def serve(report_uri, by, port, module_file, approvers, verdicts_dir, pipeline_root,
          reviews_dir):
  """Open the review workspace of a report in the browser: walk its flagged examples, give
  verdicts, then approve or reject the model. Listens on 127.0.0.1 only."""
  if not report_uri:
    _fail('say which audit to review: pass --report with its difficulty_report folder')
  port_text = str(port).strip()
  if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
    _fail(f'--port {port!r} is not a TCP port (0 to 65535; 0 picks a free one)')
  by = (by or '').strip()
  report_uri = verdicts_lib.normal_uri(report_uri)
  names, report_id = _approvers(approvers, pipeline_root, reviews_dir, report_uri)
  if not by:
    _fail(f'say who reviews: pass --by NAME (one of the approvers: {", ".join(names)})')
  if by not in names:
    _fail(f'{by!r} is not an approver; approvers are: {", ".join(names)}; only they may open '
          'the review workspace')
  store = _verdict_store(pipeline_root, verdicts_dir, create=True)
  report = _load_report(report_uri)
  # Imported here, as in _load_report: the workspace loads Flask and TensorFlow.
  from components.review_gate import review_app  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  from components.vog.report import json_checks  # pylint: disable=g-import-not-at-top
  folder = reviews_dir or review_store.default_reviews_dir(pipeline_root)
  try:
    workspace = review_app.Workspace(
        report, by=by, approvers=names, verdict_store=store, reviews_dir=folder,
        report_id=report_id, module_file=module_file,
        log=lambda line: click.echo(_show(line)))
    server, url = review_app.start_server(workspace, port=int(port_text))
  except (review_store.ReviewStoreError, review_app.WorkspaceError,
          json_checks.ReportFormatError) as e:
    _fail(str(e))
  except storage.ERRORS as e:
    _fail(f'the report {report_uri} cannot be read ({e}); give the difficulty_report folder '
          'of an audit that this user can read')
  if workspace.no_thumbnails:
    click.echo(_show(f'note: no thumbnails: {workspace.no_thumbnails}; the examples show '
                     'their feature values'), err=True)
  click.echo(_show(f'review workspace of {report_uri}: {len(report.flagged)} flagged '
                   f'examples, verdicts as {by}; {workspace.review_status()["text"]}'))
  click.echo(f'open in a browser on this machine: {url}')
  click.echo('(Ctrl-C stops it)')
  review_app.serve_until_stopped(server, workspace)
  click.echo('review workspace stopped')
