"""`vog-audit score`: VoG for a checkpoint folder and TFRecords, without a pipeline.

Runs the same Beam code as the VarianceOfGradients component and writes the same
outputs under --output:

    <output>/scored_examples/Split-<name>/*.gz   (the --copy-splits splits)
    <output>/difficulty_report/{summary.json,flagged.jsonl,quarantine-*.jsonl,report.html}
    <output>/difficulty_report/score_table/split=<name>/part-*.parquet  (every split)

On a terminal a progress bar shows the examples scored of the total, the rate and the
time left; elsewhere (logs, CI) each step prints one line with its counts.

--output, --examples, --model-run, --module-file, --baseline and --transform-graph are
local paths or URIs that TensorFlow's file systems know (gs://, s3://, ...).

Both folders are written under `<output>/.incomplete/` and moved to their names only
when the audit is complete, so a command killed mid-run leaves nothing under them; the
next run into the same --output removes what the killed one left and starts again. On
an object store, which moves a folder file by file, a command killed while it moves
them can leave part of one; the report's summary.json is then missing, and the next run
removes that part too.
"""

import logging as py_logging
import os
import shutil
import socket
import tempfile
import time
from typing import IO, Any, List, Mapping, Optional, Sequence

import click

from components.vog.settings import VogSettings
from components.vog.settings import declared
from components.vog.settings import to_text
from pipeline.cli import fail

SPLIT_PREFIX = 'Split-'
SCORED_FOLDER = 'scored_examples'
REPORT_FOLDER = 'difficulty_report'
# Where a run writes until it is complete; what a killed run leaves there is removed by
# the next run into the same --output.
INCOMPLETE = '.incomplete'
RUNNERS = ('direct', 'dask')
DASK_RUNNER = 'apache_beam.runners.dask.dask_runner.DaskRunner'
DASK_CONNECT_TIMEOUT_S = 5
# Runners whose workers run on this machine, where they can write the progress folder.
LOCAL_RUNNERS = ('DirectRunner', 'BundleBasedDirectRunner', 'SwitchingDirectRunner',
                 'FnApiRunner', 'PrismRunner')


def setting_options(command):
  """Adds to `command` one option per VoG setting the command line shows
  (settings.declared()), in declaration order.

  Each reaches the command as a keyword argument named as the setting: its text (or,
  for a repeatable option, the tuple of its items), None or () when not given. Turn
  them into VogSettings with `settings_of`.
  """
  for setting in reversed(declared()):  # click lists the options innermost first
    if setting.option is None:
      continue
    shown = '' if setting.default is None else f'  [default: {to_text(setting.default)}]'
    command = click.option(
        setting.option, setting.name, multiple=setting.repeatable, default=None,
        metavar='NAME' if setting.repeatable else setting.form.metavar,
        help=f'{setting.help}{" (repeatable)" if setting.repeatable else ""}.{shown}',
    )(command)
  return command


def settings_of(options: Mapping[str, Any]) -> VogSettings:
  """VogSettings from the setting options of `setting_options`, validated; a setting
  not given takes its default.

  Ends the command (exit 2, one line) for a text its setting cannot read, named by its
  option, and for a bad setting, named as VogSettings.validate() names it.
  """
  given = {}
  for setting in declared():
    value = options.get(setting.name)
    if setting.option is None or value is None or value == ():
      continue
    try:
      given[setting.name] = (list(value) if setting.repeatable
                             else setting.form.parse(value, setting.option))
    except ValueError as e:
      fail(str(e))
  try:
    return VogSettings(**given).validate()
  except ValueError as e:
    fail(str(e))


