"""The compiled Kubeflow spec's VarianceOfGradients and HumanReviewGate tasks, run as a pod would.

A Kubeflow Pipelines v2 pod starts the executor's `container.command` with its `container.args`,
`{{$}}` replaced by the ExecutorInput JSON: the input artifacts (URI, type schema, name, metadata),
fresh output URIs, the task's parameters and the file to write the ExecutorOutput to. Here each
task runs that way, in a subprocess of this interpreter (kubeflow/Dockerfile is not built), on the
artifacts of one local LocalDagRunner run of the same pipeline, and must write what that run
wrote: the same scored splits, report counts and flagged examples, the same review decision and
a ShippedAudit naming the report it reviewed.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
import repo_paths

REPO = repo_paths.REPO
NUM_EXAMPLES = 200
BUDGET = 20
# Small and quick: two epochs give VoG its two checkpoints; the Evaluator blesses any accuracy,
# so the gate's auto policy decides; Beam runs in the executor's process.
# Ranked by class-normalised VoG, which flags every class alike: a 2-epoch model has not
# learned some class yet, and ranked by confidence more than half of that class would be
# flagged, which the default review policy rightly refuses to ship.
# VoG gets one Beam argument of its own, after the pipeline's.
SETTINGS = dict(epochs=2, vog_num_checkpoints=2, inspection_budget=BUDGET, min_accuracy=0.0,
                min_hard_accuracy=0.0, vog_rank_by='vog',
                beam_pipeline_args=('--direct_running_mode=in_memory',),
                vog_beam_pipeline_args=('--direct_num_workers=1',))
COMPILE_FLAGS = ('--epochs', '2', '--vog-num-checkpoints', '2', '--inspection-budget',
                 str(BUDGET), '--min-accuracy', '0', '--min-hard-accuracy', '0',
                 '--vog-rank-by', 'vog',
                 '--beam-arg=--direct_running_mode=in_memory',
                 '--vog-beam-arg=--direct_num_workers=1')
VOG = 'VarianceOfGradients'
GATE = 'HumanReviewGate'
PLACEHOLDER = re.compile(r'\{\{\$[^}]*\}\}')


def _value(value):
  """The Python value of an ML Metadata Value."""
  return getattr(value, value.WhichOneof('value'))


def _artifact(mlmd_artifact, type_name):
  return {'id': mlmd_artifact.id, 'type': type_name, 'uri': mlmd_artifact.uri,
          'properties': {k: _value(v) for k, v in mlmd_artifact.properties.items()},
          'custom_properties': {k: _value(v)
                                for k, v in mlmd_artifact.custom_properties.items()}}


def _executions(store, node_id):
  """{exec properties, inputs {key: artifact}, outputs {key: artifact}} of a node's execution."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  type_names = {t.id: t.name for t in store.get_artifact_types()}
  execution_types = {t.id: t.name for t in store.get_execution_types()}
  [execution] = [e for e in store.get_executions()
                 if execution_types[e.type_id].endswith('.' + node_id)]
  events = store.get_events_by_execution_ids([execution.id])
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  found = {'exec_properties': {k: _value(v) for k, v in execution.custom_properties.items()},
           'inputs': {}, 'outputs': {}}
  for event in events:
    side = 'inputs' if event.type == metadata_store_pb2.Event.INPUT else 'outputs'
    artifact = artifacts[event.artifact_id]
    found[side][event.path.steps[0].key] = _artifact(artifact, type_names[artifact.type_id])
  return found


@pytest.fixture(scope='module')
def local_run(tmp_path_factory):
  """One LocalDagRunner run of the reference pipeline on 200 digits, read back from MLMD."""
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  from pipeline import demo  # pylint: disable=g-import-not-at-top
  out = str(tmp_path_factory.mktemp('local') / 'demo_output')
  summary = demo.run_demo(out, num_examples=NUM_EXAMPLES, echo=lambda _: None, **SETTINGS)
  assert summary.blessed  # the gate approved: its ShippedAudit names this run's report
  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(
      os.path.join(out, demo.METADATA_FILE)))
  return {node: _executions(store, node) for node in (VOG, GATE)}


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  """The compiled spec for local folders, with the local run's settings."""
  from kubeflow import compile as kfp_compile  # pylint: disable=g-import-not-at-top
  from pipeline import demo  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('kfp')
  path = kfp_compile.compile_pipeline([
      '--output', str(root / 'spec'), '--pipeline-name', demo.PIPELINE_NAME,
      '--pipeline-root', str(root / 'pipeline_root'), '--data-root', str(root / 'data'),
      '--serving-dir', str(root / 'serving'), *COMPILE_FLAGS])
  with open(path) as f:
    return json.load(f)['pipelineSpec']


