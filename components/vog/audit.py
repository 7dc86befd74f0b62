"""One VoG audit from start to end: check the configuration, run Beam, write the report.

The TFX executor and `vog-audit score` both call `plan_audit` then `run_audit`, so the
component and the command line share one code path. Configuration problems fail in
`plan_audit`, before Beam starts; per-example problems go to the quarantine shards.
"""

import datetime
import hashlib
import json
import os
import re
import uuid
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
import tensorflow as tf

from components.vog.dataflow import audit_summary
from components.vog.dataflow import beam_audit
from components.vog.dataflow import beam_writers
from components.vog.inputs import checkpoints
from components.vog.dataflow import drift as drift_lib
from components.vog.inputs import examples_io
from components.vog.inputs import record_files
from components.vog.report import report_folder
from components.vog.report import report_format as fmt
from components.vog import vocabulary as vocab
from components.vog.compute import stages
from components.vog.inputs import storage
from components.vog.inputs import transform_inputs
from components.vog.compute.scoring import VogScorer
from components.vog.settings import VogSettings

PEEK_RECORDS = 50
# summary.json's record of the transform graph the model inputs were made with (its
# folder), null when the model took the raw features.
TRANSFORM_GRAPH = 'transform_graph'


class AuditConfigError(ValueError):
  """A configuration problem found before any example is scored."""


class AuditInputError(AuditConfigError):
  """An input file that cannot be read (damaged framing); names the file and where."""


# A user module file larger than this is refused: it is Python source, not data.
MAX_MODULE_BYTES = 4 << 20
_STAGED_MODULES: Dict[str, str] = {}  # sha256 of a module's source -> its local copy


class UserModule(NamedTuple):
  """A user module file (vog_inputs_fn, custom_objects) read once, where the audit is
  planned: its path (for messages) and its source, which travels with the pipeline to
  every worker, so that workers need neither the planner's disk nor access to its
  storage, and all of them run the same code."""
  path: str
  source: bytes

  @property
  def digest(self) -> str:
    return hashlib.sha256(self.source).hexdigest()


def read_user_module(module_file: Optional[str]) -> Optional[UserModule]:
  """The UserModule of `module_file` (a path or URI), None without one. Raises
  AuditConfigError for a file that is missing, not a regular file, or above
  MAX_MODULE_BYTES."""
  if not module_file:
    return None
  if not tf.io.gfile.exists(module_file):
    raise AuditConfigError(f'module_file {module_file} does not exist')
  try:
    return UserModule(module_file, record_files.read_bounded(module_file, MAX_MODULE_BYTES))
  except record_files.UnreadableFile as e:
    raise AuditConfigError(f'module_file {e}; give a Python source file') from None


def _staged_path(module: UserModule) -> str:
  """A local copy of the module's source, written once per process and source."""
  digest = module.digest
  path = _STAGED_MODULES.get(digest)
  if path is None or not os.path.exists(path):
    import tempfile  # pylint: disable=g-import-not-at-top
    folder = tempfile.mkdtemp(prefix='vog-user-module-')
    stem = os.path.splitext(os.path.basename(module.path))[0]
    name = re.sub(r'[^A-Za-z0-9_]', '_', stem) or 'module'
    path = os.path.join(folder, f'{name}_{digest[:12]}.py')
    with open(path, 'wb') as f:
      f.write(module.source)
    _STAGED_MODULES[digest] = path
  return path


def load_user_module(module: Optional[UserModule]
                     ) -> Tuple[Optional[examples_io.InputsFn], Dict[str, Any]]:
  """(vog_inputs_fn or None, custom_objects) from a user module, imported from a local
  copy of its source."""
  if module is None:
    return None, {}
  from tfx.utils import import_utils  # pylint: disable=g-import-not-at-top
  path = _staged_path(module)
  try:
    inputs_fn = import_utils.import_func_from_source(path, 'vog_inputs_fn')
  except AttributeError:
    inputs_fn = None
  try:
    custom_objects = import_utils.import_func_from_source(path, 'custom_objects')
  except AttributeError:
    custom_objects = {}
  if inputs_fn is None and not custom_objects:
    raise AuditConfigError(f'module_file {module.path} defines neither vog_inputs_fn '
                           'nor custom_objects; define one or drop module_file')
  if callable(custom_objects):
    custom_objects = custom_objects()
  return inputs_fn, dict(custom_objects)