def split_patterns_of(path: str):
  """{split: file pattern} for an Examples artifact folder or a TFRecord file pattern,
  local or a URI. Refuses (exit 2, one line) a path that matches no file or cannot be
  read."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  try:
    if storage.is_dir(path):
      splits = sorted(d[len(SPLIT_PREFIX):] for d in storage.list_dir(path)
                      if d.startswith(SPLIT_PREFIX)
                      and storage.is_dir(os.path.join(path, d)))
      if splits:
        return {s: os.path.join(path, SPLIT_PREFIX + s, '*') for s in splits}
      path = os.path.join(path, '*')
    matches = tf.io.gfile.glob(path)
  except storage.ERRORS as e:
    fail(f'--examples {path} cannot be read ({_reason(e)}); give an Examples artifact '
         'folder or a TFRecord file pattern this user can read')
  if not matches:
    fail(f'--examples {path} matches no file; give an Examples artifact folder '
         '(with Split-*/ folders) or a TFRecord file pattern')
  return {'data': path}


def _reason(error: BaseException) -> str:
  """What a failed file operation says: the OS's reason, or TensorFlow's message."""
  return str(getattr(error, 'strerror', None) or getattr(error, 'message', None) or error)


@click.command()
@click.option('--model-run', required=True, type=click.Path(),
              help='ModelRun folder holding vog_checkpoints/ (or that folder itself).')
@click.option('--examples', required=True,
              help='Examples artifact folder (Split-*/) or a TFRecord file pattern.')
@click.option('--output', required=True, type=click.Path(file_okay=False),
              help='Where scored_examples/ and difficulty_report/ go.')
@setting_options
@click.option('--module-file', default=None,
              help='Python file with vog_inputs_fn and/or custom_objects.')
@click.option('--runner', 'runner', type=click.Choice(RUNNERS), default='direct',
              show_default=True,
              help='direct: Beam\'s DirectRunner in this process; dask: the workers of a '
              'dask.distributed scheduler (--dask-address).')
@click.option('--dask-address', default=None,
              help='HOST:PORT of the dask.distributed scheduler, with --runner dask.')
@click.option('--dask-partitions', default=None, type=int,
              help='Dask partitions of each step, with --runner dask; by default one per '
              'work unit (input files grouped by size).')
@click.option('--beam-arg', 'beam_args', multiple=True,
              help='Beam pipeline argument (repeatable), e.g. --beam-arg=--runner=DirectRunner.')
@click.option('--baseline', default=None, type=click.Path(file_okay=False),
              help='difficulty_report folder of an earlier audit to compare with (drift).')
@click.option('--transform-graph', default=None, type=click.Path(file_okay=False),
              help='Transform output folder (transform_fn/, metadata/) when the model '
              'takes transformed features; EXAMPLES are then the raw examples.')
def score(model_run, examples, output, module_file, runner, dask_address, dask_partitions,
          beam_args, baseline, transform_graph, **setting_texts):
  """Score every example of EXAMPLES with VoG across the checkpoints of MODEL_RUN."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from components.vog.report import score_table  # pylint: disable=g-import-not-at-top
  from components.vog import vocabulary as vocab  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.INFO)
  settings = settings_of(setting_texts)
  patterns = split_patterns_of(examples)
  if baseline:
    check_baseline(baseline)
  check_runner(beam_args)
  scored_dir = os.path.join(output, SCORED_FOLDER)
  report_dir = os.path.join(output, REPORT_FOLDER)
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  try:
    created = not storage.exists(output)
  except storage.ERRORS as e:
    fail(f'--output {output} cannot be read ({_reason(e)}); give a folder this user can '
         'write')
  staging = os.path.join(output, INCOMPLETE)
  try:
    prepare_output(output)
    summary, started = _score(plan_args=(settings, model_run, patterns, module_file,
                                         baseline, transform_graph),
                              staging=staging, beam_args=beam_args, runner=runner,
                              dask_address=dask_address, dask_partitions=dask_partitions)
    publish_output(staging, output)
  except BaseException:
    discard_output(staging, output if created else None)
    raise
  counts = summary.counts
  click.echo(f'done in {time.time() - started:.1f}s: scored {counts["scored"]}, '
             f'quarantined {counts["quarantined"]}, flagged {counts["flagged"]} '
             f'of {counts["seen"]} examples, ranked by {summary.ranked_by}')
  if baseline:
    from components.review_gate import review_summary  # pylint: disable=g-import-not-at-top
    click.echo(review_summary.drift_headline(summary.drift))
  if counts['quarantined']:
    click.echo(f'quarantined examples and reasons: '
               f'{os.path.join(report_dir, vocab.QUARANTINE_GLOB)}')
  click.echo(f'scores of every example: {score_table.table_dir(report_dir)} (Parquet); '
             'examples with their VoG fields: '
             + (', '.join(os.path.join(scored_dir, f'Split-{s}')
                          for s in summary.copied_splits) or 'none copied'))
  click.echo(f'report: {os.path.join(report_dir, vocab.REPORT_FILE)}')


