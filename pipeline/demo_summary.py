"""What a run of the audit pipeline found, read back from ML Metadata and its artifacts.

`read_summary(config)` takes the newest run of `config.pipeline_name` in the config's ML
Metadata store and reads, from the artifacts that run produced or reused:
  * the DifficultyReport's summary (through `report_format.load_report`): examples seen,
    scored, quarantined, flagged per split, and how many flags are of each kind;
  * its slices.json: what the flagged examples of each split have in common (for the
    digits, the most confused class pairs; for the tabular and text data, the slice
    where their wrong labels were planted);
  * the score table and the audit's input: how many flagged examples carry a flipped
    label (`label_flipped == 1`, written by pipeline.reference.demo_data), against chance;
  * the Evaluator's TFMA metrics and validation: accuracy per `vog_bucket`, the blessing;
  * the HumanReviewGate's ModelBlessing: decision, reviewer, comment;
  * the Pusher's PushedModel: whether and where the model was pushed.
`format_summary` turns it into the lines the demo prints.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

from components.review_gate import decision as decision_lib
from components.review_gate import review_summary
from components.review_gate import spec_keys as review_gate_keys
from components.vog.compute import slice_stats
from components.vog.report import drift_model
from components.vog.report import report_format
from components.vog import vocabulary as vocab
from pipeline import audit_pipeline
from pipeline.reference import demo_data
from pipeline.config import PipelineConfig
from pipeline.evaluation import ACCURACY, BUCKET_KEY

BUCKETS = vocab.BUCKETS
OVERALL = 'overall'
TOP_SLICES = 3  # feature slices and class pairs printed per split
_ACCURACY_NAME = 'sparse_categorical_accuracy'


@dataclasses.dataclass
class DemoSummary:
  """The numbers the demo prints; accuracy is (value, example count) per slice."""
  run_id: str
  node_states: Dict[str, str]
  splits: Dict[str, Dict[str, int]]
  flagged: int
  flipped_in_flagged: int
  flipped: int
  scored: int
  accuracy: Dict[str, Tuple[float, int]]
  evaluator_blessed: bool
  evaluator_failures: List[str]
  review: Dict[str, str]
  blessed: bool
  pushed_to: Optional[str]
  report_html: str
  drift: Optional[drift_model.Drift] = None  # None: no model had shipped before this run
  # slices.json (what the flagged examples have in common); None in an older report.
  slices: Optional[report_format.Slices] = None
  # How many flags are of each kind (report_format.flag_kind_totals); None before kinds.
  flag_kinds: Optional[Dict[str, int]] = None
  class_names: Tuple[str, ...] = ()  # the label of each class index, for class pairs

  @property
  def chance(self) -> float:
    """Flipped labels a random choice of `flagged` scored examples holds on average."""
    return self.flagged * self.flipped / self.scored if self.scored else 0.0


def _value(value):
  kind = value.WhichOneof('value')
  return getattr(value, kind) if kind else None


def _props(artifact) -> Dict[str, object]:
  return {k: _value(v) for k, v in artifact.custom_properties.items()}


def _latest_run(store, pipeline_name: str):
  """(run id, {node id: execution}) of the newest run of `pipeline_name`."""
  pipeline = store.get_context_by_type_and_name('pipeline', pipeline_name)
  if pipeline is None:
    raise ValueError(f'ML Metadata holds no run of pipeline {pipeline_name!r}')
  run_ids = set()
  for execution in store.get_executions_by_context(pipeline.id):
    run_ids.update(c.id for c in store.get_contexts_by_execution(execution.id)
                   if c.type == 'pipeline_run')
  if not run_ids:
    raise ValueError(f'pipeline {pipeline_name!r} has no recorded run in ML Metadata')
  run = max(store.get_contexts_by_id(list(run_ids)), key=lambda c: (c.create_time_since_epoch,
                                                                     c.id))
  nodes = {}
  for execution in store.get_executions_by_context(run.id):
    for context in store.get_contexts_by_execution(execution.id):
      if context.type == 'node':
        nodes[context.name.split('.', 1)[-1]] = execution
  return run.name, nodes


def _artifacts(store, execution, kinds) -> Dict[str, object]:
  """{key: artifact} of one execution's events of `kinds` (the first of each key)."""
  events = store.get_events_by_execution_ids([execution.id])
  wanted = {}
  for event in events:
    if event.type in kinds and event.path.steps:
      wanted.setdefault(event.path.steps[0].key, event.artifact_id)
  by_id = {a.id: a for a in store.get_artifacts_by_id(list(wanted.values()))} if wanted else {}
  return {key: by_id[i] for key, i in wanted.items() if i in by_id}


