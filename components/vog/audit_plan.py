"""Planning an audit: everything that can be checked before Beam starts.

`plan_audit` takes validated VogSettings (they are validated once, where they enter: the
component, the executor reading its execution property, `vog-audit score`), reads the
checkpoint manifest, the user module and the transform graph, loads the checkpoints
once to learn the model inputs, lists and peeks at each split's files, and reads the
baseline; any configuration problem is an AuditConfigError before an example is scored.
With labels it also scores a sample of the training examples with the last selected
checkpoint (memorisation.py): whether the model memorised its labels decides what
rank_by='auto' ranks by (compute/auto_rank.py) and how flags get their kind
(compute/flag_kinds.py).
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf

from components.vog import memorisation as memorisation_lib
from components.vog import user_module as user_module_lib
from components.vog.audit_errors import AuditConfigError
from components.vog.audit_errors import AuditInputError
from components.vog.factories import ParserFactory
from components.vog.compute import stages
from components.vog.compute.scoring import VogScorer
from components.vog.dataflow import beam_audit
from components.vog.dataflow import drift as drift_lib
from components.vog.inputs import checkpoints
from components.vog.inputs import examples_io
from components.vog.inputs import record_files
from components.vog.inputs import storage
from components.vog.inputs import transform_inputs
from components.vog.settings import AUTO
from components.vog.settings import VogSettings

PEEK_RECORDS = 50


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


class AuditPlan:
  """A checked audit: settings, checkpoints, model inputs and the files of each split."""

  def __init__(self, settings, entries, input_specs, num_classes, split_files,
               user_module, baseline, transform_graph=None, memorisation=None,
               auto_rank=None):
    # rank_by `auto` is resolved here (VogSettings.resolving_auto): settings.ranked_by
    # is what ranks the examples everywhere downstream.
    self.settings: VogSettings = settings
    self.entries: List[checkpoints.CheckpointEntry] = entries
    self.input_specs: List[examples_io.InputSpec] = input_specs
    self.num_classes: int = num_classes
    self.split_files: Dict[str, List[beam_audit.InputFile]] = split_files
    # Each split's files grouped into the units one worker reads and writes.
    self.split_units: Dict[str, List[beam_audit.WorkUnit]] = {
        split: beam_audit.work_units(files) for split, files in split_files.items()}
    # The user module's source, read once here; None without a module_file.
    self.user_module: Optional[user_module_lib.UserModule] = user_module
    # The audit compared with, read at plan time; None without a baseline.
    self.baseline: Optional[drift_lib.Baseline] = baseline
    # The TransformGraph folder whose output the model takes; None: the raw features.
    self.transform_graph: Optional[str] = transform_graph
    # Whether the model memorised its training labels, from a sample of them
    # (memorisation.measure); None without labels (label_mode='predicted').
    self.memorisation: Optional[memorisation_lib.MemorisationSample] = memorisation
    # What rank_by='auto' chose and why (MemorisationSample.auto_rank); None when rank_by
    # named what ranks, or without labels (auto is then VoG).
    self.auto_rank: Optional[Dict[str, Any]] = auto_rank

  @property
  def memorised(self) -> bool:
    """Whether the flag kinds take the model as having memorised its labels (False when
    it was not measured)."""
    return bool(self.memorisation is not None and self.memorisation.memorised)


def plan_audit(settings: VogSettings, model_run_dir: str,
               split_patterns: Mapping[str, str], module_file: Optional[str] = None,
               schema_features: Optional[Sequence[str]] = None,
               baseline: Optional[Dict[str, Any]] = None,
               transform_graph: Optional[str] = None) -> AuditPlan:
  """Checks everything that can be checked before Beam starts.

  `settings` are validated already (VogSettings.validate() or from_json(), where they
  came in) and not checked again here. `split_patterns` maps each available split to a
  file pattern; `baseline` ({'uri': the report folder of the last shipped model's audit,
  ...}) is what drift compares with: one that cannot be read makes the drift
  `unavailable`, never the audit fail. `transform_graph` is the folder of a Transform
  output when the model takes transformed features: the examples are raw, and each
  batch goes through the graph before scoring. Raises AuditConfigError (or
  CheckpointError) for a stage the manifest cannot fill, manifest problems, a requested
  split that does not exist or is empty, model inputs or the label missing from the
  examples; with a transform graph, also for a graph that cannot be read, a model input
  it does not produce, a raw feature it reads that the examples lack, and a module_file
  defining vog_inputs_fn (one or the other).
  """
  entries = checkpoints.load_manifest(model_run_dir)
  try:
    steps = stages.checkpoints_for_stage([e.step for e in entries], settings.stage,
                                         settings.num_checkpoints)
  except ValueError as e:
    raise AuditConfigError(f'{e} (manifest under {model_run_dir})') from e
  chosen = [e for e in entries if e.step in set(steps)]
  user_module = user_module_lib.read_user_module(module_file)
  inputs_fn, custom_objects = user_module_lib.load_user_module(user_module)
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
  sample, auto_choice = None, None
  if settings.label_mode == 'label':
    # The evidence is measured whatever rank_by is: the flag kinds read it too.
    parser = ParserFactory(input_specs, settings, scorer.num_classes, user_module,
                           transform_graph or None)()
    sample = memorisation_lib.measure(scorer, parser, split_files, settings.batch_size)
    if settings.rank_by == AUTO:
      signal, auto_choice = sample.auto_rank()
      settings = settings.resolving_auto(signal)
      logging.info('VoG rank_by=auto ranks by %s: %s', signal, auto_choice['reason'])
  settings = settings.resolving_auto(settings.ranked_by)
  compared_with = None if baseline is None else drift_lib.load_baseline(
      baseline, settings.ranked_by)
  return AuditPlan(settings, chosen, input_specs, scorer.num_classes, split_files,
                   user_module, compared_with, transform_graph or None, sample,
                   auto_choice)


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
