"""One VoG audit from start to end: check the configuration, run Beam, write the report.

The TFX executor and `vog-audit score` both call `plan_audit` then `run_audit`, so the
component and the command line share one code path. Configuration problems fail in
`plan_audit`, before Beam starts; per-example problems go to quarantine.jsonl.
"""

import datetime
import hashlib
import json
import os
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
import tensorflow as tf

from components.vog import beam_audit
from components.vog import checkpoints
from components.vog import examples_io
from components.vog import report_folder
from components.vog import stages
from components.vog import tallies
from components.vog.scoring import VogScorer
from components.vog.settings import VogSettings

PEEK_RECORDS = 50


class AuditConfigError(ValueError):
  """A configuration problem found before any example is scored."""


def load_user_module(module_file: Optional[str]
                     ) -> Tuple[Optional[examples_io.InputsFn], Dict[str, Any]]:
  """(vog_inputs_fn or None, custom_objects) from a user module file."""
  if not module_file:
    return None, {}
  from tfx.utils import import_utils  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.exists(module_file):
    raise AuditConfigError(f'module_file {module_file} does not exist')
  try:
    inputs_fn = import_utils.import_func_from_source(module_file, 'vog_inputs_fn')
  except AttributeError:
    inputs_fn = None
  try:
    custom_objects = import_utils.import_func_from_source(module_file, 'custom_objects')
  except AttributeError:
    custom_objects = {}
  if inputs_fn is None and not custom_objects:
    raise AuditConfigError(f'module_file {module_file} defines neither vog_inputs_fn '
                           'nor custom_objects; define one or drop module_file')
  if callable(custom_objects):
    custom_objects = custom_objects()
  return inputs_fn, dict(custom_objects)


def compression_of(files: Sequence[str]) -> str:
  """GZIP when the first file starts with the gzip magic bytes, else UNCOMPRESSED."""
  with tf.io.gfile.GFile(files[0], 'rb') as f:
    return 'GZIP' if f.read(2) == b'\x1f\x8b' else 'UNCOMPRESSED'


def _peek(files: Sequence[str], compression: str, count: int) -> Optional[List[bytes]]:
  """The first `count` records; None when the file framing itself is corrupt."""
  dataset = tf.data.TFRecordDataset(list(files), compression_type=compression)
  try:
    return [r.numpy() for r in dataset.take(count)]
  except tf.errors.DataLossError:
    return None


class ScorerFactory:
  """Loads the selected checkpoints into a VogScorer; runs once per Beam worker.

  `cache_key()` names what it loads, so workers share one scorer across threads.
  """

  def __init__(self, entries: Sequence[checkpoints.CheckpointEntry],
               module_file: Optional[str], target: str, label_mode: str):
    self.entries = list(entries)
    self.module_file = module_file
    self.target = target
    self.label_mode = label_mode

  def cache_key(self) -> str:
    text = json.dumps([[e.path for e in self.entries], self.module_file, self.target,
                       self.label_mode])
    return hashlib.sha256(text.encode()).hexdigest()

  def __call__(self) -> VogScorer:
    for gpu in tf.config.list_physical_devices('GPU'):
      try:
        tf.config.experimental.set_memory_growth(gpu, True)
      except RuntimeError:  # Already initialised in this process.
        pass
    _, custom_objects = load_user_module(self.module_file)
    models = checkpoints.load_checkpoint_models(self.entries, custom_objects)
    return VogScorer(models, self.target, self.label_mode)


class ParserFactory:
  """Builds the ExampleParser inside each Beam worker (user functions load there)."""

  def __init__(self, input_specs, settings: VogSettings, num_classes: int,
               module_file: Optional[str]):
    self.input_specs = input_specs
    self.settings = settings
    self.num_classes = num_classes
    self.module_file = module_file

  def __call__(self) -> examples_io.ExampleParser:
    inputs_fn, _ = load_user_module(self.module_file)
    return examples_io.ExampleParser(
        self.input_specs, self.settings.label_key,
        self.settings.label_mode == 'label', self.num_classes,
        self.settings.example_id_key, inputs_fn)