def _outputs(store, execution) -> Dict[str, object]:
  """{output key: artifact} of one execution (the first artifact of each key)."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  event = metadata_store_pb2.Event
  return _artifacts(store, execution, (event.OUTPUT, event.DECLARED_OUTPUT))


def _inputs(store, execution) -> Dict[str, object]:
  """{input key: artifact} of one execution (the first artifact of each key)."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  event = metadata_store_pb2.Event
  return _artifacts(store, execution, (event.INPUT, event.DECLARED_INPUT))


def count_flipped_in_flagged(examples_uri: str, report_uri: str
                             ) -> Tuple[int, int, int, int]:
  """(flagged, flipped among them, flipped, scored) over every split the audit scored.

  Which examples were scored and flagged comes from the report's score table (every
  split has one, copied or not); whether each was flipped from the audit's input
  Examples at the same position (split, file, record). Refuses examples without
  `label_flipped`: only the demo data carries that truth.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.vog import audit_plan  # pylint: disable=g-import-not-at-top
  from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
  from components.vog.report import score_table  # pylint: disable=g-import-not-at-top
  table = score_table.read_table(report_uri, ['file_index', 'record_index', 'vog_flagged',
                                              'split']).to_pydict()
  if not table['split']:
    raise ValueError(f'the audit in {report_uri} scored no examples')
  is_flagged = {(s, f, r): g == 1 for s, f, r, g in zip(
      table['split'], table['file_index'], table['record_index'], table['vog_flagged'])}
  flagged = hit = flipped = 0
  for split in sorted(set(table['split'])):
    files = audit_plan.input_files(split, os.path.join(examples_uri, f'Split-{split}', '*'))
    for input_file in files:
      for index, record in record_files.read_records(input_file.path,
                                                     input_file.compression):
        key = (split, input_file.file_index, index)
        if key not in is_flagged:
          continue  # quarantined
        feature = tf.train.Example.FromString(record).features.feature
        if demo_data.FLIPPED_KEY not in feature:
          raise ValueError(f'examples in {examples_uri} have no {demo_data.FLIPPED_KEY} '
                           'feature; is this the demo data?')
        is_flipped = feature[demo_data.FLIPPED_KEY].int64_list.value[0] == 1
        flipped += is_flipped
        flagged += is_flagged[key]
        hit += is_flipped and is_flagged[key]
  return flagged, hit, flipped, len(is_flagged)


def read_bucket_accuracy(evaluation_uri: str) -> Dict[str, Tuple[float, int]]:
  """{'overall' | bucket: (accuracy, example count)} from the Evaluator's TFMA output."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  accuracy = {}
  for per_slice in tfma.load_metrics(evaluation_uri):
    keys = [(k.column, k.bytes_value.decode()) for k in per_slice.slice_key.single_slice_keys
            if k.HasField('bytes_value')]
    if len(per_slice.slice_key.single_slice_keys) != len(keys):
      continue
    if not keys:
      name = OVERALL
    elif len(keys) == 1 and keys[0][0] == BUCKET_KEY:
      name = keys[0][1]
    else:
      continue
    values = {kv.key.name: kv.value.double_value.value
              for kv in per_slice.metric_keys_and_values
              if not kv.key.is_diff and kv.value.HasField('double_value')}
    if _ACCURACY_NAME in values:
      accuracy[name] = (values[_ACCURACY_NAME], int(values.get('example_count', 0)))
  return accuracy


def read_evaluator_failures(evaluation_uri: str) -> List[str]:
  """One line per failed threshold of the Evaluator's validation, e.g. on the hard slice."""
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  result = tfma.load_validation_result(evaluation_uri)
  lines = []
  for per_slice in result.metric_validations_per_slice:
    where = ', '.join(f'{k.column}={k.bytes_value.decode() or k.int64_value}'
                      for k in per_slice.slice_key.single_slice_keys) or OVERALL
    for failure in per_slice.failures:
      lines.append(f'{failure.metric_key.name} on {where}: ' + _failure_text(failure))
  if result.missing_thresholds:
    lines.append(f'{len(result.missing_thresholds)} threshold(s) had no metric to check')
  if result.missing_slices:
    lines.append('slices with thresholds but no examples: ' + ', '.join(
        str(dict(s.feature_values)) for s in result.missing_slices))
  return lines