def _score(plan_args, staging: str, beam_args: Sequence[str], runner: str,
           dask_address: Optional[str], dask_partitions: Optional[int]):
  """Plans and runs the audit into the folders under `staging`; (summary, start time).
  Ends the command (exit 2, one line) for a configuration problem or damaged input."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from components.vog import audit  # pylint: disable=g-import-not-at-top
  from components.vog import audit_errors  # pylint: disable=g-import-not-at-top
  from components.vog import audit_plan  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import checkpoints  # pylint: disable=g-import-not-at-top
  settings, model_run, patterns, module_file, baseline, transform_graph = plan_args
  click.echo(f'checking checkpoints in {model_run} and splits {", ".join(patterns)}')
  try:
    plan = audit_plan.plan_audit(settings, model_run, patterns, module_file=module_file,
                                 baseline={'uri': baseline} if baseline else None,
                                 transform_graph=transform_graph)
  except (audit_errors.AuditConfigError, checkpoints.CheckpointError) as e:
    fail(str(e))
  scored_dir = os.path.join(staging, SCORED_FOLDER)
  report_dir = os.path.join(staging, REPORT_FOLDER)
  files = [f for split in plan.split_files for f in _paths_of(plan, split)]
  units = sum(len(u) for u in plan.split_units.values())
  estimate = _estimate(plan)
  size = sum(f.size or 0 for split_files in plan.split_files.values() for f in split_files)
  click.echo(f'scoring splits {", ".join(plan.split_files)} ({len(files)} files in '
             f'{units} work units, {_size_text(size)}'
             f'{f", about {estimate} examples" if estimate is not None else ""}) with '
             f'{len(plan.entries)} checkpoints (steps '
             f'{", ".join(str(e.step) for e in plan.entries)}), '
             f'batches of {settings.batch_size}')
  beam_args = list(beam_args) + runner_args(runner, dask_address, dask_partitions,
                                            units, beam_args)
  started = time.time()
  try:
    pipeline = beam.Pipeline(argv=beam_args)
  except (ValueError, ImportError) as e:
    fail(f'--beam-arg: Beam cannot start a pipeline with these arguments ({e})')
  stream = click.get_text_stream('stderr')
  try:
    if _shows_bar(stream, beam_args):
      summary = run_with_progress_bar(
          lambda sink: audit.audit_and_publish(plan, pipeline, scored_dir, report_dir,
                                               progress=sink),
          len(files), estimate, stream)
    else:
      summary = audit.audit_and_publish(plan, pipeline, scored_dir, report_dir)
  except audit_errors.AuditInputError as e:  # A damaged input file: nothing was published.
    fail(str(e))
  return summary, started


def check_baseline(baseline: str) -> None:
  """Refuses (exit 2, one line) a --baseline that is not a folder holding a summary.json:
  a path typed wrong would otherwise run the audit without the comparison asked for.
  What the folder holds is judged by the audit, which names any problem as drift
  unavailable."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.vog import vocabulary as vocab  # pylint: disable=g-import-not-at-top
  fix = 'give the difficulty_report folder of an earlier audit, e.g. OUT/difficulty_report'
  if not tf.io.gfile.isdir(baseline):
    what = 'does not exist' if not tf.io.gfile.exists(baseline) else 'is not a folder'
    fail(f'--baseline {baseline} {what}; {fix}')
  if not tf.io.gfile.exists(os.path.join(baseline, vocab.SUMMARY_FILE)):
    fail(f'--baseline {baseline} holds no {vocab.SUMMARY_FILE}, so it is no '
         f'audit report; {fix}')