class AuditPlan:
  """A checked audit: settings, checkpoints, model inputs and the files of each split."""

  def __init__(self, settings, entries, input_specs, num_classes, split_files,
               split_compression, module_file, baseline):
    self.settings: VogSettings = settings
    self.entries: List[checkpoints.CheckpointEntry] = entries
    self.input_specs: List[examples_io.InputSpec] = input_specs
    self.num_classes: int = num_classes
    self.split_files: Dict[str, List[str]] = split_files
    self.split_compression: Dict[str, str] = split_compression  # GZIP or UNCOMPRESSED
    self.module_file: Optional[str] = module_file
    self.baseline: Optional[Dict[str, Any]] = baseline


def plan_audit(settings: VogSettings, model_run_dir: str,
               split_patterns: Mapping[str, str], module_file: Optional[str] = None,
               schema_features: Optional[Sequence[str]] = None,
               baseline: Optional[Dict[str, Any]] = None) -> AuditPlan:
  """Checks everything that can be checked before Beam starts.

  `split_patterns` maps each available split to a file pattern. Raises
  AuditConfigError (or CheckpointError) for bad settings, manifest problems, a
  requested split that does not exist or is empty, and model inputs or the label
  missing from the examples.
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
  inputs_fn, custom_objects = load_user_module(module_file)
  models = checkpoints.load_checkpoint_models(chosen, custom_objects)
  try:
    scorer = VogScorer(models, settings.target, settings.label_mode)
  except ValueError as e:
    raise AuditConfigError(str(e)) from e
  input_specs = examples_io.input_specs_of(models[-1])
  for spec in input_specs:
    if any(d is None for d in spec.shape):
      raise AuditConfigError(
          f'model input {spec.name!r} has shape {spec.shape} with an unknown size; '
          'give a module_file whose vog_inputs_fn returns fixed-size inputs')

  wanted = settings.splits or list(split_patterns)
  unknown = [s for s in wanted if s not in split_patterns]
  if unknown:
    raise AuditConfigError(f'split(s) {unknown} do not exist in the examples; '
                           f'available: {sorted(split_patterns)}')
  split_files, split_compression = {}, {}
  for split in wanted:
    files = sorted(tf.io.gfile.glob(split_patterns[split]))
    compression = compression_of(files) if files else 'UNCOMPRESSED'
    peeked = _peek(files, compression, PEEK_RECORDS) if files else []
    if peeked is None:
      raise AuditConfigError(f'split {split!r} has a corrupt TFRecord file among {files}'
                             ' - rewrite the examples; no record can be read past it')
    if not peeked:
      raise AuditConfigError(f'split {split!r} holds no examples ({split_patterns[split]})'
                             ' - check the examples, or leave the split out with splits=')
    split_files[split], split_compression[split] = files, compression
    _check_features(split, peeked, schema_features, input_specs, inputs_fn, settings)
  logging.info('VoG audit planned: %d of %d checkpoints (steps %s), splits %s, inputs %s',
               len(chosen), len(entries), steps, wanted,
               [(s.name, s.shape) for s in input_specs])
  return AuditPlan(settings, chosen, input_specs, scorer.num_classes, split_files,
                   split_compression, module_file, baseline)


def _check_features(split, peeked, schema_features, input_specs, inputs_fn, settings):
  """Refuses model inputs or a label that no example of the split carries."""
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
  if inputs_fn is None:
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


def split_records_reader(plan: AuditPlan):
  """A function that reads (split, serialized) of every split into a pipeline."""
  types = beam.io.filesystem.CompressionTypes
  compressions = {split: {'GZIP': types.GZIP, 'UNCOMPRESSED': types.UNCOMPRESSED}[c]
                  for split, c in plan.split_compression.items()}

  def read(pipeline: beam.Pipeline, label: str):
    per_split = []
    for split, files in plan.split_files.items():
      per_split.append(
          pipeline
          | f'{label}Files[{split}]' >> beam.Create(files)
          | f'{label}Read[{split}]' >> beam.io.ReadAllFromTFRecord(
              compression_type=compressions[split])
          | f'{label}Tag[{split}]' >> beam.Map(lambda r, s=split: (s, r)))
    return per_split | f'{label}AllSplits' >> beam.Flatten()

  return read


def run_audit(plan: AuditPlan, pipeline: beam.Pipeline, scored_examples_dir: str,
              report_dir: str) -> Dict[str, Any]:
  """Runs the Beam audit and writes the report; returns summary.json's content.

  Raises RuntimeError, publishing no report, when seen != scored + quarantined.
  """
  settings = plan.settings
  work_dir = os.path.join(report_dir, f'.work-{uuid.uuid4().hex[:8]}')
  tf.io.gfile.makedirs(work_dir)
  scorer_factory = ScorerFactory(plan.entries, plan.module_file, settings.target,
                                 settings.label_mode)
  parser_factory = ParserFactory(plan.input_specs, settings, plan.num_classes,
                                 plan.module_file)
  _ = pipeline | 'AuditExamples' >> beam_audit.AuditExamples(
      settings, list(plan.split_files), split_records_reader(plan), parser_factory,
      scorer_factory, scored_examples_dir, work_dir)
  result = pipeline.run()
  result.wait_until_finish()
  summary = _summarize(plan, os.path.join(work_dir, tallies.TALLIES_FILE))
  summary['beam_counters'] = _counters(result)
  flagged, records = report_folder.read_flagged(
      os.path.join(work_dir, beam_audit.FLAGGED_RECORDS_FILE))
  report_folder.publish(report_dir, os.path.join(work_dir, beam_audit.QUARANTINE_FILE),
                        summary, flagged, records,
                        report_folder.previews_of(parser_factory(), plan.input_specs,
                                                  flagged, records))
  tf.io.gfile.rmtree(work_dir)
  counts = summary['counts']
  logging.info('VoG audit done: seen %d, scored %d, quarantined %d, flagged %d',
               counts['seen'], counts['scored'], counts['quarantined'], counts['flagged'])
  return summary


def _counters(result) -> Dict[str, int]:
  """The audit's Beam counters (seen, scored, quarantined, batches) as the runner has them."""
  from apache_beam.metrics.metric import MetricsFilter  # pylint: disable=g-import-not-at-top
  try:
    found = result.metrics().query(
        MetricsFilter().with_namespace(beam_audit.NAMESPACE))['counters']
  except (NotImplementedError, AttributeError):  # Runners without a metrics API.
    return {}
  counters: Dict[str, int] = {}
  for counter in found:
    value = counter.committed if counter.committed is not None else counter.attempted
    counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value)
  return counters