def _failure_text(failure) -> str:
  value = failure.metric_value.double_value.value
  threshold = failure.metric_threshold
  what = 'change against the last blessed model' if failure.metric_key.is_diff else 'value'
  bounds = []
  for kind in ('value_threshold', 'change_threshold'):
    if threshold.HasField(kind):
      t = getattr(threshold, kind)
      if kind == 'value_threshold':
        if t.HasField('lower_bound'):
          bounds.append(f'at least {t.lower_bound.value:.4g}')
        if t.HasField('upper_bound'):
          bounds.append(f'at most {t.upper_bound.value:.4g}')
      elif t.HasField('absolute'):
        bounds.append(f'a change of at least {t.absolute.value:+.4g}')
  return (f'{what} {value:.4g}, needs ' + ' and '.join(bounds) if bounds
          else failure.message or f'{what} {value:.4g} failed its threshold')


def read_summary(config: PipelineConfig) -> DemoSummary:
  """Reads the newest run of `config.pipeline_name` from its ML Metadata store.

  Raises:
    ValueError: no run recorded, or a step of the run without its output (it failed).
  """
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  metadata = config.metadata_config()
  metadata.export_password()  # MySQL: the password reaches the client through MYSQL_PWD
  store = metadata_store.MetadataStore(metadata.connection_config())
  run_id, nodes = _latest_run(store, config.pipeline_name)
  needed = (audit_pipeline.VOG, audit_pipeline.EVALUATOR, audit_pipeline.REVIEW_GATE,
            audit_pipeline.PUSHER)
  outputs = {}
  for node in needed:
    if node not in nodes:
      raise ValueError(f'run {run_id} has no {node} execution; did the pipeline fail?')
    outputs[node] = _outputs(store, nodes[node])
  report = report_format.load_report(outputs[audit_pipeline.VOG]['difficulty_report'].uri)
  flagged, hit, flipped, scored = count_flipped_in_flagged(
      _inputs(store, nodes[audit_pipeline.VOG])['examples'].uri,
      outputs[audit_pipeline.VOG]['difficulty_report'].uri)
  evaluation = outputs[audit_pipeline.EVALUATOR]['evaluation'].uri
  evaluator_blessing = _props(outputs[audit_pipeline.EVALUATOR]['blessing'])
  gate = _props(outputs[audit_pipeline.REVIEW_GATE][review_gate_keys.REVIEW_BLESSING_KEY])
  pushed = _props(outputs[audit_pipeline.PUSHER]['pushed_model'])
  state_names = type(nodes[audit_pipeline.VOG]).State.Name
  return DemoSummary(
      run_id=run_id,
      node_states={n: state_names(e.last_known_state) for n, e in nodes.items()},
      splits=report.summary.splits, flagged=flagged, flipped_in_flagged=hit, flipped=flipped,
      scored=scored, accuracy=read_bucket_accuracy(evaluation),
      evaluator_blessed=evaluator_blessing.get('blessed') == 1,
      evaluator_failures=read_evaluator_failures(evaluation),
      review={k: str(gate.get(k) or '') for k in (decision_lib.DECISION_PROPERTY, 'reviewer',
                                                  'review_comment', 'review_backend',
                                                  'review_reason')},
      blessed=gate.get('blessed') == 1,
      pushed_to=str(pushed['pushed_destination']) if pushed.get('pushed') == 1 else None,
      report_html=report.page_path, drift=report.summary.drift, slices=report.slices,
      flag_kinds=report_format.flag_kind_totals(report.summary.raw),
      class_names=tuple(config.reference().class_names))