def _peek(files: Sequence[beam_audit.InputFile], count: int) -> List[bytes]:
  """The first `count` records of the split; AuditInputError where framing is damaged."""
  peeked: List[bytes] = []
  for input_file in files:
    try:
      for _, record in beam_audit.read_records(input_file):
        if len(peeked) >= count:
          return peeked
        if not isinstance(record, record_files.OversizedRecord):  # quarantined later
          peeked.append(record)
    except record_files.DamagedRecordFile as e:
      raise AuditInputError(f'input file {e} - rewrite it or leave it out of the '
                            'examples; nothing was scored') from None
  return peeked


def input_files(split: str, pattern: str, max_record_bytes: Optional[int] = None
                ) -> List[beam_audit.InputFile]:
  """The regular files a split's pattern matches, sorted, with their sizes; their
  records above `max_record_bytes` are quarantined unread.

  One listing (a glob), then the matches' sizes (which also tell folders from files):
  on a remote store storage.REMOTE_THREADS at a time. No file is opened here: each
  file's compression is found when it is read.
  """
  paths = sorted(tf.io.gfile.glob(pattern))
  infos = storage.each(pattern, tf.io.gfile.stat, paths)
  files = [(p, i.length) for p, i in zip(paths, infos) if not i.is_directory]
  return [beam_audit.InputFile(split, i, p, None, max_record_bytes, size)
          for i, (p, size) in enumerate(files)]


class ScorerFactory:
  """Loads the selected checkpoints into a VogScorer; runs once per Beam worker.

  `cache_key()` names what it loads and how it scores, so workers share one scorer
  across threads. `gradient_layers` and `pad_id` are the VogSettings fields of the name.
  """

  def __init__(self, entries: Sequence[checkpoints.CheckpointEntry],
               user_module: Optional[UserModule], target: str, label_mode: str,
               gradient_layers: Optional[Sequence[str]] = None,
               pad_id: Optional[int] = None):
    self.entries = list(entries)
    self.user_module = user_module
    self.target = target
    self.label_mode = label_mode
    self.gradient_layers = None if gradient_layers is None else list(gradient_layers)
    self.pad_id = pad_id

  def cache_key(self) -> str:
    module = None if self.user_module is None else self.user_module.digest
    text = json.dumps([[e.path for e in self.entries], module, self.target,
                       self.label_mode, self.gradient_layers, self.pad_id])
    return hashlib.sha256(text.encode()).hexdigest()

  def __call__(self) -> VogScorer:
    # load_checkpoint_models turns on GPU memory growth (devices.grow_gpu_memory) first.
    _, custom_objects = load_user_module(self.user_module)
    models = checkpoints.load_checkpoint_models(self.entries, custom_objects)
    return VogScorer(models, self.target, self.label_mode,
                     gradient_layers=self.gradient_layers, pad_id=self.pad_id)


class ParserFactory:
  """Builds the parser inside each Beam worker (user functions load there).

  An ExampleParser; with `transform_graph` (a TransformGraph folder) a
  transform_inputs.TransformParser, which feeds the model the transformed features.
  """

  def __init__(self, input_specs, settings: VogSettings, num_classes: int,
               user_module: Optional[UserModule], transform_graph: Optional[str] = None):
    self.input_specs = input_specs
    self.settings = settings
    self.num_classes = num_classes
    self.user_module = user_module
    self.transform_graph = transform_graph

  def __call__(self):
    if self.transform_graph:
      return transform_inputs.TransformParser(
          self.transform_graph, self.input_specs, self.settings.label_key,
          self.settings.label_mode == 'label', self.num_classes,
          self.settings.example_id_key)
    inputs_fn, _ = load_user_module(self.user_module)
    return examples_io.ExampleParser(
        self.input_specs, self.settings.label_key,
        self.settings.label_mode == 'label', self.num_classes,
        self.settings.example_id_key, inputs_fn)


