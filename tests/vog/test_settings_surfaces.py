"""Every VoG setting, declared once in settings.py, reaches every surface.

For each declared setting: `vog-audit score` has its option, PipelineConfig its field
(and the environment its variable), `kubeflow.compile` its flag, and
VarianceOfGradients its keyword; a value given on each surface arrives in the
VogSettings the component carries. A setting added to the declaration appears on all
of them without another edit.
"""

import dataclasses
import inspect
import json
import os
import subprocess
import sys

from click.testing import CliRunner
import pytest

from components.vog import settings as settings_lib
from components.vog import spec_keys
from components.vog.settings import VogSettings
from components.vog.settings import declared
import repo_paths

REPO = repo_paths.REPO

# A value other than the default for each setting: (its text form, the value). Together
# they make valid settings. A new setting needs a sample here; the first test says so.
SAMPLES = {
    'label_key': ('target_label', 'target_label'),
    'target': ('prob', 'prob'),
    'label_mode': ('predicted', 'predicted'),
    'normalize': ('raw', 'raw'),
    'stage': ('120,240', [120, 240]),
    'num_checkpoints': ('4', 4),
    'splits': ('train,eval', ['train', 'eval']),
    'batch_size': ('32', 32),
    'inspection_budget': ('7', 7),
    'bucket_percentiles': ('60,95', (60.0, 95.0)),
    'example_id_key': ('uid', 'uid'),
    'rank_by': ('vog', 'vog'),
    'gradient_layers': ('embed,tokens', ['embed', 'tokens']),
    'pad_id': ('0', 0),
    'copy_splits': ('train,eval', ['train', 'eval']),
    'output_compression': ('none', 'none'),
    'max_record_bytes': ('4096', 4096),
    'slice_leave_out': ('region,label_flipped', ['region', 'label_flipped']),
}
EXPECTED = VogSettings(**{name: value for name, (_, value) in SAMPLES.items()})

# Names users and scripts already use; they must not change.
CLI_OPTIONS = {
    'label_key': '--label-key', 'target': '--target', 'label_mode': '--label-mode',
    'normalize': '--normalize', 'stage': '--stage', 'num_checkpoints': '--num-checkpoints',
    'splits': '--split', 'batch_size': '--batch-size',
    'inspection_budget': '--inspection-budget',
    'bucket_percentiles': '--bucket-percentiles', 'example_id_key': '--example-id-key',
    'rank_by': '--rank-by', 'gradient_layers': '--gradient-layer', 'pad_id': '--pad-id',
    'copy_splits': '--copy-splits', 'output_compression': '--output-compression',
    'max_record_bytes': '--max-record-bytes', 'slice_leave_out': '--slice-leave-out'}
CONFIG_FIELDS = {
    'label_key': 'label_key', 'target': 'vog_target', 'label_mode': 'vog_label_mode',
    'normalize': 'vog_normalize', 'stage': 'vog_stage',
    'num_checkpoints': 'vog_num_checkpoints', 'splits': 'vog_splits',
    'batch_size': 'vog_batch_size', 'inspection_budget': 'inspection_budget',
    'bucket_percentiles': 'bucket_percentiles', 'example_id_key': 'example_id_key',
    'rank_by': 'vog_rank_by', 'gradient_layers': 'vog_gradient_layers',
    'pad_id': 'vog_pad_id', 'copy_splits': 'vog_copy_splits',
    'output_compression': 'vog_output_compression',
    'max_record_bytes': 'vog_max_record_bytes', 'slice_leave_out': 'vog_slice_leave_out'}
KUBEFLOW_FLAGS = {'--vog-target', '--vog-normalize', '--vog-stage', '--vog-num-checkpoints',
                  '--vog-batch-size', '--inspection-budget', '--vog-rank-by',
                  '--bucket-percentiles', '--vog-splits', '--vog-gradient-layers',
                  '--vog-pad-id', '--vog-slice-leave-out'}


def _channels():
  from tfx import types  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  return dict(examples=types.Channel(type=standard_artifacts.Examples),
              model_run=types.Channel(type=standard_artifacts.ModelRun))