def _class(class_id: int, class_names: Sequence[str]) -> str:
  return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def slice_lines(slices: report_format.Slices, class_names: Sequence[str] = (),
                top: int = TOP_SLICES) -> List[str]:
  """What the flagged examples of each split have in common, a line or two per split:

    train: channel=partner, 42 of 200 flagged (21.0% against 6.8% of the split, 3.1x)
    eval: most confused class pairs: 3 -> 8 (12 flagged), 7 -> 1 (9 flagged)
    eval: features not examined: the split is not copied

  Text from slices.json is shortened and made terminal-safe."""
  show = review_summary.terminal_safe
  lines = []
  for split, entry in slices.splits.items():
    name = show(review_summary.clip(split, 20))
    features = [r for r in entry.rows if r.kind != slice_stats.LABEL_PAIR][:top]
    pairs = [r for r in entry.rows if r.kind == slice_stats.LABEL_PAIR][:top]
    for row in features:
      lines.append(
          f'  {name}: {show(review_summary.slice_name(row))}, {row.group_count} of '
          f'{entry.group_size(row.group)} {row.group} ({100 * row.group_share:.1f}% against '
          f'{100 * row.share_in_split:.1f}% of the split, {row.lift:.1f}x)')
    if pairs:
      lines.append(f'  {name}: most confused class pairs: ' + ', '.join(
          f'{show(review_summary.clip(_class(r.classes[0], class_names), 30))} -> '
          f'{show(review_summary.clip(_class(r.classes[1], class_names), 30))} '
          f'({r.group_count} {r.group})' for r in pairs))
    if not entry.examined:
      reason = entry.features
      if reason.startswith('not examined: '):
        reason = reason[len('not examined: '):]
      lines.append(f'  {name}: features not examined: '
                   f'{show(review_summary.clip(reason, 200))}')
    elif not features and not pairs:
      lines.append(f'  {name}: nothing stands out among the flagged or hard examples')
  return lines


def format_summary(s: DemoSummary) -> List[str]:
  """The summary as the demo prints it."""
  reused = sorted(n for n, state in s.node_states.items() if state == 'CACHED')
  lines = [f'run {s.run_id}' + (f' ({len(reused)} of {len(s.node_states)} steps reused '
                                'from an earlier run)' if reused else '')]
  lines.append('examples per split:')
  for split, c in s.splits.items():
    lines.append(f'  {split:<6} {c[vocab.SCORED]:5d} scored, '
                 f'{c[vocab.QUARANTINED]} quarantined, {c[vocab.FLAGGED]} '
                 f'flagged (of {c[vocab.SEEN]} seen)')
  lines.append(review_summary.drift_headline(s.drift))
  found = f'{s.flipped_in_flagged} of {s.flipped} flipped labels found'
  lines.append(f'flipped labels in the flagged set: {s.flipped_in_flagged} of {s.flagged} '
               f'flagged (chance: {s.chance:.1f}); {found}')
  kinds = review_summary.kinds_headline(s.flag_kinds)
  if kinds is not None:
    lines.append(review_summary.terminal_safe(kinds))
  if s.slices is not None:
    lines.append('what the flagged examples have in common:')
    lines.extend(slice_lines(s.slices, s.class_names))
  lines.append(f'Evaluator accuracy ({ACCURACY}, eval split, against the given labels):')
  for name in (OVERALL,) + BUCKETS:
    if name in s.accuracy:
      value, count = s.accuracy[name]
      label = name if name == OVERALL else f'{BUCKET_KEY}={name}'
      lines.append(f'  {label:<18} {100 * value:5.1f}%  ({count} examples)')
    else:
      lines.append(f'  {BUCKET_KEY}={name:<7} no examples in this slice')
  lines.append('Evaluator: ' + ('BLESSED' if s.evaluator_blessed else 'NOT_BLESSED'))
  lines.extend(f'  failed: {f}' for f in s.evaluator_failures)
  r = s.review
  lines.append(f'review: {r[decision_lib.DECISION_PROPERTY] or "none"}'
               + (f' by {r["reviewer"]}' if r['reviewer'] else '')
               + (f' ({r["review_backend"]} backend)' if r['review_backend'] else ''))
  if r['review_comment']:
    lines.append(f'  comment: {r["review_comment"]}')
  elif r['review_reason']:
    lines.append(f'  reason: {r["review_reason"]}')
  lines.append('blessing: ' + ('BLESSED' if s.blessed else 'NOT_BLESSED') + ' -> '
               + (f'pushed to {s.pushed_to}' if s.pushed_to else 'nothing pushed'))
  lines.append(f'report: {s.report_html}')
  return lines
