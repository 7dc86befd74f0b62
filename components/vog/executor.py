"""VarianceOfGradients executor: resolves artifacts, then runs the shared audit."""

import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.vog import audit
from components.vog import tallies
from components.vog.settings import VogSettings
from components.vog.settings import stage_from_text


def settings_from_exec_properties(exec_properties: Dict[str, Any]) -> VogSettings:
  """VogSettings from the component's execution properties (lists arrive as JSON)."""
  splits = exec_properties.get('splits')
  return VogSettings(
      label_key=exec_properties.get('label_key'),
      target=exec_properties['target'],
      label_mode=exec_properties['label_mode'],
      normalize=exec_properties['normalize'],
      stage=stage_from_text(exec_properties['stage']),
      num_checkpoints=int(exec_properties['num_checkpoints']),
      splits=json.loads(splits) if splits else None,
      batch_size=int(exec_properties['batch_size']),
      inspection_budget=int(exec_properties['inspection_budget']),
      bucket_percentiles=tuple(json.loads(exec_properties['bucket_percentiles'])),
      example_id_key=exec_properties['example_id_key'])


def _schema_features(schema_artifacts: List[types.Artifact]) -> List[str]:
  schema_path = io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(schema_artifacts))
  schema = io_utils.SchemaReader().read(schema_path)
  return [f.name for f in schema.feature]


class Executor(base_beam_executor.BaseBeamExecutor):
  """Scores every example of the chosen splits with VoG; see component.py."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(input_dict['examples'])
    split_patterns = {
        split: os.path.join(artifact_utils.get_split_uri([examples], split), '*')
        for split in artifact_utils.decode_split_names(examples.split_names)}
    baseline = None
    if input_dict.get('baseline'):
      base = artifact_utils.get_single_instance(input_dict['baseline'])
      baseline = {'artifact_id': base.id, 'uri': base.uri}
    schema_features = (_schema_features(input_dict['schema'])
                       if input_dict.get('schema') else None)

    plan = audit.plan_audit(
        settings_from_exec_properties(exec_properties),
        artifact_utils.get_single_uri(input_dict['model_run']),
        split_patterns,
        module_file=exec_properties.get('module_file'),
        schema_features=schema_features,
        baseline=baseline)

    scored = artifact_utils.get_single_instance(output_dict['scored_examples'])
    scored.split_names = artifact_utils.encode_split_names(list(plan.split_files))
    report = artifact_utils.get_single_instance(output_dict['difficulty_report'])
    summary = audit.run_audit(plan, self._make_beam_pipeline(), scored.uri, report.uri)
    for name in tallies.HEADLINE:
      report.set_int_custom_property(name, summary['counts'][name])
    logging.info('VarianceOfGradients wrote %s and %s', scored.uri, report.uri)