class AuditPlan:
  """A checked audit: settings, checkpoints, model inputs and the files of each split."""

  def __init__(self, settings, entries, input_specs, num_classes, split_files,
               user_module, baseline, transform_graph=None):
    self.settings: VogSettings = settings
    self.entries: List[checkpoints.CheckpointEntry] = entries
    self.input_specs: List[examples_io.InputSpec] = input_specs
    self.num_classes: int = num_classes
    self.split_files: Dict[str, List[beam_audit.InputFile]] = split_files
    # Each split's files grouped into the units one worker reads and writes.
    self.split_units: Dict[str, List[beam_audit.WorkUnit]] = {
        split: beam_audit.work_units(files) for split, files in split_files.items()}
    # The user module's source, read once here; None without a module_file.
    self.user_module: Optional[UserModule] = user_module
    # The audit compared with, read at plan time; None without a baseline.
    self.baseline: Optional[drift_lib.Baseline] = baseline
    # The TransformGraph folder whose output the model takes; None: the raw features.
    self.transform_graph: Optional[str] = transform_graph


def plan_audit(settings: VogSettings, model_run_dir: str,
               split_patterns: Mapping[str, str], module_file: Optional[str] = None,
               schema_features: Optional[Sequence[str]] = None,
               baseline: Optional[Dict[str, Any]] = None,
               transform_graph: Optional[str] = None) -> AuditPlan:
  """Checks everything that can be checked before Beam starts.

  `split_patterns` maps each available split to a file pattern; `baseline` ({'uri': the
  report folder of the last shipped model's audit, ...}) is what drift compares with: one
  that cannot be read makes the drift `unavailable`, never the audit fail.
  `transform_graph` is the folder of a Transform output when the model takes
  transformed features: the examples are raw, and each batch goes through the graph
  before scoring. Raises AuditConfigError (or CheckpointError) for bad settings,
  manifest problems, a requested split that does not exist or is empty, model inputs
  or the label missing from the examples; with a transform graph, also for a graph that
  cannot be read, a model input it does not produce, a raw feature it reads that the
  examples lack, and a module_file defining vog_inputs_fn (one or the other).
  """
  try:
    settings.validate()
  except ValueError as e:
    raise AuditConfigError(str(e)) from e
  entries = checkpoints.load_manifest(model_run_dir)
  try:
    steps = stages.checkpoints_for_stage([e.step for e in entries], settings.stage,
                                         settings.num_checkpoints)
  except ValueError as e:
    raise AuditConfigError(f'{e} (manifest under {model_run_dir})') from e
  chosen = [e for e in entries if e.step in set(steps)]
  user_module = read_user_module(module_file)
  inputs_fn, custom_objects = load_user_module(user_module)
  transform_output = None
  if transform_graph:
    if inputs_fn is not None:
      raise AuditConfigError(
          f'module_file {module_file} defines vog_inputs_fn and a transform graph '
          f'({transform_graph}) is given too; both make the model inputs - use the '
          'transform graph alone, or drop it and let vog_inputs_fn make the inputs')
    try:
      transform_output = transform_inputs.load_transform_output(transform_graph)
    except transform_inputs.TransformGraphError as e:
      raise AuditConfigError(str(e)) from e
  models = checkpoints.load_checkpoint_models(chosen, custom_objects)
  try:
    scorer = VogScorer(models, settings.target, settings.label_mode,
                       gradient_layers=settings.gradient_layers, pad_id=settings.pad_id)
  except ValueError as e:
    raise AuditConfigError(str(e)) from e
  input_specs = examples_io.input_specs_of(models[-1])
  for spec in input_specs:
    if any(d is None for d in spec.shape):
      raise AuditConfigError(
          f'model input {spec.name!r} has shape {spec.shape} with an unknown size; ' +
          ('give the model fixed-size inputs, as the transform graph produces them'
           if transform_graph else
           'give a module_file whose vog_inputs_fn returns fixed-size inputs'))
  raw_features = None
  if transform_output is not None:
    try:
      transform_inputs.check_model_inputs(transform_output, input_specs, transform_graph)
    except transform_inputs.TransformGraphError as e:
      raise AuditConfigError(str(e)) from e
    raw_features = transform_inputs.required_raw_features(transform_output)

  wanted = settings.splits or list(split_patterns)
  unknown = [s for s in wanted if s not in split_patterns]
  if unknown:
    raise AuditConfigError(f'split(s) {unknown} do not exist in the examples; '
                           f'available: {sorted(split_patterns)}')
  if isinstance(settings.copy_splits, list):
    not_scored = [s for s in settings.copy_splits if s not in wanted]
    if not_scored:
      raise AuditConfigError(
          f'copy_splits names {not_scored}, which the audit does not score (it scores '
          f'{wanted}) - name scored splits, or leave copy_splits unset for the default')
  split_files = {}
  for split in wanted:
    files = input_files(split, split_patterns[split], settings.max_record_bytes)
    peeked = _peek(files, PEEK_RECORDS)
    if not peeked:
      raise AuditConfigError(f'split {split!r} holds no examples ({split_patterns[split]})'
                             ' - check the examples, or leave the split out with splits=')
    split_files[split] = files
    _check_features(split, peeked, schema_features, input_specs, inputs_fn, settings,
                    raw_features, transform_graph)
  logging.info('VoG audit planned: %d of %d checkpoints (steps %s), splits %s, inputs %s',
               len(chosen), len(entries), steps, wanted,
               [(s.name, s.shape) for s in input_specs])
  if transform_graph:
    logging.info('VoG model inputs come from the transform graph %s (raw features %s)',
                 transform_graph, raw_features)
  compared_with = None if baseline is None else drift_lib.load_baseline(
      baseline, settings.ranked_by)
  return AuditPlan(settings, chosen, input_specs, scorer.num_classes, split_files,
                   user_module, compared_with, transform_graph or None)


