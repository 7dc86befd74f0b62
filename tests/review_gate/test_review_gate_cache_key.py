"""The gate's driver: only a decision may come back from TFX's cache.

`test_review_gate_pipeline.py` runs the whole thing under LocalDagRunner; these tests pin the
key itself against an ML Metadata store, and the hooks that Airflow's launcher calls.
"""

import pytest

from components.review_gate import component as component_lib
from components.review_gate import spec_keys


@pytest.fixture
def store(tmp_path):
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import metadata  # pylint: disable=g-import-not-at-top
  return metadata_store.MetadataStore(
      metadata.sqlite_metadata_connection_config(str(tmp_path / 'mlmd.sqlite')))


def _inputs(model_id=11, report_id=12):
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top
  model, report = standard_artifacts.Model(), DifficultyReport()
  model.id, report.id = model_id, report_id
  return {'model': [model], 'difficulty_report': [report]}


def _publish_blessing(store, key, decision):
  """A gate output as the executor leaves it in ML Metadata."""
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  type_id = store.get_artifact_type('ModelBlessing').id
  artifact = metadata_store_pb2.Artifact(type_id=type_id, uri='/x',
                                         state=metadata_store_pb2.Artifact.LIVE)
  artifact.custom_properties[spec_keys.CACHE_KEY_PROPERTY].string_value = key
  artifact.custom_properties['review_decision'].string_value = decision
  [artifact_id] = store.put_artifacts([artifact])
  return artifact_id


def _ensure_type(store):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  store.put_artifact_type(metadata_store_pb2.ArtifactType(name='ModelBlessing'))


@pytest.mark.parametrize('decision, reused', [
    ('approved', True), ('rejected', True), ('not_blessed_upstream', True),
    ('timeout', False), ('error', False),
])
def test_only_a_decision_hands_its_key_on(store, decision, reused):
  _ensure_type(store)
  first = component_lib.cache_key(store, _inputs(), 'digits_audit', 'HumanReviewGate')
  _publish_blessing(store, first, decision)
  second = component_lib.cache_key(store, _inputs(), 'digits_audit', 'HumanReviewGate')
  assert (second == first) == reused
  assert second.split('/')[0] == first.split('/')[0]  # same inputs, same prefix


def test_the_newest_decision_wins_and_other_inputs_do_not_count(store):
  _ensure_type(store)
  key = component_lib.cache_key(store, _inputs(), 'p', 'HumanReviewGate')
  prefix = key.split('/')[0]
  _publish_blessing(store, f'{prefix}/older', 'rejected')
  _publish_blessing(store, f'{prefix}/newer', 'approved')
  _publish_blessing(store, f'{prefix}/newest-timeout', 'timeout')
  assert component_lib.cache_key(store, _inputs(), 'p', 'HumanReviewGate') == f'{prefix}/newer'
  other = component_lib.cache_key(store, _inputs(model_id=99), 'p', 'HumanReviewGate')
  assert not other.startswith(prefix)
  assert not component_lib.cache_key(store, _inputs(), 'p', 'OtherGate').startswith(prefix)


def test_airflow_launcher_hooks_set_the_key_before_the_cache_lookup(store, monkeypatch):
  """Airflow's launcher calls resolve_exec_properties, then resolve_input_artifacts, then looks
  up its cache with the same exec_properties dict."""
  from tfx.dsl.components.base import base_driver  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import data_types  # pylint: disable=g-import-not-at-top
  _ensure_type(store)

  class Handle:
    pass

  handle = Handle()
  handle.store = store
  inputs = _inputs()
  monkeypatch.setattr(base_driver.BaseDriver, 'resolve_input_artifacts',
                      lambda self, *args: inputs)
  driver = component_lib.ReviewGateDriver(metadata_handle=handle)
  pipeline_info = data_types.PipelineInfo(pipeline_name='digits_audit', pipeline_root='/r',
                                          run_id='run-1')
  component_info = data_types.ComponentInfo(component_type='HumanReviewGate',
                                            component_id='HumanReviewGate',
                                            pipeline_info=pipeline_info)
  props = {'backend': 'local'}
  props = driver.resolve_exec_properties(props, pipeline_info, component_info)
  assert driver.resolve_input_artifacts({}, props, None, pipeline_info) is inputs
  expected_prefix = component_lib.cache_key(store, inputs, 'digits_audit',
                                            'HumanReviewGate').split('/')[0]
  assert props[spec_keys.CACHE_KEY_PROPERTY].startswith(expected_prefix + '/')
