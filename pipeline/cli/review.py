"""`vog-audit review`: list and answer the reviews that HumanReviewGate(backend='local') waits on.

    vog-audit review list [--all]
    vog-audit review approve ID --by NAME [--comment TEXT]
    vog-audit review reject ID --by NAME [--comment TEXT]

Reviews live in `<pipeline root>/reviews` (override with --reviews-dir). Only the gate's
approvers may answer, before the review's deadline, and each review takes one answer; the gate
checks the answer against its own approvers again when it reads it. Files in the folder that
are not review records are skipped with a warning on stderr. Bad input exits 2 with one line.
"""

import os

import click

from components.review_gate import decision as decision_lib
from components.review_gate import review_store
from components.review_gate import review_summary
from components.vog import report_format
from pipeline.cli import fail

DEFAULT_PIPELINE_ROOT = os.path.join('demo_output', 'pipeline')


def _store(pipeline_root: str, reviews_dir: str,
           allow_empty: bool = False) -> review_store.ReviewStore:
  folder = reviews_dir or review_store.default_reviews_dir(pipeline_root)
  # A pipeline root whose gate has not asked yet has no reviews, which is not a mistake.
  known_root = os.path.isdir(reviews_dir or pipeline_root)
  if not os.path.isdir(folder) and not (allow_empty and known_root):
    fail(f'no reviews folder at {folder}; pass --pipeline-root of the pipeline whose gate is '
          'waiting (or --reviews-dir)')
  try:
    return review_store.ReviewStore(folder)
  except review_store.ReviewStoreError as e:
    fail(str(e))


def _location_options(fn):
  fn = click.option('--reviews-dir', default=None, type=click.Path(file_okay=False),
                    help='Folder of review files; default <pipeline root>/reviews.')(fn)
  return click.option('--pipeline-root', default=DEFAULT_PIPELINE_ROOT, show_default=True,
                      type=click.Path(file_okay=False),
                      help='Pipeline root the gate runs under.')(fn)


@click.group()
def review():
  """List and answer pending model reviews (HumanReviewGate backend='local')."""


@review.command('list')
@_location_options
@click.option('--all', 'show_all', is_flag=True, help='Also show closed reviews.')
def list_reviews(pipeline_root, reviews_dir, show_all):
  """Show pending reviews: ID, status, model, headline counts, drift, who may answer."""
  store = _store(pipeline_root, reviews_dir, allow_empty=True)
  try:
    records = store.list(include_closed=show_all)
  except review_store.ReviewStoreError as e:
    fail(str(e))
  for path, why in store.skipped:
    click.echo(f'warning: skipped {path}: {why}', err=True)
  if not records:
    click.echo(f'no {"" if show_all else "pending "}reviews in {store.reviews_dir}')
    return
  for r in records:
    counts = (r.get('headline') or {}).get('counts') or {}
    decision = r.get('decision') or {}
    state = decision.get('decision') if r.get('closed') else r['status']
    click.echo(f'{r["review_id"]}  {state:<9} {r.get("backend")}  {r.get("created_at")}  '
               f'pipeline {r.get("pipeline") or "-"}  model #{r.get("model_id")} '
               f'{r.get("model_uri")}')
    flagged, scored, quarantined = (counts.get(k, '?') for k in (
        report_format.FLAGGED, report_format.SCORED, report_format.QUARANTINED))
    click.echo(f'    {flagged} flagged of {scored} scored, {quarantined} quarantined; report '
               f'{(r.get("headline") or {}).get("report_url", "-")}')
    drift = (r.get('headline') or {}).get('drift')
    if isinstance(drift, str) and drift:  # reviews opened before drift existed have none
      click.echo(f'    {review_summary.one_line(drift)}')
    if decision:
      who = f' by {decision.get("reviewer")}' if decision.get('reviewer') else ''
      note = f': {decision.get("comment")}' if decision.get('comment') else ''
      click.echo(f'    {decision.get("decision")}{who} at {decision.get("reviewed_at")}{note}')
    elif r.get('backend') == 'slack':
      click.echo(f'    answer in Slack channel {r.get("slack_channel")} thread '
                 f'{r.get("slack_thread_ts") or "(not posted yet)"}')
    else:
      deadline = review_store.deadline_of(r)
      by = f'; answer by {decision_lib.iso_time(deadline)}' if deadline and not r.get(
          'closed') else ''
      click.echo(f'    approvers: {", ".join(str(a) for a in r.get("approvers") or [])}{by}')


def _answer(approve: bool, review_id, by, comment, pipeline_root, reviews_dir):
  store = _store(pipeline_root, reviews_dir)
  try:
    record = store.answer(review_id, approve=approve, by=by, comment=comment or '')
  except review_store.ReviewStoreError as e:
    fail(str(e))
  click.echo(f'review {record["review_id"]} {record["status"]} by {by}; the waiting gate '
             'picks it up at its next poll')


@review.command()
@click.argument('review_id')
@click.option('--by', default='', help='Who approves (one of the gate\'s approvers).')
@click.option('--comment', default='', help='Why, for the record.')
@_location_options
def approve(review_id, by, comment, pipeline_root, reviews_dir):
  """Approve pending review REVIEW_ID: the gate blesses the model."""
  _answer(True, review_id, by, comment, pipeline_root, reviews_dir)


@review.command()
@click.argument('review_id')
@click.option('--by', default='', help='Who rejects (one of the gate\'s approvers).')
@click.option('--comment', default='', help='Why, for the record and the next training run.')
@_location_options
def reject(review_id, by, comment, pipeline_root, reviews_dir):
  """Reject pending review REVIEW_ID: the gate does not bless the model."""
  _answer(False, review_id, by, comment, pipeline_root, reviews_dir)