def _check_features(split, peeked, schema_features, input_specs, inputs_fn, settings,
                    raw_features=None, transform_graph=None):
  """Refuses model inputs or a label that no example of the split carries.

  With a transform graph, `raw_features` (the raw features it needs in every example)
  are checked instead of the model inputs, which the graph makes.
  """
  if schema_features is not None:
    present = set(schema_features)
  else:
    present = set()
    for record in peeked:
      try:
        present.update(tf.train.Example.FromString(record).features.feature.keys())
      except Exception:  # An unparsable record is quarantined later.
        continue
    if not present:
      return  # Nothing parsable to judge by; Beam quarantines each bad record.
  if raw_features is not None:
    missing = [name for name in raw_features if name not in present]
    if missing:
      raise AuditConfigError(
          f'raw feature(s) {missing} that the transform graph {transform_graph} reads are '
          f'not features of split {split!r} (it has {sorted(present)}) - give the raw '
          'examples the transform graph was made for (those Transform read)')
  elif inputs_fn is None:
    missing = [s.name for s in input_specs if s.name not in present]
    if missing:
      raise AuditConfigError(
          f'model input(s) {missing} are not features of split {split!r} (it has '
          f'{sorted(present)}) - name the model inputs like the features, or give a '
          'module_file with vog_inputs_fn(features) -> model inputs')
  if settings.label_mode == 'label' and settings.label_key not in present:
    raise AuditConfigError(
        f'label_key {settings.label_key!r} is not a feature of split {split!r} (it has '
        f'{sorted(present)}) - set label_key, or use label_mode=predicted for '
        'unlabeled data')


