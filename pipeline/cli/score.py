"""`vog-audit score`: VoG for a checkpoint folder and TFRecords, without a pipeline.

Runs the same Beam code as the VarianceOfGradients component and writes the same
outputs under --output:

    <output>/scored_examples/Split-<name>/*.gz
    <output>/difficulty_report/{summary.json,flagged.jsonl,quarantine.jsonl,report.html}
"""

import glob
import os
import time

import click

from pipeline.cli import fail

SPLIT_PREFIX = 'Split-'


def split_patterns_of(path: str):
  """{split: file pattern} for an Examples artifact folder or a TFRecord file pattern."""
  if os.path.isdir(path):
    splits = sorted(d[len(SPLIT_PREFIX):] for d in os.listdir(path)
                    if d.startswith(SPLIT_PREFIX) and os.path.isdir(os.path.join(path, d)))
    if splits:
      return {s: os.path.join(path, SPLIT_PREFIX + s, '*') for s in splits}
    path = os.path.join(path, '*')
  if not glob.glob(path):
    fail(f'--examples {path} matches no file; give an Examples artifact folder '
         '(with Split-*/ folders) or a TFRecord file pattern')
  return {'data': path}


@click.command()
@click.option('--model-run', required=True, type=click.Path(),
              help='ModelRun folder holding vog_checkpoints/ (or that folder itself).')
@click.option('--examples', required=True,
              help='Examples artifact folder (Split-*/) or a TFRecord file pattern.')
@click.option('--output', required=True, type=click.Path(file_okay=False),
              help='Where scored_examples/ and difficulty_report/ go.')
@click.option('--label-key', default='label', show_default=True)
@click.option('--target', default='loss', show_default=True,
              help='loss (finds mislabeled examples), prob or logit.')
@click.option('--label-mode', default='label', show_default=True,
              help='label, or predicted for unlabeled data.')
@click.option('--normalize', default='class', show_default=True,
              help='class, abs-class or raw.')
@click.option('--stage', default='complete', show_default=True,
              help='early, middle, late, complete, or steps such as 120,240,360.')
@click.option('--num-checkpoints', default=10, show_default=True, type=int)
@click.option('--split', 'splits', multiple=True, help='Split to score (repeatable).')
@click.option('--batch-size', default=256, show_default=True, type=int)
@click.option('--inspection-budget', default=200, show_default=True, type=int)
@click.option('--bucket-percentiles', default='50,90', show_default=True,
              help='Two cut points for easy/medium/hard.')
@click.option('--example-id-key', default='example_id', show_default=True)
@click.option('--module-file', default=None,
              help='Python file with vog_inputs_fn and/or custom_objects.')
@click.option('--beam-arg', 'beam_args', multiple=True,
              help='Beam pipeline argument (repeatable), e.g. --beam-arg=--runner=DirectRunner.')
def score(model_run, examples, output, label_key, target, label_mode, normalize, stage,
          num_checkpoints, splits, batch_size, inspection_budget, bucket_percentiles,
          example_id_key, module_file, beam_args):
  """Score every example of EXAMPLES with VoG across the checkpoints of MODEL_RUN."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from components.vog import audit  # pylint: disable=g-import-not-at-top
  from components.vog import report_folder  # pylint: disable=g-import-not-at-top
  from components.vog import checkpoints  # pylint: disable=g-import-not-at-top
  from components.vog.settings import VogSettings, stage_from_text  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO)
  try:
    cuts = tuple(float(c) for c in bucket_percentiles.split(','))
    settings = VogSettings(label_key or None, target, label_mode, normalize,
                           stage_from_text(stage), num_checkpoints,
                           list(splits) or None, batch_size, inspection_budget, cuts,
                           example_id_key)
  except ValueError as e:
    fail(str(e))
  patterns = split_patterns_of(examples)
  click.echo(f'checking checkpoints in {model_run} and splits {", ".join(patterns)}')
  try:
    plan = audit.plan_audit(settings, model_run, patterns, module_file=module_file)
  except (audit.AuditConfigError, checkpoints.CheckpointError) as e:
    fail(str(e))
  scored_dir = os.path.join(output, 'scored_examples')
  report_dir = os.path.join(output, 'difficulty_report')
  for folder in (scored_dir, report_dir):
    if os.path.exists(folder) and os.listdir(folder):
      fail(f'{folder} is not empty; choose a new --output so earlier results are kept')
  os.makedirs(report_dir, exist_ok=True)
  click.echo(f'scoring splits {", ".join(plan.split_files)} with {len(plan.entries)} '
             f'checkpoints (steps {", ".join(str(e.step) for e in plan.entries)}), '
             f'batches of {settings.batch_size}')
  started = time.time()
  summary = audit.run_audit(plan, beam.Pipeline(argv=list(beam_args)), scored_dir,
                            report_dir)
  counts = summary['counts']
  click.echo(f'done in {time.time() - started:.1f}s: scored {counts["scored"]}, '
             f'quarantined {counts["quarantined"]}, flagged {counts["flagged"]} '
             f'of {counts["seen"]} examples')
  if counts['quarantined']:
    click.echo(f'quarantined examples and reasons: '
               f'{os.path.join(report_dir, report_folder.QUARANTINE_FILE)}')
  click.echo(f'report: {os.path.join(report_dir, report_folder.REPORT_FILE)}')