def test_every_setting_has_a_sample_and_keeps_its_names():
  names = [s.name for s in declared()]
  assert names == VogSettings.field_names()
  assert set(SAMPLES) == set(names), 'give each new setting a sample in SAMPLES'
  for s in declared():
    text, value = SAMPLES[s.name]
    assert value != s.default, s.name
    assert s.form.parse(text, s.name) == value, s.name
  assert {s.name: s.option for s in declared()} == CLI_OPTIONS
  assert {s.name: s.config_field for s in declared()} == CONFIG_FIELDS
  assert KUBEFLOW_FLAGS <= {s.kubeflow_flag for s in declared()}
  assert EXPECTED.validate() == EXPECTED


def test_a_field_without_a_declaration_is_refused_by_name():

  @dataclasses.dataclass(frozen=True)
  class Undeclared(VogSettings):
    extra: int = 1

  with pytest.raises(TypeError, match=r'Undeclared.extra is not declared with setting'):
    declared(Undeclared)


# `vog-audit score`.


class _Planned(Exception):
  """Stops `vog-audit score` where it would start the audit, holding its settings."""

  def __init__(self, settings):
    super().__init__('planned')
    self.settings = settings


def _cli_settings(monkeypatch, tmp_path, args):
  """The VogSettings `vog-audit score ARGS` would run the audit with."""
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  from pipeline.cli import score as score_cli  # pylint: disable=g-import-not-at-top

  def planned(plan_args, **_):
    raise _Planned(plan_args[0])

  monkeypatch.setattr(score_cli, 'split_patterns_of', lambda path: {'data': path})
  monkeypatch.setattr(score_cli, '_score', planned)
  result = CliRunner().invoke(cli, ['score', '--model-run', str(tmp_path / 'run'),
                                    '--examples', str(tmp_path / 'data'),
                                    '--output', str(tmp_path / 'out'), *args])
  assert isinstance(result.exception, _Planned), (result.exit_code, result.output)
  return result.exception.settings


def test_every_setting_is_an_option_of_vog_audit_score(monkeypatch, tmp_path):
  from pipeline.cli import score as score_cli  # pylint: disable=g-import-not-at-top
  params = {p.name: p for p in score_cli.score.params}
  args = []
  for s in declared():
    assert s.name in params, s.option
    assert params[s.name].opts == [s.option]
    text, value = SAMPLES[s.name]
    if s.repeatable:
      assert params[s.name].multiple
      for item in value:
        args += [s.option, item]
    else:
      args += [s.option, text]
  assert _cli_settings(monkeypatch, tmp_path, args) == EXPECTED
  assert _cli_settings(monkeypatch, tmp_path, []) == VogSettings()
  assert _cli_settings(monkeypatch, tmp_path, ['--label-key', '', '--label-mode',
                                               'predicted']).label_key is None
  assert _cli_settings(monkeypatch, tmp_path, ['--copy-splits', 'all']).copy_splits == 'all'


@pytest.mark.parametrize('args, message', [
    (['--num-checkpoints', 'ten'], "error: --num-checkpoints='ten' is not a whole number"),
    (['--pad-id', '0.5'], "error: --pad-id='0.5' is not a whole number"),
    (['--bucket-percentiles', '50;90'], "error: --bucket-percentiles='50;90' is not two "
                                        'numbers; give cut points such as 50,90'),
    (['--stage', 'warmup'], "error: --stage='warmup': give early, middle, late, complete"),
    (['--num-checkpoints', '1'], 'error: num_checkpoints=1; VoG needs at least 2'),
    (['--output-compression', 'zip'],
     "error: output_compression='zip' is not supported; choose one of gzip, none"),
])
def test_a_bad_option_is_exit_code_2_and_one_line(tmp_path, args, message):
  from pipeline.cli import main as cli  # pylint: disable=g-import-not-at-top
  result = CliRunner().invoke(cli, ['score', '--model-run', str(tmp_path / 'run'),
                                    '--examples', str(tmp_path / 'data'),
                                    '--output', str(tmp_path / 'out'), *args])
  assert result.exit_code == 2, result.output
  assert len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith(message), result.stderr
  assert not os.path.exists(tmp_path / 'out')


# PipelineConfig and the environment of the Airflow DAG.


def _config(**fields):
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  return PipelineConfig(data_root='d', pipeline_root='r', serving_model_dir='s', **fields)


