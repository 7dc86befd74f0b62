"""`python -m kubeflow.compile` writes a KFP v2 spec with every component, the image and VoG settings."""

import json
import os
import subprocess
import sys

import pytest
import repo_paths

REPO = repo_paths.REPO
IMAGE = 'us-docker.pkg.dev/acme/vog-audit/pipeline:1.2.3'
COMPONENTS = {'ImportExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator',
              'Trainer', 'VarianceOfGradients', 'Evaluator', 'HumanReviewGate', 'Pusher'}
BEAM_ARGS = ['--runner=DataflowRunner', '--region=europe-west4']
# GPU workers for the VoG step alone; StatisticsGen and the Evaluator stay on CPU.
VOG_BEAM_ARGS = ['--machine_type=g2-standard-8',
                 '--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;'
                 'install-nvidia-driver',
                 '--sdk_container_image=us-docker.pkg.dev/acme/vog-audit/pipeline:1.2.3-gpu']


def _compile(*args):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-m', 'kubeflow.compile', *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  out = tmp_path_factory.mktemp('kfp')
  result = _compile('--output', str(out), '--image', IMAGE,
                    '--pipeline-root', 'gs://acme-ml/vog/root',
                    '--data-root', 'gs://acme-ml/vog/data',
                    '--serving-dir', 'gs://acme-ml/vog/serving',
                    '--vog-target', 'prob', '--vog-num-checkpoints', '7',
                    '--inspection-budget', '50', '--bucket-percentiles', '60', '95',
                    '--vog-rank-by', 'margin_mean',
                    *(f'--beam-arg={arg}' for arg in BEAM_ARGS),
                    *(f'--vog-beam-arg={arg}' for arg in VOG_BEAM_ARGS))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(out, 'vog_audit_pipeline.json')) as f:
    return json.load(f)['pipelineSpec']


def _parameters(spec, task):
  params = spec['root']['dag']['tasks'][task]['inputs']['parameters']
  return {k: list(v['runtimeValue']['constantValue'].values())[0]
          for k, v in params.items()}


def test_every_component_is_a_task_running_the_image(spec):
  tasks = set(spec['root']['dag']['tasks'])
  assert COMPONENTS <= tasks
  assert any(t.startswith('latest_blessed_model_resolver') for t in tasks)
  executors = spec['deploymentSpec']['executors']
  for component in COMPONENTS:
    assert executors[f'{component}_executor']['container']['image'] == IMAGE


def test_vog_settings_are_as_set(spec):
  params = _parameters(spec, 'VarianceOfGradients')
  settings = json.loads(params['vog_settings'])
  assert (settings['target'], settings['num_checkpoints'], settings['inspection_budget'],
          settings['bucket_percentiles']) == ('prob', 7, 50, [60.0, 95.0])
  assert settings['label_key'] == 'label' and settings['normalize'] == 'class'
  assert settings['rank_by'] == 'margin_mean'


def test_beam_args_trainer_and_evaluator_config(spec):
  container = spec['deploymentSpec']['executors']['VarianceOfGradients_executor'][
      'container']
  assert '--runner=DataflowRunner' in json.dumps(container['args'])
  # In the image the Trainer runs the installed module; nothing is packaged at compile.
  assert _parameters(spec, 'Trainer')['run_fn'] == 'pipeline.reference.trainer_module.run_fn'
  eval_config = json.loads(_parameters(spec, 'Evaluator')['eval_config'])
  slices = [s.get('feature_keys', []) for s in eval_config['slicing_specs']]
  assert slices == [[], ['vog_bucket'], ['vog_decile'], ['label']]


def _container_args(spec, component):
  return spec['deploymentSpec']['executors'][f'{component}_executor']['container']['args']


def test_vog_beam_args_are_the_vog_tasks_alone_after_the_pipelines(spec):
  # The executor's command line ends with its Beam arguments: the pipeline's, then VoG's.
  assert _container_args(spec, 'VarianceOfGradients')[-5:] == BEAM_ARGS + VOG_BEAM_ARGS
  for component in ('ImportExampleGen', 'StatisticsGen', 'Evaluator'):
    args = _container_args(spec, component)
    assert args[-2:] == BEAM_ARGS, component
    assert not set(VOG_BEAM_ARGS) & set(args), component
  for component in COMPONENTS - {'VarianceOfGradients'}:
    assert 'g2-standard-8' not in json.dumps(spec['deploymentSpec']['executors'][
        f'{component}_executor']), component


def test_bad_vog_beam_arg_is_refused_by_name_before_compiling(tmp_path):
  result = _compile('--output', str(tmp_path / 'out'), '--image', IMAGE,
                    '--vog-beam-arg=--machine_type=g2-standard-8',
                    '--vog-beam-arg=machine_type=g2-standard-16')
  assert result.returncode != 0
  assert ("ValueError: --vog-beam-arg: item 2, 'machine_type=g2-standard-16', does not begin "
          'with "--" and an option name; give each Beam argument as one --name=value item, '
          'e.g. --runner=DataflowRunner') in result.stderr, result.stderr[-3000:]
  assert not os.path.exists(tmp_path / 'out')


def test_a_secret_vog_beam_arg_is_refused_without_repeating_it(tmp_path):
  result = _compile('--output', str(tmp_path / 'out'), '--image', IMAGE,
                    '--vog-beam-arg=--s3_session_token', '--vog-beam-arg=FQoGZXIvYXdzEXAMPLE')
  assert result.returncode != 0
  assert ('ValueError: --vog-beam-arg: item 2 (not shown: it may be a secret) does not '
          'begin with "--" and an option name; join it to the option before it as one '
          'item: --s3_session_token=VALUE') in result.stderr, result.stderr[-3000:]
  assert 'FQoGZXIvYXdzEXAMPLE' not in result.stdout + result.stderr
  assert not os.path.exists(tmp_path / 'out')


def test_bad_flag_is_refused_before_compiling(tmp_path):
  result = _compile('--output', str(tmp_path), '--vog-target', 'gradient')
  assert result.returncode == 2
  assert "argument --vog-target: invalid choice: 'gradient'" in result.stderr
  assert not os.listdir(tmp_path)


def test_a_transform_pipeline_compiles_with_its_installed_functions(tmp_path):
  result = _compile('--output', str(tmp_path), '--image', IMAGE, '--dataset', 'text')
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(str(tmp_path), 'vog_audit_pipeline.json')) as f:
    spec = json.load(f)['pipelineSpec']
  tasks = spec['root']['dag']['tasks']
  assert 'Transform' in tasks
  # In the image Transform and the Trainer run the installed functions; nothing is packaged.
  transform = _parameters(spec, 'Transform')
  assert transform['preprocessing_fn'] == 'pipeline.reference.text_transform.preprocessing_fn'
  assert 'module_file' not in transform
  assert _parameters(spec, 'Trainer')['run_fn'] == 'pipeline.reference.text_trainer.run_fn'
  vog_inputs = tasks['VarianceOfGradients']['inputs']['artifacts']
  assert vog_inputs['transform_graph']['taskOutputArtifact']['producerTask'] == 'Transform'