def check_runner(beam_args: Sequence[str]) -> None:
  """Refuses (exit 2, one line) a --beam-arg=--runner that Beam does not know, before
  the checkpoints are loaded."""
  name = _runner_of(beam_args)
  if name is None:
    return
  from apache_beam.runners import runner as beam_runner  # pylint: disable=g-import-not-at-top
  try:
    beam_runner.create_runner(name)
  except (ValueError, ImportError) as e:
    fail(f'--beam-arg=--runner={name}: {e}')


def prepare_output(output: str) -> str:
  """Makes `output` and the folder the run writes in until it is complete; returns it.

  Removes what a killed run left there first. Refuses (exit 2, one line) an --output
  that cannot be written and one whose scored_examples/ or difficulty_report/ already
  holds results, so that earlier results are kept.
  """
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  staging = os.path.join(output, INCOMPLETE)
  try:
    storage.make_dirs(output)
    clear_incomplete(output)
  except storage.ERRORS as e:
    fail(f'--output {output} cannot be written ({_reason(e)}); give a folder this '
         'user can write')
  for name in (SCORED_FOLDER, REPORT_FOLDER):
    folder = os.path.join(output, name)
    if storage.exists(folder) and not storage.is_empty_dir(folder):
      fail(f'{folder} is not empty; choose a new --output so earlier results are kept')
  try:
    for name in (SCORED_FOLDER, REPORT_FOLDER):
      storage.make_dirs(os.path.join(staging, name))
  except storage.ERRORS as e:
    fail(f'--output {output} cannot be written ({_reason(e)}); give a folder this '
         'user can write')
  return staging


def clear_incomplete(output: str) -> None:
  """Removes what a run killed before it finished left under `output`.

  Its folders are still in `<output>/.incomplete/`, except when it was killed while
  moving them: its scored_examples/ was then moved and its difficulty_report/ not, and
  that scored_examples/ goes too (the run began only when it was empty). On an object
  store a folder is moved file by file, so one can be half moved: the part already
  under its name goes as well.
  """
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  staging = os.path.join(output, INCOMPLETE)
  if not storage.exists(staging):
    return
  for name in (SCORED_FOLDER, REPORT_FOLDER):
    moved = os.path.join(output, name)
    if (storage.exists(os.path.join(staging, name)) and storage.exists(moved)
        and not storage.is_empty_dir(moved)):
      storage.remove_tree(moved)
  staged_report = os.path.join(staging, REPORT_FOLDER)
  moved_scores = os.path.join(output, SCORED_FOLDER)
  if (storage.is_dir(staged_report)
      and not storage.exists(os.path.join(staging, SCORED_FOLDER))
      and not storage.exists(os.path.join(output, REPORT_FOLDER))
      and storage.is_dir(moved_scores)):
    storage.remove_tree(moved_scores)
  click.echo(f'removing what an earlier run that did not finish left in {staging}')
  storage.remove_tree(staging)


def publish_output(staging: str, output: str) -> None:
  """Moves the complete folders from `staging` to their names under `output`: the
  scored examples first, the report (the sign that the run finished) last, and its
  summary.json last of all."""
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  from components.vog import vocabulary as vocab  # pylint: disable=g-import-not-at-top
  for name in (SCORED_FOLDER, REPORT_FOLDER):
    # An empty folder under the name gives way: prepare_output refused a full one.
    storage.move_tree(os.path.join(staging, name), os.path.join(output, name),
                      last=(vocab.SUMMARY_FILE,))
  storage.remove_tree(staging)


def discard_output(staging: str, created: Optional[str]) -> None:
  """Removes what a run that failed wrote, and `created` (the --output folder this run
  made) when nothing else is in it."""
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  try:
    storage.remove_tree(staging)
    if created is not None and storage.is_empty_dir(created):
      storage.remove_tree(created)
  except storage.ERRORS:
    pass


def _size_text(size: int) -> str:
  return f'{size / 1e6:.1f} MB' if size >= 1e5 else f'{size / 1e3:.1f} kB'


