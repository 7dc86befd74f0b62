"""VogSettings as one JSON object: exact round trips, and refusals that name the key."""

import json

import pytest

from components.vog.settings import HEADLINE
from components.vog.settings import VogSettings
from components.vog.settings import stage_from_text

CUSTOM = VogSettings(label_key=None, target='prob', label_mode='predicted',
                     normalize='abs-class', stage=[120, 240, 360], num_checkpoints=3,
                     splits=['train', 'eval'], batch_size=32, inspection_budget=0,
                     bucket_percentiles=(60, 95.5), example_id_key='uid')


@pytest.mark.parametrize('settings', [VogSettings(), CUSTOM], ids=['defaults', 'custom'])
def test_round_trip_is_exact(settings):
  text = settings.to_json_string()
  assert VogSettings.from_json(text) == settings
  assert VogSettings.from_json(settings.to_json()) == settings
  assert VogSettings.from_json(text).to_json_string() == text
  assert json.loads(text) == settings.to_json()


def test_json_is_plain_and_stable():
  data = CUSTOM.to_json()
  assert data['bucket_percentiles'] == [60.0, 95.5]
  assert data['stage'] == [120, 240, 360] and data['splits'] == ['train', 'eval']
  assert sorted(data) == sorted(VogSettings.field_names())
  # Equal settings give equal text, so a pipeline's cache key does not change.
  again = VogSettings(**dict(CUSTOM.to_json(), bucket_percentiles=[60.0, 95.5],
                             stage=(120, 240, 360)))
  assert again == CUSTOM and again.to_json_string() == CUSTOM.to_json_string()


def test_absent_keys_take_their_defaults():
  assert VogSettings.from_json('{"target": "logit"}') == VogSettings(target='logit')
  assert VogSettings.from_json('{}') == VogSettings()


def test_headline_is_ints_and_text():
  assert VogSettings().headline() == {
      'target': 'loss', 'label_mode': 'label', 'normalize': 'class',
      'stage': 'complete', 'num_checkpoints': 10, 'inspection_budget': 200,
      'rank_by': 'confidence'}
  # The property says what ranked the examples, `auto` resolved.
  assert VogSettings(label_mode='predicted').headline()['rank_by'] == 'vog'
  assert VogSettings(rank_by='el2n').headline()['rank_by'] == 'el2n'
  assert CUSTOM.headline()['stage'] == '[120, 240, 360]'
  assert tuple(CUSTOM.headline()) == HEADLINE


