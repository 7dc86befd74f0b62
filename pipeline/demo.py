"""The demo: a reference audit pipeline on data with flipped labels, run locally, summarised.

`run_demo(output_dir, dataset=...)` writes the demo data of a reference data set
(pipeline.reference.reference_datasets: `digits`, the default; `tabular` or `text`, whose pipelines
put Transform before the Trainer), runs `audit_pipeline.create_pipeline` with
LocalDagRunner and prints what the run found, read back from ML Metadata. Under
`output_dir`:

    data/              the demo TFRecords and demo_data.json (pipeline.reference.demo_data,
                       pipeline.reference.tabular_data, pipeline.reference.text_data)
    pipeline/          the pipeline root: every artifact; reviews/ for the `local` backend
    metadata.sqlite    ML Metadata (SQLite)
    serving/           the pushed model, one numbered folder per push, only when blessed
    demo.log           what TFX, Beam and TensorFlow wrote while the pipeline ran

A folder that holds an earlier demo is reused, never refused: it is the next scheduled
audit. The data is rewritten only when the noise rate, the seed or the size change it, and
TFX's cache skips the steps before the audit whose inputs are unchanged. Each later run
audits against the audit of the last model that shipped (its report's "since the last
shipped model" section, and the drift line printed here), so VarianceOfGradients and the
steps after it run again; a newly trained model must also pass the Evaluator's change
threshold against the last blessed one before it is pushed. For example, a second run with
`--noise-rate 0.2` retrains on twice as many flipped labels and reports what changed.
A folder holds the demo of one data set: one that holds another's is refused, by name.
"""

import contextlib
import dataclasses
import io
import json
import logging as py_logging
import os
import shutil
import tempfile
import time
import sys
from typing import Callable, Dict, Iterator, Optional

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf-keras); this must precede any TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

from pipeline.reference import demo_data  # pylint: disable=g-import-not-at-top
from pipeline import demo_summary  # pylint: disable=g-import-not-at-top
from pipeline.reference import reference_datasets  # pylint: disable=g-import-not-at-top
from pipeline.config import MetadataConfig, PipelineConfig  # pylint: disable=g-import-not-at-top

DATA_DIR = 'data'
PIPELINE_DIR = 'pipeline'
METADATA_FILE = 'metadata.sqlite'
SERVING_DIR = 'serving'
LOG_FILE = 'demo.log'
PIPELINE_NAME = 'vog-audit-demo'  # the digits demo's; the others add their data set's name
DEFAULT_NOISE_RATE = 0.1
DEFAULT_SEED = 0

Echo = Callable[[str], None]


class PipelineRunError(RuntimeError):
  """A step of the pipeline failed while running (not a bad setting)."""


def pipeline_name(dataset: str) -> str:
  """The demo pipeline's name for `dataset`: `vog-audit-demo` for digits, else
  `vog-audit-demo-<dataset>`."""
  return PIPELINE_NAME if dataset == reference_datasets.DIGITS else f'{PIPELINE_NAME}-{dataset}'


def demo_config(output_dir: str, **overrides) -> PipelineConfig:
  """The PipelineConfig of the demo layout under `output_dir`.

  `overrides` are PipelineConfig fields (dataset, epochs, inspection_budget,
  review_backend, ...); an unknown field raises TypeError naming it.
  """
  output_dir = os.path.abspath(output_dir)
  dataset = overrides.get('dataset', reference_datasets.DIGITS)
  settings = dict(
      pipeline_name=pipeline_name(dataset),
      data_root=os.path.join(output_dir, DATA_DIR),
      pipeline_root=os.path.join(output_dir, PIPELINE_DIR),
      serving_model_dir=os.path.join(output_dir, SERVING_DIR),
      metadata=MetadataConfig(sqlite_path=os.path.join(output_dir, METADATA_FILE)))
  settings.update(overrides)
  return PipelineConfig(**settings)