def runner_args(runner: str, dask_address: Optional[str], partitions: Optional[int],
                num_units: int, beam_args: Sequence[str]) -> List[str]:
  """The Beam arguments --runner names: none for direct; for dask the DaskRunner's class
  path, the scheduler's address and the partitions (by default one per work unit, so
  that each unit's work can go to its own worker).

  Refuses (exit 2, one line) --runner dask without a reachable --dask-address, a
  --dask-address or --dask-partitions without it, a partition count below 1, and a
  --beam-arg=--runner beside --runner dask.
  """
  if runner != 'dask':
    if dask_address or partitions is not None:
      fail('--dask-address and --dask-partitions go with --runner dask')
    return []
  if _runner_of(beam_args) is not None:
    fail('--runner dask and --beam-arg=--runner both name a runner; give one of them')
  if not dask_address:
    fail('--runner dask needs --dask-address HOST:PORT of a dask.distributed scheduler '
         '(start one with `dask scheduler`, and workers with `dask worker HOST:PORT`)')
  address = dask_address[len('tcp://'):] if dask_address.startswith('tcp://') else dask_address
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit():
    fail(f'--dask-address {dask_address!r} is not HOST:PORT, e.g. 127.0.0.1:8786')
  try:
    socket.create_connection((host, int(port)), timeout=DASK_CONNECT_TIMEOUT_S).close()
  except OSError as e:
    fail(f'--dask-address {dask_address}: no scheduler answers there ({e}); start one with '
         '`dask scheduler` and give its address')
  if partitions is not None and partitions < 1:
    fail(f'--dask-partitions {partitions}; give 1 or more')
  return [f'--runner={DASK_RUNNER}', f'--dask_client_address={address}',
          f'--dask_npartitions={partitions or max(num_units, 1)}']


def _runner_of(beam_args: Sequence[str]) -> Optional[str]:
  for i, arg in enumerate(beam_args):
    if arg.startswith('--runner='):
      return arg.split('=', 1)[1]
    if arg == '--runner' and i + 1 < len(beam_args):
      return beam_args[i + 1]
  return None


def _shows_bar(stream: IO[str], beam_args: Sequence[str]) -> bool:
  """A bar on a terminal when the workers run on this machine; log lines otherwise."""
  try:
    terminal = stream.isatty()
  except (AttributeError, ValueError):
    terminal = False
  runner = _runner_of(beam_args)
  return terminal and (runner is None or runner.split('.')[-1] in LOCAL_RUNNERS)


def _paths_of(plan, split: str) -> List[str]:
  """The paths of a split's input files."""
  return [f.path for f in plan.split_files[split]]


def _estimate(plan) -> Optional[int]:
  """About how many examples the plan's files hold; None when a split cannot tell."""
  from components.vog.dataflow import progress  # pylint: disable=g-import-not-at-top
  total = 0
  for split in plan.split_files:
    count = progress.estimate_records(_paths_of(plan, split),
                                      plan.split_files[split][0].compression)
    if count is None:
      return None
    total += count
  return total


def run_with_progress_bar(run, num_files: int, estimated_total: Optional[int],
                          stream: IO[str], interval_s: float = 0.5):
  """Calls `run(sink)` while a progress bar on `stream` follows the sink's counts.

  `run` gets a ProgressSink in a fresh local folder and is the audit itself; its
  result is returned and its exception raised, after the bar's last line is drawn and
  the folder removed. `num_files` input files make the total exact once all are read;
  until then `estimated_total` is shown (with `~`).
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  from components.vog.dataflow import progress  # pylint: disable=g-import-not-at-top
  folder = tempfile.mkdtemp(prefix='vog-progress-')
  # Info lines would break into the bar's line; warnings and errors still show.
  verbosity = logging.get_verbosity()
  root = py_logging.getLogger()
  root_level = root.level
  logging.set_verbosity(logging.WARNING)
  root.setLevel(max(root_level, py_logging.WARNING))
  try:
    sink = progress.ProgressSink(folder)
    with progress.ProgressBar(folder, num_files, estimated_total, stream,
                              interval_s=interval_s):
      return run(sink)
  finally:
    logging.set_verbosity(verbosity)
    root.setLevel(root_level)
    shutil.rmtree(folder, ignore_errors=True)