@pytest.mark.parametrize('text, message', [
    ('not json', 'VoG settings are not valid JSON'),
    ('[1, 2]', 'VoG settings must be a JSON object of settings, not list'),
    ('"loss"', 'VoG settings must be a JSON object of settings, not str'),
    ('{"targte": "loss"}', 'VoG settings key(s) targte are unknown; the known keys are '
                           'label_key, target,'),
    ('{"num_checkpoints": "10"}', "num_checkpoints='10' must be a whole number, e.g. 10"),
    ('{"num_checkpoints": 10.0}', 'num_checkpoints=10.0 must be a whole number'),
    ('{"batch_size": true}', 'batch_size=True must be a whole number'),
    ('{"inspection_budget": null}', 'inspection_budget=None must be a whole number'),
    ('{"target": 3}', "target=3 must be text, e.g. 'loss'"),
    ('{"label_key": ["label"]}', "label_key=['label'] must be a feature name"),
    ('{"stage": []}', 'stage=[]: give a stage name'),
    ('{"stage": [1, "2"]}', "stage=[1, '2']: give a stage name"),
    ('{"stage": {"early": 1}}', "stage={'early': 1}: give a stage name"),
    ('{"splits": "train"}', "splits='train' must be a list of split names"),
    ('{"splits": []}', 'splits=[] names no split'),
    ('{"bucket_percentiles": "50,90"}', "bucket_percentiles='50,90' must be two numbers"),
    ('{"bucket_percentiles": [90, 50]}', 'bucket_percentiles=[90.0, 50.0]; give two '
                                         'increasing percentiles'),
    ('{"bucket_percentiles": [50, NaN]}', 'bucket_percentiles=[50.0, nan]'),
    ('{"target": "gradient"}', "target='gradient' is not supported; choose one of"),
    ('{"stage": "warmup"}', "stage='warmup' is not supported"),
    ('{"num_checkpoints": 1}', 'num_checkpoints=1; VoG needs at least 2'),
    ('{"batch_size": 0}', 'batch_size=0; give a positive batch size'),
    ('{"inspection_budget": -1}', 'inspection_budget=-1; give 0 or more'),
    ('{"label_key": null}', "label_mode='label' needs label_key"),
    ('{"rank_by": "aum"}', "rank_by='aum' is not supported; choose one of auto, vog, "
                           "confidence"),
    ('{"rank_by": "el2n", "label_mode": "predicted"}',
     "rank_by='el2n' compares the model with the label; with label_mode='predicted'"),
    ('{"gradient_layers": []}', 'gradient_layers=[] must be a non-empty list of layer'),
    ('{"gradient_layers": "embed"}', "gradient_layers='embed' must be a non-empty list"),
    ('{"pad_id": 0.5}', 'pad_id=0.5 must be a whole number'),
    ('{"inspection_budget": 100001}', 'inspection_budget=100001 is above 100,000: every '
                                      'writer of a split receives its flagged'),
    ('{"copy_splits": "eval"}', "copy_splits='eval' must be a list of split names, 'all'"),
    ('{"copy_splits": [""]}', "copy_splits=[''] must be a list of split names"),
    ('{"output_compression": "zip"}', "output_compression='zip' is not supported; choose "
                                      'one of gzip, none'),
    ('{"max_record_bytes": 0}', 'max_record_bytes=0; give a record size in bytes from 1 to '
                                '2,147,483,648 (the default 67,108,864 is 64 MiB)'),
    ('{"max_record_bytes": 4294967296}', 'max_record_bytes=4294967296; give a record size'),
    ('{"max_record_bytes": "64MB"}', "max_record_bytes='64MB' must be a whole number, e.g. "
                                     '67108864'),
    ('{"slice_leave_out": "label_flipped"}', "slice_leave_out='label_flipped' must be a "
                                             'list of feature names'),
    ('{"slice_leave_out": [""]}', "slice_leave_out=[''] must be a list of feature names"),
    ('{"slice_leave_out": null}', 'slice_leave_out=None must be a list of feature names'),
])
def test_from_json_refuses_by_name(text, message):
  with pytest.raises(ValueError) as raised:
    VogSettings.from_json(text)
  assert message in str(raised.value)


def test_copy_splits_name_what_scored_examples_hold_in_full():
  scored = ['train', 'eval', 'test']
  assert VogSettings().copied_splits(scored) == ['eval']
  assert VogSettings(copy_splits='all').copied_splits(scored) == scored
  assert VogSettings(copy_splits=('test', 'train')).copied_splits(scored) == ['train', 'test']
  assert VogSettings().copied_splits(['train']) == []
  assert VogSettings.from_json('{"copy_splits": ["test"]}').copy_splits == ['test']


def test_records_above_64_mib_are_quarantined_by_default():
  from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
  assert VogSettings().max_record_bytes == 64 << 20
  small = VogSettings.from_json('{"max_record_bytes": 1024}')
  assert small.max_record_bytes == 1024
  assert VogSettings.from_json(small.to_json_string()) == small
  # The setting stays within what the reader takes for a length at all.
  assert VogSettings(max_record_bytes=record_files.MAX_RECORD_BYTES).validate()


def test_validate_refuses_wrong_types_from_python_too():
  with pytest.raises(ValueError, match="num_checkpoints='5' must be a whole number"):
    VogSettings(num_checkpoints='5').validate()
  assert VogSettings(stage=(10, 20)).validate().stage == [10, 20]


@pytest.mark.parametrize('text, stage', [('late', 'late'), ('120,240', [120, 240]),
                                         ('[5, 10]', [5, 10])])