def _metadata(artifact, type_schema):
  """RuntimeArtifact metadata as Kubeflow hands it on: properties and custom properties.

  A custom property named like one of the type's properties is prefixed `custom:`, as TFX's
  entrypoint writes it into the ExecutorOutput that Kubeflow records.
  """
  declared = (yaml.safe_load(type_schema['instanceSchema']).get('properties') or {})
  metadata = dict(artifact['properties'])
  for key, value in artifact['custom_properties'].items():
    metadata[f'custom:{key}' if key in declared else key] = value
  return metadata


def _executor_input(spec, task_name, inputs, work_dir, parameters=None):
  """The ExecutorInput of `task_name`: `inputs` {key: artifact}, outputs under `work_dir`."""
  task = spec['root']['dag']['tasks'][task_name]
  component = spec['components'][task['componentRef']['name']]
  declared = component['inputDefinitions']['artifacts']
  assert set(inputs) <= set(declared), (sorted(inputs), sorted(declared))
  artifacts = {}
  for key, artifact in inputs.items():
    schema = declared[key]['artifactType']
    artifacts[key] = {'artifacts': [{
        'name': f'vog-audit/artifacts/{artifact["id"]}', 'type': schema,
        'uri': artifact['uri'], 'metadata': _metadata(artifact, schema)}]}
  outputs = {}
  for key, definition in component['outputDefinitions']['artifacts'].items():
    uri = os.path.join(work_dir, task_name, key)
    os.makedirs(os.path.dirname(uri), exist_ok=True)  # as the launcher does for local paths
    outputs[key] = {'artifacts': [{'type': definition['artifactType'], 'uri': uri}]}
  # Schema 2.0.0: the entrypoint reads `inputs.parameters`, the spec's constant values as they are.
  if parameters is None:
    parameters = {k: v['runtimeValue']['constantValue']
                  for k, v in task['inputs'].get('parameters', {}).items()}
  return {'inputs': {'parameters': parameters, 'artifacts': artifacts},
          'outputs': {'artifacts': outputs,
                      'outputFile': os.path.join(work_dir, task_name, 'executor_output.json')}}


def _run_task(spec, task_name, executor_input):
  """Runs the task's container command as the pod would; returns (result, ExecutorOutput)."""
  task = spec['root']['dag']['tasks'][task_name]
  label = spec['components'][task['componentRef']['name']]['executorLabel']
  container = spec['deploymentSpec']['executors'][label]['container']
  text = json.dumps(executor_input)
  args = [arg.replace('{{$}}', text) for arg in container['args']]
  unknown = [p for arg in container['args'] for p in PLACEHOLDER.findall(arg) if p != '{{$}}']
  assert not unknown, f'placeholders this test does not fill: {unknown}'
  command = [sys.executable if part in ('python', 'python3') else part
             for part in container['command']]
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONPATH=REPO)
  result = subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
  output_file = executor_input['outputs']['outputFile']
  output = None
  if os.path.exists(output_file):
    with open(output_file) as f:
      output = json.load(f)
  return result, output


def _output(executor_output, key):
  [artifact] = executor_output['artifacts'][key]['artifacts']
  return artifact


@pytest.fixture(scope='module')
def vog_task(spec, local_run, tmp_path_factory):
  """The VarianceOfGradients task on the local run's inputs (first run: no baseline)."""
  executor_input = _executor_input(spec, VOG, local_run[VOG]['inputs'],
                                   str(tmp_path_factory.mktemp('pod')))
  return _run_task(spec, VOG, executor_input)


@pytest.fixture(scope='module')
def gate_task(spec, local_run, tmp_path_factory):
  """The HumanReviewGate task on the local run's inputs (first run: nothing shipped before)."""
  executor_input = _executor_input(spec, GATE, local_run[GATE]['inputs'],
                                   str(tmp_path_factory.mktemp('pod')))
  return _run_task(spec, GATE, executor_input)


def _spec_parameters(spec, task_name):
  params = spec['root']['dag']['tasks'][task_name]['inputs']['parameters']
  out = {}
  for name, value in params.items():
    (kind, constant), = value['runtimeValue']['constantValue'].items()
    # Protobuf's JSON writes a 64-bit integer as a string ({'intValue': '1'}).
    out[name] = int(constant) if kind == 'intValue' else constant
  return out


def test_compiled_tasks_carry_the_local_run_settings(spec, local_run):
  assert _spec_parameters(spec, VOG) == local_run[VOG]['exec_properties']
  gate_properties = dict(local_run[GATE]['exec_properties'])
  gate_properties.pop('review_cache_key')  # set by the gate's driver, which Kubeflow does not run
  assert _spec_parameters(spec, GATE) == gate_properties


def _example_ids(folder):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(folder, '*')))
  assert files, folder
  ids = []
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
    example = tf.train.Example.FromString(record.numpy())
    ids.append(example.features.feature['example_id'].bytes_list.value[0].decode())
  return sorted(ids)


def test_vog_task_scores_every_split_like_the_local_run(vog_task, local_run):
  result, executor_output = vog_task
  assert result.returncode == 0, result.stderr[-5000:]
  scored = _output(executor_output, 'scored_examples')
  local = local_run[VOG]['outputs']['scored_examples']
  assert scored['metadata']['split_names'] == local['properties']['split_names']
  for split in json.loads(local['properties']['split_names']):
    assert _example_ids(os.path.join(scored['uri'], f'Split-{split}')) == _example_ids(
        os.path.join(local['uri'], f'Split-{split}')), split


