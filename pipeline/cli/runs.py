"""`vog-audit runs --metadata PATH`: the audits and reviews recorded in ML Metadata, with lineage.

For every VarianceOfGradients and HumanReviewGate execution: its state and time, the artifacts
it read (and which node produced each: the model, the examples), what it wrote, the report's
headline counts and its drift headline (what changed since the last shipped model's audit),
and the review's decision, reviewer, comment, time and channel.
"""

import datetime
import json
import os
from typing import Dict, List

import click

from components.review_gate import decision
from components.review_gate import review_summary
from components.vog import vocabulary as vocab
from pipeline.cli import fail

COMPONENTS = ('VarianceOfGradients', 'HumanReviewGate')
COUNT_PROPERTIES = vocab.HEADLINE
REVIEW_PROPERTIES = ('blessed',) + decision.REVIEW_PROPERTIES
DRIFT_PROPERTIES = vocab.DRIFT_PROPERTIES
NO_DRIFT = 'no drift recorded: no shipped model to compare with'


def _open_store(path: str):
  # ml_metadata is slow to import; only pay for it when this command runs.
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    fail(f'no ML Metadata database at {path}; pass the SQLite file the pipeline writes '
          '(e.g. demo_output/metadata.sqlite)')
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  # Read-only: looking must never create or migrate a database.
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  try:
    return metadata_store.MetadataStore(config)
  except Exception as e:  # pylint: disable=broad-except
    fail(f'{path} is not an ML Metadata database this version can read ({e})'.splitlines()[0])


def _value(value) -> object:
  kind = value.WhichOneof('value')
  return getattr(value, kind) if kind else None


def _time(ms: int) -> str:
  return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
      '%Y-%m-%dT%H:%M:%SZ') if ms else ''


class _Lineage:
  """Looks up artifacts, their producers and node names, caching what it has read."""

  def __init__(self, store):
    self.store = store
    self.artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    self.execution_types = {t.id: t.name for t in store.get_execution_types()}
    self.context_types = {t.id: t.name for t in store.get_context_types()}

  def node_and_run(self, execution_id: int):
    node = pipeline = run = ''
    for context in self.store.get_contexts_by_execution(execution_id):
      kind = self.context_types.get(context.type_id)
      if kind == 'node':
        node = context.name.split('.', 1)[-1]
      elif kind == 'pipeline':
        pipeline = context.name
      elif kind == 'pipeline_run':
        run = context.name
    return node, pipeline, run

  def producers(self, artifact_ids: List[int]) -> Dict[int, str]:
    events = self.store.get_events_by_artifact_ids(artifact_ids) if artifact_ids else []
    first = {}
    for event in events:
      if event.type in (event.OUTPUT, event.DECLARED_OUTPUT, event.INTERNAL_OUTPUT):
        # An Importer run again re-publishes the same artifact; the first execution made it.
        first[event.artifact_id] = min(first.get(event.artifact_id, event.execution_id),
                                       event.execution_id)
    out = {}
    for artifact_id, execution_id in first.items():
      node, _, _ = self.node_and_run(execution_id)
      out[artifact_id] = f'{node or "execution"} #{execution_id}'
    return out


def collect(store) -> List[Dict]:
  """The audit and review executions in `store`, oldest first, as plain dicts."""
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top
  lineage = _Lineage(store)
  wanted = {tid: name.rsplit('.', 1)[-1] for tid, name in lineage.execution_types.items()
            if name.rsplit('.', 1)[-1] in COMPONENTS}
  executions = [e for e in store.get_executions() if e.type_id in wanted]
  executions.sort(key=lambda e: (e.create_time_since_epoch, e.id))
  runs = []
  for execution in executions:
    events = store.get_events_by_execution_ids([execution.id])
    ids = sorted({e.artifact_id for e in events})
    artifacts = {a.id: a for a in store.get_artifacts_by_id(ids)} if ids else {}
    producers = lineage.producers(ids)
    node, pipeline, run = lineage.node_and_run(execution.id)
    entry = {'execution_id': execution.id, 'component': wanted[execution.type_id],
             'node': node, 'pipeline': pipeline, 'run': run,
             'state': type(execution).State.Name(execution.last_known_state),
             'created_at': _time(execution.create_time_since_epoch),
             'inputs': [], 'outputs': []}
    for event in sorted(events, key=lambda e: (e.path.steps[0].key if e.path.steps else '',
                                               e.artifact_id)):
      artifact = artifacts.get(event.artifact_id)
      if artifact is None:
        continue
      key = event.path.steps[0].key if event.path.steps else ''
      row = {'key': key, 'artifact_id': artifact.id, 'uri': artifact.uri,
             'type': lineage.artifact_types.get(artifact.type_id, '?')}
      props = {k: _value(v) for k, v in artifact.custom_properties.items()}
      if event.type in (event.INPUT, event.DECLARED_INPUT):
        row['from'] = producers.get(artifact.id, '')
        entry['inputs'].append(row)
      elif event.type in (event.OUTPUT, event.DECLARED_OUTPUT):
        entry['outputs'].append(row)
      else:
        continue
      if row['type'] == DifficultyReport.TYPE_NAME:
        row['counts'] = {k: props[k] for k in COUNT_PROPERTIES if k in props}
        row['drift'] = {k: props[k] for k in DRIFT_PROPERTIES if k in props}
      if entry['component'] == 'HumanReviewGate' and row['type'] == 'ModelBlessing' and \
          event.type in (event.OUTPUT, event.DECLARED_OUTPUT):
        entry['review'] = {k: props.get(k, '') for k in REVIEW_PROPERTIES}
    runs.append(entry)
  return runs