def test_every_setting_is_a_field_of_pipeline_config():
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  fields = {f.name: f for f in dataclasses.fields(PipelineConfig)}
  for s in declared():
    assert fields[s.config_field].default == s.default, s.config_field
  assert _config().vog_settings() == VogSettings()
  # Each field alone, given as its value and as its text.
  for s in declared():
    text, value = SAMPLES[s.name]
    for given in (value, text):
      got = _config(**{s.config_field: given}).vog_settings()
      assert getattr(got, s.name) == getattr(EXPECTED, s.name), (s.config_field, given)
  assert _config(**{s.config_field: SAMPLES[s.name][1]
                    for s in declared()}).vog_settings() == EXPECTED


def test_splits_gradient_layers_and_pad_id_reach_the_component_from_the_config(tmp_path):
  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  config = PipelineConfig(data_root=str(tmp_path / 'data'),
                          pipeline_root=str(tmp_path / 'root'),
                          serving_model_dir=str(tmp_path / 'serving'),
                          vog_splits=('train', 'eval'), vog_gradient_layers=('embed',),
                          vog_pad_id=0)
  nodes = {c.id: c for c in audit_pipeline.create_pipeline(config).components}
  carried = VogSettings.from_json(
      nodes['VarianceOfGradients'].exec_properties[spec_keys.SETTINGS_KEY])
  assert (carried.splits, carried.gradient_layers, carried.pad_id) == (
      ['train', 'eval'], ['embed'], 0)


def test_the_reference_pipeline_never_slices_its_planted_truth_unless_told(tmp_path):
  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top

  def carried(**fields):
    config = PipelineConfig(data_root=str(tmp_path / 'data'),
                            pipeline_root=str(tmp_path / 'root'),
                            serving_model_dir=str(tmp_path / 'serving'), **fields)
    nodes = {c.id: c for c in audit_pipeline.create_pipeline(config).components}
    return VogSettings.from_json(
        nodes['VarianceOfGradients'].exec_properties[spec_keys.SETTINGS_KEY])

  assert carried().slice_leave_out == ['label_flipped']
  assert carried(dataset='tabular').slice_leave_out == ['label_flipped']
  assert carried(vog_slice_leave_out='region').slice_leave_out == ['region']


def test_every_setting_is_an_environment_variable():
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  environ = {'VOG_AUDIT_HOME': '/srv/vog'}
  environ.update({s.env_variable: SAMPLES[s.name][0] for s in declared()})
  assert 'VOG_AUDIT_INSPECTION_BUDGET' in environ
  assert 'VOG_AUDIT_VOG_STAGE' in environ
  assert PipelineConfig.from_env(environ).vog_settings() == EXPECTED
  with pytest.raises(ValueError, match="VOG_AUDIT_VOG_PAD_ID='none' is not a whole number"):
    PipelineConfig.from_env({'VOG_AUDIT_HOME': '/srv/vog', 'VOG_AUDIT_VOG_PAD_ID': 'none'})


def test_unreadable_config_text_is_refused_by_field():
  with pytest.raises(ValueError, match="vog_num_checkpoints='many' is not a whole number"):
    _config(vog_num_checkpoints='many').vog_settings()
  with pytest.raises(ValueError, match="bucket_percentiles='high' is not two numbers"):
    _config(bucket_percentiles='high').vog_settings()


# `kubeflow.compile`.


def test_every_setting_is_a_kubeflow_flag_that_reaches_the_component(tmp_path):
  from kubeflow import compile as kubeflow_compile  # pylint: disable=g-import-not-at-top
  args = []
  for s in declared():
    text, _ = SAMPLES[s.name]
    # A flag that takes separate words (--bucket-percentiles 60 95) gets the text's items.
    args += [s.kubeflow_flag, *(text.split(',') if s.kubeflow_words else [text])]
  path = kubeflow_compile.compile_pipeline(
      ['--output', str(tmp_path), '--image', 'vog-audit:test', *args])
  with open(path) as f:
    tasks = json.load(f)['pipelineSpec']['root']['dag']['tasks']
  parameters = tasks['VarianceOfGradients']['inputs']['parameters']
  carried = parameters[spec_keys.SETTINGS_KEY]['runtimeValue']['constantValue']
  assert VogSettings.from_json(list(carried.values())[0]) == EXPECTED