def _beam_args_logged(stderr):
  """The Beam arguments the VarianceOfGradients executor logged that it runs with."""
  marker = 'VarianceOfGradients runs Beam with: '
  lines = [line for line in stderr.splitlines() if marker in line]
  assert len(lines) == 1, stderr[-5000:]
  return lines[0].split(marker, 1)[1].split()


def test_vog_task_runs_beam_with_the_pipelines_args_then_its_own(vog_task):
  result, _ = vog_task
  assert result.returncode == 0, result.stderr[-5000:]
  # TFX's entrypoint passes its own program path in front of them and its telemetry
  # labels (`--labels tfx_...`) after them; Beam ignores the path.
  logged = _beam_args_logged(result.stderr)
  start = logged.index('--direct_running_mode=in_memory')
  assert logged[start:start + 2] == ['--direct_running_mode=in_memory',
                                     '--direct_num_workers=1'], logged
  assert logged.count('--direct_num_workers=1') == 1, logged


def test_vog_task_report_matches_the_local_run(vog_task, local_run):
  from components.vog.report import report_format  # pylint: disable=g-import-not-at-top
  result, executor_output = vog_task
  assert result.returncode == 0, result.stderr[-5000:]
  report = report_format.load_report(_output(executor_output, 'difficulty_report')['uri'])
  local = report_format.load_report(local_run[VOG]['outputs']['difficulty_report']['uri'])
  assert report.summary.counts == local.summary.counts
  assert report.summary.counts['seen'] == NUM_EXAMPLES
  assert report.summary.splits == local.summary.splits
  assert len(report.flagged) == BUDGET
  assert [r.example_id for r in report.flagged] == [r.example_id for r in local.flagged]


def test_vog_executor_output_carries_the_report_headline(vog_task, local_run):
  """What Kubeflow records on the DifficultyReport: the counts and headline settings."""
  from components.vog import settings  # pylint: disable=g-import-not-at-top
  from components.vog import vocabulary as vocab  # pylint: disable=g-import-not-at-top
  result, executor_output = vog_task
  assert result.returncode == 0, result.stderr[-5000:]
  metadata = _output(executor_output, 'difficulty_report')['metadata']
  local = local_run[VOG]['outputs']['difficulty_report']['custom_properties']
  names = vocab.HEADLINE + settings.HEADLINE
  assert {k: metadata.get(k) for k in names} == {k: local[k] for k in names}


def test_gate_task_decides_like_the_local_run(gate_task, local_run):
  result, executor_output = gate_task
  assert result.returncode == 0, result.stderr[-5000:]
  blessing = _output(executor_output, 'review_blessing')
  local = local_run[GATE]['outputs']['review_blessing']['custom_properties']
  assert (blessing['metadata']['blessed'], blessing['metadata']['review_decision']) == (
      local['blessed'], local['review_decision']) == (1, 'approved')
  assert blessing['metadata']['reviewer'] == local['reviewer']
  assert os.listdir(blessing['uri']) == ['BLESSED']


def test_gate_task_ships_the_report_it_was_given(gate_task, local_run):
  from components.vog.report import baseline  # pylint: disable=g-import-not-at-top
  result, executor_output = gate_task
  assert result.returncode == 0, result.stderr[-5000:]
  shipped = _output(executor_output, 'shipped_audit')
  report_uri = local_run[GATE]['inputs']['difficulty_report']['uri']
  pointer = baseline.read_pointer(shipped['uri'])
  assert (pointer.report_uri, pointer.carried) == (report_uri, False)
  assert os.listdir(shipped['uri']) == [baseline.POINTER_FILE]
  assert (shipped['metadata']['difficulty_report_uri'], shipped['metadata']['carried']) == (
      report_uri, 0)


def test_gate_task_refuses_an_unreadable_last_shipped(spec, local_run, tmp_path):
  """A `last_shipped` folder without its pointer file: a named error, and nothing written."""
  empty = tmp_path / 'shipped_audit' / '1'
  empty.mkdir(parents=True)
  inputs = dict(local_run[GATE]['inputs'])
  inputs['last_shipped'] = {'id': 1, 'uri': str(empty), 'properties': {},
                            'custom_properties': {}}
  executor_input = _executor_input(spec, GATE, inputs, str(tmp_path / 'pod'))
  result, executor_output = _run_task(spec, GATE, executor_input)
  assert result.returncode != 0
  assert (f'{empty}/shipped_audit.json does not exist; is this the shipped_audit output of '
          'HumanReviewGate?') in result.stderr
  assert executor_output is None
  blessing_uri = executor_input['outputs']['artifacts']['review_blessing']['artifacts'][0]['uri']
  assert not os.path.exists(blessing_uri)