def _number(value, kind):
  return value if isinstance(value, kind) and not isinstance(value, bool) else None


def drift_line(drift: Dict) -> str:
  """The drift headline of a DifficultyReport's custom properties (vocabulary's
  DRIFT_PROPERTIES), e.g. `since the last shipped model: flagged share +1.9 pts; class 3 hard
  share +12.0 pts (eval); 40 newly flagged, 25 still flagged; baseline /.../difficulty_report`.
  """
  fmt = vocab
  if isinstance(drift.get(fmt.DRIFT_UNAVAILABLE), str):
    return review_summary.one_line(
        f'drift unavailable: {drift[fmt.DRIFT_UNAVAILABLE]}'
        + (f'; baseline {drift[fmt.DRIFT_BASELINE_URI]}'
           if drift.get(fmt.DRIFT_BASELINE_URI) else ''))
  change = _number(drift.get(fmt.FLAGGED_SHARE_CHANGE), (int, float))
  parts = [f'flagged share {review_summary.format_points(change)}']
  where = drift.get(fmt.MAX_HARD_SHARE_CLASS)
  rise = _number(drift.get(fmt.MAX_CLASS_HARD_SHARE_INCREASE), (int, float))
  if isinstance(where, str) and where and rise is not None:
    split, _, class_id = where.rpartition('/')
    parts.append(f'class {class_id} hard share {review_summary.format_points(rise)} ({split})')
  elif fmt.MAX_HARD_SHARE_CLASS in drift:
    parts.append("no class's hard share rose")
  newly = _number(drift.get(fmt.NEWLY_FLAGGED), int)
  still = _number(drift.get(fmt.STILL_FLAGGED_COUNT), int)
  parts.append(f'{"?" if newly is None else newly} newly flagged, '
               f'{"?" if still is None else still} still flagged')
  if drift.get(fmt.DRIFT_BASELINE_URI):
    parts.append(f'baseline {drift[fmt.DRIFT_BASELINE_URI]}')
  return review_summary.one_line('since the last shipped model: ' + '; '.join(parts))


def _print(entry: Dict) -> None:
  where = ' '.join(p for p in (entry['pipeline'], entry['run']) if p)
  click.echo(f'#{entry["execution_id"]} {entry["component"]} ({entry["node"]}) '
             f'{entry["state"]} {entry["created_at"]}  {where}')
  for direction in ('inputs', 'outputs'):
    for row in entry[direction]:
      source = f'  from {row["from"]}' if row.get('from') else ''
      click.echo(f'  {"in " if direction == "inputs" else "out"} {row["key"]:<18} '
                 f'{row["type"]} #{row["artifact_id"]} {row["uri"]}{source}')
      if row.get('counts'):
        click.echo('      ' + ', '.join(f'{k} {v}' for k, v in row['counts'].items()))
      if row.get('drift'):
        click.echo('      ' + drift_line(row['drift']))
      elif row.get('counts') and direction == 'outputs' and entry['component'] == COMPONENTS[0]:
        click.echo('      ' + NO_DRIFT)
  review = entry.get('review')
  if review:
    blessed = {1: 'BLESSED', 0: 'NOT_BLESSED'}.get(review['blessed'], 'no blessing')
    who = f' by {review["reviewer"]}' if review['reviewer'] else ''
    slack = (f', channel {review["slack_channel"]} thread {review["slack_thread_ts"]}'
             if review['slack_thread_ts'] else '')
    click.echo(f'  review {review["review_decision"] or "-"}{who} at {review["reviewed_at"]} '
               f'({review["review_backend"]}{slack}) -> {blessed}')
    if review['review_comment']:
      click.echo(f'    comment: {review["review_comment"]}')
    if review['review_reason']:
      click.echo(f'    reason: {review["review_reason"]}')


@click.command()
@click.option('--metadata', 'metadata_path', required=True, type=click.Path(dir_okay=False),
              help='ML Metadata SQLite file of the pipeline.')
@click.option('--json', 'as_json', is_flag=True, help='Print JSON instead of text.')
def runs(metadata_path, as_json):
  """List VoG audits and review gates recorded in ML Metadata, with lineage and decisions."""
  entries = collect(_open_store(metadata_path))
  if as_json:
    click.echo(json.dumps(entries, indent=1))
    return
  if not entries:
    click.echo(f'no VarianceOfGradients or HumanReviewGate executions in {metadata_path}')
    return
  for entry in entries:
    _print(entry)