def test_unreadable_kubeflow_flag_text_ends_like_argparse(tmp_path, capsys):
  from kubeflow import compile as kubeflow_compile  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as ended:
    kubeflow_compile.compile_pipeline(['--output', str(tmp_path / 'out'),
                                       '--vog-pad-id', 'none'])
  assert ended.value.code == 2
  assert "error: --vog-pad-id='none' is not a whole number" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    kubeflow_compile.compile_pipeline(['--output', str(tmp_path / 'out'),
                                       '--bucket-percentiles', '50', 'x'])
  assert "error: --bucket-percentiles='50,x' is not two numbers" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'out')


# VarianceOfGradients.


def test_every_setting_is_a_keyword_of_the_component_with_its_default():
  from components.vog.component import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  parameters = inspect.signature(VarianceOfGradients.__init__).parameters
  for s in declared():
    assert parameters[s.name].default == s.default, s.name
    assert parameters[s.name].kind is inspect.Parameter.KEYWORD_ONLY, s.name
    assert s.help in ' '.join(VarianceOfGradients.__init__.__doc__.split()), s.name
  component = VarianceOfGradients(**_channels(), **{name: value for name, (_, value)
                                                    in SAMPLES.items()})
  assert VogSettings.from_json(
      component.exec_properties[spec_keys.SETTINGS_KEY]) == EXPECTED


def test_the_component_refuses_an_unknown_keyword_by_name():
  from components.vog.component import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  with pytest.raises(TypeError, match='VarianceOfGradients got unknown setting[(]s[)] '
                                      'targte; the settings are label_key, target,'):
    VarianceOfGradients(**_channels(), targte='loss')


# A setting added to the declaration.

# Runs in a fresh process: the declaration grows before any surface is imported, as it
# does when a setting is added to settings.py.
_TOY_SCRIPT = r'''
import dataclasses, inspect, json, sys

from components.vog import settings


@dataclasses.dataclass(frozen=True)
class ToySettings(settings.VogSettings):
  toy_level: int = settings.setting(3, 'how loud the toy is', form=settings.WHOLE_NUMBER)


settings.VogSettings = ToySettings

from components.vog.component import VarianceOfGradients
from kubeflow import compile as kubeflow_compile
from pipeline.cli import score as score_cli
from pipeline.config import PipelineConfig
from tfx import types
from tfx.types import standard_artifacts

found = {}
options = {p.name: p.opts for p in score_cli.score.params}
found['cli_option'] = options.get('toy_level')
found['cli_value'] = score_cli.settings_of({'toy_level': '4'}).toy_level
found['config_default'] = PipelineConfig('d', 'r', 's').vog_toy_level
found['config_value'] = PipelineConfig('d', 'r', 's', vog_toy_level='5').vog_settings().toy_level
found['env_value'] = PipelineConfig.from_env(
    {'VOG_AUDIT_HOME': '/x', 'VOG_AUDIT_VOG_TOY_LEVEL': '6'}).vog_settings().toy_level
path = kubeflow_compile.compile_pipeline(['--output', sys.argv[1], '--vog-toy-level', '7'])
with open(path) as f:
  parameters = json.load(f)['pipelineSpec']['root']['dag']['tasks'][
      'VarianceOfGradients']['inputs']['parameters']
found['kubeflow_value'] = json.loads(list(
    parameters['vog_settings']['runtimeValue']['constantValue'].values())[0])['toy_level']
found['component_keyword'] = 'toy_level' in inspect.signature(VarianceOfGradients).parameters
component = VarianceOfGradients(
    examples=types.Channel(type=standard_artifacts.Examples),
    model_run=types.Channel(type=standard_artifacts.ModelRun), toy_level=8)
found['component_value'] = json.loads(component.exec_properties['vog_settings'])['toy_level']
print('FOUND', json.dumps(found))
'''


def test_a_setting_added_to_the_declaration_appears_on_every_surface(tmp_path):
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', PYTHONPATH=REPO)
  result = subprocess.run([sys.executable, '-c', _TOY_SCRIPT, str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  (line,) = [l for l in result.stdout.splitlines() if l.startswith('FOUND ')]
  assert json.loads(line[len('FOUND '):]) == {
      'cli_option': ['--toy-level'], 'cli_value': 4, 'config_default': 3,
      'config_value': 5, 'env_value': 6, 'kubeflow_value': 7, 'component_keyword': True,
      'component_value': 8}


def test_text_forms_read_what_the_surfaces_write():
  for s in declared():
    if s.default is not None:
      assert VogSettings(**{s.name: s.form.parse(settings_lib.to_text(s.default),
                                                 s.name)}) == VogSettings(), s.name
