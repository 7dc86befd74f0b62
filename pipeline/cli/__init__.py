"""`vog-audit`: score, demo, review, runs and report from the command line.

Each subcommand lives in its own module and is registered below.
"""

import os
import sys
from typing import NoReturn
import warnings

import click

# Before TensorFlow loads: keep its start-up chatter and Google's Python-version
# notices out of the way of the lines this command prints.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
warnings.filterwarnings('ignore', category=FutureWarning, module=r'google\..*')


def fail(message: str) -> NoReturn:
  """Ends the command with one clear line on stderr and exit code 2 (bad input).

  A message that spans lines (some file systems' and TensorFlow's errors do) is joined
  into one, so that the line says all of it.
  """
  line = ' '.join(part.strip() for part in str(message).splitlines() if part.strip())
  click.echo(f'error: {line}', err=True)
  sys.exit(2)


@click.group(context_settings={'help_option_names': ['-h', '--help']})
def main():
  """Variance of Gradients data audits for TFX pipelines."""


def _register():
  # Imported here so `vog-audit --help` stays fast and each module stays independent.
  from pipeline.cli import score
  main.add_command(score.score)
  from pipeline.cli import demo
  main.add_command(demo.demo)
  from pipeline.cli import report
  main.add_command(report.report)
  from pipeline.cli import review
  main.add_command(review.review)
  from pipeline.cli import runs
  main.add_command(runs.runs)


_register()
