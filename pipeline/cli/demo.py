"""`vog-audit demo`: the whole audit pipeline locally on data with flipped labels.

    vog-audit demo --output demo_output [--dataset digits|tabular|text] [--noise-rate 0.1]
        [--seed 0] [--review auto|local|slack] [--approver NAME ...]
        [--slack-channel C0123ABCD] [--slack-api-url URL] [--review-timeout SECONDS]
        [--auto-policy JSON]

`--dataset` picks the reference pipeline: digits (the default; a CNN on pixels), tabular
(generated customers, numeric and categorical columns) or text (generated sentences);
the last two run Transform before the Trainer (see pipeline.reference.reference_datasets).
Writes `DIR/data/`, `DIR/pipeline/`, `DIR/metadata.sqlite` and, when the model is blessed
and approved, `DIR/serving/`; prints a line per finished step and then what the audit found:
the flipped labels among the flagged examples, how many flags are of each kind, and what the
flagged examples of each split have in common (pipeline.demo_summary.format_summary).
An earlier demo of the same data set in DIR is reused (see pipeline.demo); one of another
data set is refused. Bad input exits 2 with one line.
"""

import json
import os

import click

from components.review_gate import backends as review_backends
from pipeline.cli import fail
from pipeline.reference.reference_datasets import DATASETS


def _policy(text):
  if text is None:
    return None
  try:
    rules = json.loads(text)
  except json.JSONDecodeError as e:
    fail(f'--auto-policy is not valid JSON ({e}); e.g. \'{{"max_quarantined_share": 0.01}}\'')
  if not isinstance(rules, dict) or not rules:
    fail('--auto-policy must be a JSON object of rules, e.g. \'{"max_flagged_share": 0.2}\'')
  return tuple(rules.items())


@click.command()
@click.option('--output', required=True, type=click.Path(file_okay=False),
              help='Demo folder: data/, pipeline/, metadata.sqlite, serving/.')
@click.option('--dataset', default='digits', show_default=True, type=click.Choice(DATASETS),
              help='The reference pipeline: digits, or tabular or text (with Transform).')
@click.option('--noise-rate', default=0.1, show_default=True, type=float,
              help='Share of labels flipped to another class, in [0, 1].')
@click.option('--seed', default=0, show_default=True, type=int,
              help='Seeds which labels flip and the training.')
@click.option('--review', 'backend', default='auto', show_default=True,
              type=click.Choice(review_backends.NAMES),
              help='Who decides before the Pusher: a written policy, `vog-audit review`, '
                   'or Slack.')
@click.option('--approver', 'approvers', multiple=True,
              help='Who may approve (repeatable): names for local, Slack user IDs for slack.')
@click.option('--slack-channel', default=None, help='Slack channel ID for --review slack.')
@click.option('--slack-api-url', default=None,
              help='Slack Web API base URL, for Slack-compatible endpoints.')
@click.option('--review-timeout', default=3600.0, show_default=True, type=float,
              help='Seconds the review may take; then the model is not pushed.')
@click.option('--auto-policy', default=None,
              help='Rules for --review auto as JSON, e.g. \'{"max_flagged_share": 0.2}\'; '
                   'default: pipeline.config.DEFAULT_AUTO_POLICY.')
@click.option('--verbose', is_flag=True, help='Show TFX\'s INFO logs.')
def demo(output, dataset, noise_rate, seed, backend, approvers, slack_channel, slack_api_url,
         review_timeout, auto_policy, verbose):
  """Run the audit pipeline on demo data with flipped labels and summarise what it found."""
  from pipeline import demo as demo_lib  # pylint: disable=g-import-not-at-top

  if not 0.0 <= noise_rate <= 1.0:
    fail(f'--noise-rate {noise_rate} must be in [0, 1], e.g. 0.1 for 10% flipped labels')
  if os.path.exists(output) and not os.path.isdir(output):
    fail(f'--output {output} is a file; give a folder for the demo')
  if backend in ('local', 'slack') and not approvers:
    fail(f'--review {backend} needs at least one --approver (' +
         ('a Slack user ID like U0123ABCD' if backend == 'slack' else
          'the name they will pass to vog-audit review approve --by') + ')')
  if backend == 'slack' and not slack_channel:
    fail('--review slack needs --slack-channel (a channel ID like C0123ABCD)')
  if backend == 'slack' and not os.environ.get('SLACK_BOT_TOKEN'):
    fail('--review slack needs the bot token in the environment variable SLACK_BOT_TOKEN')
  overrides = dict(review_backend=backend, review_approvers=tuple(approvers),
                   review_timeout_seconds=review_timeout, slack_channel=slack_channel,
                   slack_api_url=slack_api_url)
  # Answers to local reviews are read every few seconds; a person is waiting on them.
  overrides['review_poll_seconds'] = 2.0 if backend == 'local' else 15.0
  policy = _policy(auto_policy)
  if policy is not None:
    if backend != 'auto':
      fail(f'--auto-policy applies to --review auto, not --review {backend}')
    overrides['auto_policy'] = policy
  try:
    demo_lib.run_demo(output, noise_rate=noise_rate, seed=seed, echo=click.echo,
                      verbose=verbose, dataset=dataset, **overrides)
  except ValueError as e:
    fail(str(e).splitlines()[0])
  except demo_lib.PipelineRunError as e:
    click.echo(f'error: {e}', err=True)
    raise SystemExit(1) from None