def _examples(path: str):
  """The tf.Examples of a GZIP TFRecord file, parsed: the bytes of equal Examples can
  differ between processes, because feature maps serialize in hash order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path, compression_type='GZIP')]


def dataset_in(data_root: str) -> Optional[str]:
  """The reference data set whose demo data `data_root` holds; None when it holds none."""
  path = os.path.join(data_root, demo_data.SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError):
    return None
  # The digits summary predates the field.
  return str(recorded.get('dataset', reference_datasets.DIGITS))


def prepare_data(data_root: str, noise_rate: float, seed: int,
                 num_examples: Optional[int] = None,
                 dataset: str = reference_datasets.DIGITS
                 ) -> Dict[str, demo_data.SplitSummary]:
  """Writes the demo data of `dataset` to `data_root`, leaving files alone that already
  hold the same.

  Unchanged files keep their modification time, which is what lets ImportExampleGen (and
  with it every later step) reuse the previous run. Returns the per-split summary.

  Raises:
    ValueError: an unknown data set, a noise rate outside [0, 1], a size the data set
      cannot give, or a `data_root` that holds another data set's demo data.
  """
  reference = reference_datasets.reference_dataset(dataset)
  found = dataset_in(data_root)
  if found is not None and found != dataset:
    raise ValueError(f'{os.path.dirname(os.path.abspath(data_root))} holds the {found} '
                     f'demo; give another output folder for the {dataset} demo')
  staging = tempfile.mkdtemp(prefix='.staging-', dir=os.path.dirname(data_root) or '.')
  try:
    written = reference.write(staging, flip_fraction=noise_rate, seed=seed,
                              num_examples=num_examples)
    summary = {}
    for split, fresh in written.items():
      target = os.path.join(data_root, os.path.relpath(fresh.path, staging))
      if not (os.path.exists(target) and _examples(target) == _examples(fresh.path)):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(fresh.path, target)
      summary[split] = dataclasses.replace(fresh, path=target)
    # The summary file is not read by ExampleGen, so it may always be replaced.
    os.replace(os.path.join(staging, demo_data.SUMMARY_FILE),
               os.path.join(data_root, demo_data.SUMMARY_FILE))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return summary


class _NodeProgress(py_logging.Filter):
  """Turns LocalDagRunner's per-node log lines into one printed line per finished step.

  Installed on the `absl` logger; it passes every record on (to the terminal with
  --verbose, else to the log file), and only watches for the runner's lines.
  """

  def __init__(self, echo: Echo, total: int):
    super().__init__()
    self.echo, self._total = echo, total
    self._started: Dict[str, float] = {}
    self.finished = []
    self.running = ''

  def filter(self, record: py_logging.LogRecord) -> bool:
    if record.msg == 'Component %s is running.' and record.args:
      self.running = str(record.args[0])
      self._started[self.running] = time.monotonic()
    elif record.msg == 'Component %s is finished.' and record.args:
      node = str(record.args[0])
      self.finished.append(node)
      took = time.monotonic() - self._started.get(node, time.monotonic())
      self.echo(f'  [{len(self.finished):2d}/{self._total}] {node:<31} {took:6.1f}s')
    return True


@contextlib.contextmanager
def _output_to_log(log_path: str) -> Iterator[Callable[[Echo, str], None]]:
  """Sends everything written to file descriptors 1 and 2 to `log_path` for a while.

  Beam's worker processes, TFX's packaging of the module file and TensorFlow's C++ code
  write there directly, past Python logging; Keras prints its epochs to `sys.stdout`.
  Yields `say(echo, line)`, which calls `echo` with `sys.stdout` pointing where it pointed
  before, so the demo's own lines still show.
  """
  for stream in (sys.stdout, sys.stderr):
    stream.flush()
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  python_stdout = sys.stdout
  try:
    on_fd1 = python_stdout.fileno() == 1
  except (AttributeError, ValueError, io.UnsupportedOperation):
    on_fd1 = False
  with open(log_path, 'ab') as log:
    for fd in (1, 2):
      os.dup2(log.fileno(), fd)
  terminal = python_stdout
  if on_fd1:
    # sys.stdout itself now ends in the log, through file descriptor 1.
    terminal = io.TextIOWrapper(os.fdopen(os.dup(saved[1]), 'wb'), line_buffering=True,
                                encoding=python_stdout.encoding, errors='replace')

  def say(echo: Echo, line: str) -> None:
    current, sys.stdout = sys.stdout, terminal
    try:
      echo(line)
    finally:
      sys.stdout = current

  try:
    yield say
  finally:
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
    if on_fd1:
      terminal.close()
    for fd, copy in saved.items():
      os.dup2(copy, fd)
      os.close(copy)


def run_pipeline(config: PipelineConfig, echo: Echo = print, verbose: bool = False) -> None:
  """Runs the audit pipeline once with LocalDagRunner, printing a line per finished step.

  Raises:
    ValueError: a bad setting, before anything runs.
    PipelineRunError: a step failed; the message names it and the cause.
  """
  from absl import logging  # pylint: disable=g-import-not-at-top
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top

  pipeline = audit_pipeline.create_local_pipeline(config)
  progress = _NodeProgress(echo, len(pipeline.components))
  log_path = os.path.join(os.path.dirname(config.pipeline_root), LOG_FILE)
  absl_logger = logging.get_absl_logger()
  previous = logging.get_verbosity()
  # INFO must stay on for the runner's per-node lines to reach the filter.
  logging.set_verbosity(logging.INFO)
  absl_logger.addFilter(progress)
  propagate = absl_logger.propagate
  to_file = None
  if not verbose:
    # TFX's INFO lines go to the log file whichever handlers the process has.
    to_file = py_logging.FileHandler(log_path)
    to_file.setFormatter(py_logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    absl_logger.addHandler(to_file)
    absl_logger.propagate = False
  try:
    with contextlib.nullcontext() if verbose else _output_to_log(log_path) as say:
      if say is not None:
        progress.echo = lambda line: say(echo, line)
      tfx.orchestration.LocalDagRunner().run(pipeline)
  except Exception as e:  # pylint: disable=broad-except
    cause = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    raise PipelineRunError(f'step {progress.running or "?"} failed: {cause}' + (
        '' if verbose else f' (the logs are in {log_path})')) from e
  finally:
    if to_file is not None:
      absl_logger.removeHandler(to_file)
      to_file.close()
      absl_logger.propagate = propagate
    absl_logger.removeFilter(progress)
    logging.set_verbosity(previous)


def run_demo(output_dir: str, noise_rate: float = DEFAULT_NOISE_RATE,
             seed: int = DEFAULT_SEED, num_examples: Optional[int] = None,
             echo: Echo = print, verbose: bool = False,
             dataset: str = reference_datasets.DIGITS,
             **overrides) -> demo_summary.DemoSummary:
  """Writes the data, runs the pipeline into `output_dir` and prints the summary.

  Args:
    output_dir: the demo folder (created when missing; an earlier demo of the same data
      set there is reused, one of another is refused).
    noise_rate: share of labels flipped in each split, in [0, 1].
    seed: seeds the data (which labels flip, to what) and the Trainer.
    num_examples: a smaller sample (tests): of the 1797 digits, or of the generated
      customers or sentences (2000 each by default); the data set's default when None.
    echo: where the lines go.
    verbose: keep TFX's INFO logs.
    dataset: `digits`, `tabular` or `text` (pipeline.reference.reference_datasets).
    **overrides: PipelineConfig fields, e.g. epochs=4, review_backend='local'.

  Returns:
    The summary, as printed.

  Raises:
    ValueError: a bad setting, named, before any data is written or anything runs.
    PipelineRunError: a pipeline step failed; the message names the step and the cause.
  """
  config = demo_config(output_dir, seed=seed, dataset=dataset, **overrides)
  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top
  audit_pipeline.create_local_pipeline(config)  # refuses bad settings before any work
  if not 0.0 <= noise_rate <= 1.0:
    raise ValueError(f'noise rate {noise_rate!r} must be in [0, 1], e.g. 0.1 for 10%')
  found = dataset_in(config.data_root)
  if found is not None and found != dataset:
    raise ValueError(f'{os.path.abspath(output_dir)} holds the {found} demo; give another '
                     f'output folder for the {dataset} demo')
  os.makedirs(config.pipeline_root, exist_ok=True)
  splits = prepare_data(config.data_root, noise_rate, seed, num_examples, dataset)
  total = sum(s.examples for s in splits.values())
  flipped = sum(s.flipped for s in splits.values())
  echo(f'demo data: {total} {config.reference().noun} in {config.data_root}, {flipped} '
       f'labels flipped ({100 * noise_rate:g}%, seed {seed})')
  echo(f'running the audit pipeline into {os.path.abspath(output_dir)} '
       f'(review backend: {config.review_backend}'
       + ('' if verbose else f'; logs in {os.path.join(os.path.abspath(output_dir), LOG_FILE)}')
       + ')')
  if config.review_backend == 'local':
    echo('  the review gate will wait for an answer: vog-audit review list '
         f'--pipeline-root {config.pipeline_root}')
  started = time.monotonic()
  run_pipeline(config, echo=echo, verbose=verbose)
  echo(f'pipeline finished in {time.monotonic() - started:.0f}s')
  summary = demo_summary.read_summary(config)
  for line in demo_summary.format_summary(summary):
    echo(line)
  return summary