def run_audit(plan: AuditPlan, pipeline: beam.Pipeline, scored_examples_dir: str,
              report_dir: str, progress=None) -> Dict[str, Any]:
  """Runs the Beam audit and publishes the report; returns summary.json's content.

  The pipeline writes the scored examples and the report's work files (the summary
  is combined inside it); then, before anything is published, the driver checks that
  every example read was written or quarantined (AuditLostExamples otherwise) and
  that no input file was damaged (AuditInputError naming the file and the record
  where reading stopped). `progress` is an optional progress.ProgressSink.
  """
  settings = plan.settings
  splits = list(plan.split_files)
  work_dir = os.path.join(report_dir, f'.work-{uuid.uuid4().hex[:8]}')
  tf.io.gfile.makedirs(work_dir)
  scorer_factory = ScorerFactory(plan.entries, plan.user_module, settings.target,
                                 settings.label_mode,
                                 gradient_layers=settings.gradient_layers,
                                 pad_id=settings.pad_id)
  parser_factory = ParserFactory(plan.input_specs, settings, plan.num_classes,
                                 plan.user_module, plan.transform_graph)
  all_units = [u for units in plan.split_units.values() for u in units]
  shard_of = {(u.split, u.unit_index): i for i, u in enumerate(all_units)}

  baseline = plan.baseline
  comparable = baseline is not None and baseline.unavailable is None
  outputs = beam_writers.FileOutputs(
      scored_dir=scored_examples_dir, work_dir=work_dir,
      units_per_split={s: len(u) for s, u in plan.split_units.items()},
      copy_splits=tuple(settings.copied_splits(splits)),
      compression=settings.output_compression, example_id_key=settings.example_id_key,
      rank_by=settings.ranked_by, history_shard_of=shard_of,
      num_history_shards=len(all_units), write_history=not comparable,
      with_signals=settings.label_mode == 'label')

  units = pipeline | 'ListWorkUnits' >> beam.Create(all_units)
  read = units | 'ReadRecords' >> beam_audit.ReadRecordBatches(settings.batch_size, progress)
  results = read['batches'] | 'ScoreExamples' >> beam_audit.ScoreExamples(
      settings, scorer_factory, parser_factory, progress)
  # Records above max_record_bytes are quarantined by the reader, the others by the scorer.
  quarantined = ((read['quarantined'], results['quarantined'])
                 | 'AllQuarantined' >> beam.Flatten())
  written = ({'units': units, 'files_read': read['files'], 'scored': results['scored'],
              'quarantined': quarantined, 'ranking': results['ranking']}
             | 'WriteScoredExamples' >> beam_writers.WriteScoredExamples(outputs))
  # With a baseline, each example is matched with its row in the baseline's history by
  # example_id; without one, the writers wrote the history already.
  history = written.pop('history')
  more_tallies = {}
  if comparable:
    then = pipeline | 'ListBaselineHistory' >> beam.Create(list(baseline.history_paths))
    more_tallies['more_tallies'] = ({'now': history, 'then': then}
                                    | 'MatchHistory' >> drift_lib.MatchHistory(
                                        work_dir, len(all_units)))['tallies']
  # The report is written last: its summary waits for every other writer.
  _ = ({'files_read': read['files'], 'quarantined': quarantined,
        'class_stats': results['class_stats'], **more_tallies, **written}
       | 'WriteDifficultyReport' >> beam_writers.WriteDifficultyReport(
           work_dir, splits, _summary_base(plan), shard_of, len(all_units),
           hard_cut=settings.bucket_percentiles[1]))
  result = pipeline.run()
  result.wait_until_finish()

  summary = _read_work_summary(work_dir)
  summary['beam_counters'] = _counters(result)
  flagged, records = report_folder.read_flagged(
      os.path.join(work_dir, beam_writers.FLAGGED_RECORDS_FILE))
  audit_summary.check_conservation(summary, len(flagged))
  summary['drift'] = None if baseline is None else drift_lib.class_drift(
      summary, baseline).to_json()
  if summary['drift'] is not None and summary['drift']['unavailable'] is None:
    statuses = drift_lib.read_flag_status(work_dir)
    for row in flagged:
      status, streak = statuses.get(row['rank'], (None, None))
      if status is None:
        raise audit_summary.AuditLostExamples(
            f'flagged example rank {row["rank"]} ({row["example_id"]}) has no drift status; '
            'nothing was published - report this with the Beam logs')
      row.update(drift_status=status, flagged_streak=streak)
  if summary['damaged_files']:
    raise AuditInputError('; '.join(
        f'input file {d["damage"]} (split {d["split"]!r})'
        for d in summary['damaged_files'])
        + ' - nothing was published; rewrite the damaged files or leave them out')
  report_folder.publish(
      report_dir, work_dir, tf.io.gfile.glob(os.path.join(work_dir, vocab.QUARANTINE_GLOB)),
      tf.io.gfile.glob(os.path.join(work_dir, vocab.HISTORY_GLOB)),
      len(all_units), summary, flagged, records,
      report_folder.previews_of(parser_factory(), plan.input_specs, flagged, records))
  tf.io.gfile.rmtree(work_dir)
  # What writers that were killed and retried left in the scored copies' folder.
  scored_temp = record_files.temp_folder(scored_examples_dir)
  if tf.io.gfile.exists(scored_temp):
    tf.io.gfile.rmtree(scored_temp)
  counts = summary['counts']
  logging.info('VoG audit done: seen %d, scored %d, quarantined %d, flagged %d',
               counts['seen'], counts['scored'], counts['quarantined'], counts['flagged'])
  return summary