def test_stage_from_text(text, stage):
  assert stage_from_text(text) == stage


@pytest.mark.parametrize('text', ['warmup', '1.5,2', '["a"]', '{"a": 1}'])
def test_stage_from_text_refuses(text):
  with pytest.raises(ValueError, match='give early, middle, late, complete or a list'):
    stage_from_text(text)


def _channels():
  from tfx import types  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  return dict(examples=types.Channel(type=standard_artifacts.Examples),
              model_run=types.Channel(type=standard_artifacts.ModelRun))


def test_component_carries_one_settings_property():
  from components.vog import spec_keys  # pylint: disable=g-import-not-at-top
  from components.vog.component import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  by_keywords = VarianceOfGradients(**_channels(), label_key='label', target='prob',
                                    stage=(3, 6), bucket_percentiles=[60, 95])
  assert set(by_keywords.exec_properties) == {spec_keys.SETTINGS_KEY,
                                              spec_keys.MODULE_FILE_KEY}
  expected = VogSettings(target='prob', stage=[3, 6], bucket_percentiles=(60.0, 95.0))
  assert VogSettings.from_json(by_keywords.exec_properties[spec_keys.SETTINGS_KEY]) == (
      expected)
  by_object = VarianceOfGradients(**_channels(), settings=expected)
  assert (by_object.exec_properties[spec_keys.SETTINGS_KEY] ==
          by_keywords.exec_properties[spec_keys.SETTINGS_KEY])
  assert set(by_object.inputs) >= {spec_keys.EXAMPLES_KEY, spec_keys.MODEL_RUN_KEY}
  assert set(by_object.outputs) == {spec_keys.SCORED_EXAMPLES_KEY,
                                    spec_keys.DIFFICULTY_REPORT_KEY}


def test_component_refuses_settings_and_keywords_together():
  from components.vog.component import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='got settings= and also target, splits; give '
                                       'either a VogSettings or separate settings'):
    VarianceOfGradients(**_channels(), settings=VogSettings(), target='loss', splits=None)
  with pytest.raises(ValueError, match="settings={'target': 'loss'} must be a VogSettings"):
    VarianceOfGradients(**_channels(), settings={'target': 'loss'})
  with pytest.raises(ValueError, match='num_checkpoints=1; VoG needs at least 2'):
    VarianceOfGradients(**_channels(), settings=VogSettings(num_checkpoints=1))


def test_every_setting_is_a_keyword_of_the_component():
  # A setting added to VogSettings but not to the component's keywords could be set
  # only through settings=: each one is both.
  import dataclasses  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  from components.vog import spec_keys  # pylint: disable=g-import-not-at-top
  from components.vog.component import VarianceOfGradients  # pylint: disable=g-import-not-at-top
  keywords = set(inspect.signature(VarianceOfGradients.__init__).parameters)
  missing = {f.name for f in dataclasses.fields(VogSettings)} - keywords
  assert not missing, missing
  component = VarianceOfGradients(**_channels(), max_record_bytes=4096)
  assert VogSettings.from_json(
      component.exec_properties[spec_keys.SETTINGS_KEY]).max_record_bytes == 4096


def test_auto_resolves_to_the_signal_planning_chose():
  chosen = VogSettings().resolving_auto('el2n')
  assert (chosen.rank_by, chosen.ranked_by, chosen.rank_normalize) == ('el2n', 'el2n', 'raw')
  assert chosen.headline()['rank_by'] == 'el2n'
  assert VogSettings(rank_by='margin_mean').resolving_auto('el2n').rank_by == 'margin_mean'
  unlabelled = VogSettings(label_mode='predicted', label_key=None)
  assert unlabelled.resolving_auto('vog').rank_by == 'vog'
  with pytest.raises(ValueError, match="rank_by auto is vog with label_mode='predicted'"):
    unlabelled.resolving_auto('el2n')
  with pytest.raises(ValueError, match="rank_by auto cannot resolve to 'magic'"):
    VogSettings().resolving_auto('magic')
