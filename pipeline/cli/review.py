"""`vog-audit review`: list reviews, and answer the ones HumanReviewGate(backend='local') waits on.

    vog-audit review list [--all]
    vog-audit review approve ID --by NAME [--comment TEXT]
    vog-audit review reject ID --by NAME [--comment TEXT]

Reviews live in `<pipeline root>/reviews` (override with --reviews-dir). Only the gate's
approvers may answer, once each, before the review's deadline; the gate checks each answer
against its own approvers again when it reads it, and decides when `quorum` of them approved
and none rejected. Files in the folder that are not review records are skipped with a warning
on stderr. Everything printed from a record is terminal-safe (control characters shown as
escapes). Bad input, and a folder that cannot be read or written, exit 2 with one line.
"""

import os
from typing import List

import click

from components.review_gate import backends
from components.review_gate import local_backend
from components.review_gate import review_record
from components.review_gate import review_store
from components.review_gate import review_summary
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
  """List model reviews and answer local ones (HumanReviewGate backend='local')."""


@review.command('list')
@_location_options
@click.option('--all', 'show_all', is_flag=True, help='Also show closed reviews.')
def list_reviews(pipeline_root, reviews_dir, show_all):
  """Show pending reviews: ID, status, model, headline counts, drift, who may answer."""
  store = _store(pipeline_root, reviews_dir, allow_empty=True)
  try:
    records = store.list(include_closed=show_all)
  except review_store.ReviewStoreError as e:
    _fail(str(e))
  for path, why in store.skipped:
    click.echo(_show(f'warning: skipped {path}: {why}'), err=True)
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