def _read_work_summary(work_dir: str) -> Dict[str, Any]:
  path = os.path.join(work_dir, beam_writers.SUMMARY_WORK_FILE)
  if not tf.io.gfile.exists(path):
    raise audit_summary.AuditLostExamples(
        f'the Beam pipeline finished without writing {path}; nothing was published - '
        'report this with the Beam logs')
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _counters(result) -> Dict[str, int]:
  """The audit's Beam counters (seen, scored, quarantined, batches) as the runner has them.

  Empty where the runner has no metrics API (the Dask runner, for one).
  """
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=g-import-not-at-top
  try:
    found = result.metrics().query(
        MetricsFilter().with_namespace(beam_audit.NAMESPACE))['counters']
  except (NotImplementedError, AttributeError):
    return {}
  counters: Dict[str, int] = {}
  for counter in found:
    value = counter.committed if counter.committed is not None else counter.attempted
    counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value)
  return counters


def _summary_base(plan: AuditPlan) -> Dict[str, Any]:
  """What summary.json says of the plan; the pipeline adds what it counted."""
  return {
      'format_version': vocab.FORMAT_VERSION,
      'created_at': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
      'settings': dict(plan.settings.to_json(), splits=list(plan.split_files)),
      vocab.RANKED_BY: plan.settings.ranked_by,
      'checkpoints': [{'path': e.path, 'epoch': e.epoch, 'step': e.step}
                      for e in plan.entries],
      'num_classes': plan.num_classes,
      'model_inputs': [{'name': i.name, 'shape': list(i.shape), 'dtype': i.dtype}
                       for i in plan.input_specs],
      'input_files': {split: len(files) for split, files in plan.split_files.items()},
      # The splits scored_examples holds in full; every split has its score table.
      'copied_splits': plan.settings.copied_splits(list(plan.split_files)),
      'baseline': None if plan.baseline is None else plan.baseline.info,
      # The TransformGraph folder the model inputs were made with; None: raw features.
      TRANSFORM_GRAPH: plan.transform_graph,
      'drift': None,
      'signals': signals_note(plan.settings),
  }


def signals_note(settings: VogSettings) -> Dict[str, Any]:
  """summary.json's `signals`: the label-error signal fields the examples carry, or why
  there are none."""
  if settings.label_mode == 'label':
    return {'fields': list(vocab.SIGNAL_FIELDS), 'left_out': None}
  return {'fields': [], 'left_out': (
      "label_mode='predicted': the signals compare the checkpoints with the label, and "
      "without one the target is the model's own prediction, so they are left out")}