def _summarize(plan: AuditPlan, tallies_path: str) -> Dict[str, Any]:
  """summary.json's content: the plan's settings plus what the tallies counted."""
  counted = tallies.summarize_tallies(report_folder.read_jsonl(tallies_path),
                                      list(plan.split_files))
  return {
      'format_version': 1,
      'created_at': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
      'settings': dict(plan.settings.to_json(), splits=list(plan.split_files)),
      'checkpoints': [{'path': e.path, 'epoch': e.epoch, 'step': e.step}
                      for e in plan.entries],
      'num_classes': plan.num_classes,
      'model_inputs': [{'name': i.name, 'shape': list(i.shape), 'dtype': i.dtype}
                       for i in plan.input_specs],
      **counted,
      'baseline': plan.baseline,
      'drift': None,
  }


def rebuild_report_page(report_dir: str, module_file: Optional[str] = None) -> str:
  """Rebuilds report.html (and flagged.png) from a difficulty report folder alone.

  Needs summary.json, flagged.jsonl, quarantine.jsonl and flagged_examples.tfrecord;
  `module_file` only when the audit used a vog_inputs_fn. Returns the page's path.
  Raises AuditConfigError naming a missing or unreadable file.
  """
  try:
    summary, flagged, records = report_folder.read_for_rebuild(report_dir)
  except ValueError as e:
    raise AuditConfigError(str(e)) from e
  try:
    input_specs = [examples_io.InputSpec(i['name'], tuple(i['shape']), i['dtype'])
                   for i in summary['model_inputs']]
    settings = VogSettings(**{k: v for k, v in summary['settings'].items()
                              if k in VogSettings.__dataclass_fields__})
    num_classes = int(summary['num_classes'])
  except (KeyError, TypeError, ValueError) as e:
    raise AuditConfigError(f'the summary.json in {report_dir} lacks {e}; it was written '
                           'by an older release - re-run the audit') from e
  parser = ParserFactory(input_specs, settings, num_classes, module_file)()
  report_folder.write_report_page(
      report_dir, summary, flagged,
      report_folder.previews_of(parser, input_specs, flagged, records))
  return os.path.join(report_dir, report_folder.REPORT_FILE)