def rebuild_report_page(report_dir: str, module_file: Optional[str] = None) -> str:
  """Rebuilds report.html (and flagged.png) from a difficulty report folder alone.

  Reads the folder through report_format.load_report; `module_file` only when the
  audit used a vog_inputs_fn. The transform graph the audit used (summary.json's
  `transform_graph`) makes the thumbnails' inputs; where it is gone the page is built
  without thumbnails. Returns the page's path. Raises AuditConfigError naming a missing
  or malformed file.
  """
  for path in [os.path.join(report_dir, name) for name in (
      vocab.SUMMARY_FILE, vocab.FLAGGED_FILE, vocab.FLAGGED_EXAMPLES_FILE)] + tf.io.gfile.glob(
          os.path.join(report_dir, vocab.QUARANTINE_GLOB)):
    # A missing file is named by the loader; one that is no regular file is never
    # opened (a FIFO would wait forever, a folder fail in TensorFlow's reader).
    problem = (record_files.file_problem(path) if tf.io.gfile.exists(path) else None)
    if problem is not None:
      raise AuditConfigError(f'{problem} - give the difficulty_report folder of an audit')
  try:
    report = fmt.load_report(report_dir)
    examples = report.flagged_examples()
  except fmt.ReportFormatError as e:
    raise AuditConfigError(str(e)) from e
  except RecursionError:
    raise AuditConfigError(f'{os.path.join(report_dir, vocab.SUMMARY_FILE)} or '
                           f'{vocab.FLAGGED_FILE} nests too deep to be an audit\'s - give the '
                           'difficulty_report folder of an audit') from None
  except (OSError, tf.errors.OpError) as e:
    raise AuditConfigError(f'the report in {report_dir} cannot be read '
                           f'({_error_text(e)})') from None
  summary = report.summary
  if summary.model_inputs is None or summary.num_classes is None:
    raise AuditConfigError(f'the summary.json in {report_dir} lacks model_inputs or '
                           'num_classes; it was written by an older release - re-run the '
                           'audit')
  input_specs = [examples_io.InputSpec(i.name, tuple(i.shape), i.dtype)
                 for i in summary.model_inputs]
  try:
    settings = VogSettings.from_json(summary.settings)
  except ValueError as e:
    raise AuditConfigError(f'the settings in {report_dir}/{vocab.SUMMARY_FILE} are not '
                           f'valid: {e}') from e
  flagged = [fmt.flagged_row_to_json(row) for row in report.flagged]
  records = {row.rank: record for row, record in zip(report.flagged, examples)}
  transform_graph = summary.raw.get(TRANSFORM_GRAPH)
  if transform_graph and not tf.io.gfile.isdir(transform_graph):
    logging.warning('The transform graph %s of this audit is gone; report.html is built '
                    'without thumbnails', transform_graph)
    parser = _NoThumbnails()
  else:
    parser = ParserFactory(input_specs, settings, summary.num_classes,
                           read_user_module(module_file),
                           transform_graph or None)()
  try:
    report_folder.write_report_page(
        report_dir, summary.raw, flagged,
        report_folder.previews_of(parser, input_specs, flagged, records))
  except fmt.ReportFormatError as e:  # a bad quarantine shard, read for the page's sample
    raise AuditConfigError(str(e)) from e
  except (OSError, tf.errors.OpError) as e:  # a folder this user cannot write, say
    raise AuditConfigError(f'the review page cannot be written into {report_dir} '
                           f'({_error_text(e)}) - make the folder writable, or copy it '
                           'somewhere writable and rebuild the page there') from None
  return report.page_path


def _error_text(error: Exception) -> str:
  """What a file system error says, without TensorFlow's traceback-like detail."""
  text = getattr(error, 'strerror', None) or getattr(error, 'message', None) or str(error)
  return ' '.join(str(text).split())[:300]


class _NoThumbnails:
  """A parser for the report's previews that makes no model inputs (no thumbnails)."""

  def parse(self, split: str, serialized: bytes) -> examples_io.Quarantined:
    return examples_io.Quarantined(split, examples_io.fingerprint(serialized),
                                   'no transform graph', 'the transform graph is gone',
                                   serialized)
