"""VarianceOfGradients executor: resolves artifacts, then runs the shared audit."""

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.vog import audit
from components.vog import audit_errors
from components.vog import audit_plan
from components.vog.report import baseline as baseline_lib
from components.vog import beam_args
from components.vog import vocabulary as vocab
from components.vog.dataflow import slices as slices_lib
from components.vog.report.summary_model import ReportSummary
from components.vog.settings import VogSettings
from components.vog.spec_keys import BASELINE_KEY
from components.vog.spec_keys import DIFFICULTY_REPORT_KEY
from components.vog.spec_keys import EXAMPLES_KEY
from components.vog.spec_keys import MODEL_RUN_KEY
from components.vog.spec_keys import MODULE_FILE_KEY
from components.vog.spec_keys import SCHEMA_KEY
from components.vog.spec_keys import SCORED_EXAMPLES_KEY
from components.vog.spec_keys import SETTINGS_KEY
from components.vog.spec_keys import TRANSFORM_GRAPH_KEY


def settings_from_exec_properties(exec_properties: Dict[str, Any]) -> VogSettings:
  """VogSettings from the component's `vog_settings` execution property (JSON text).

  The text comes from ML Metadata or a compiled pipeline spec, so it is checked like
  any outside input (`from_json` validates it; the audit below takes it as it is).
  Raises audit_errors.AuditConfigError (a ValueError) when the property is missing, or
  for an unknown key, a wrong type or a bad value, each named.
  """
  text = exec_properties.get(SETTINGS_KEY)
  if not text:
    raise audit_errors.AuditConfigError(
        f'execution property {SETTINGS_KEY!r} is missing; VarianceOfGradients carries '
        'its settings there as VogSettings JSON - recompile the pipeline with this '
        'release of the component')
  try:
    return VogSettings.from_json(text)
  except ValueError as e:
    raise audit_errors.AuditConfigError(f'{SETTINGS_KEY}: {e}') from e


def baseline_of(shipped: types.Artifact):
  """The plan's baseline from a ShippedAudit: the shipped audit's report, or None.

  Raises audit_errors.AuditConfigError when the ShippedAudit's pointer file is missing or
  malformed (it is read like any outside input).
  """
  try:
    pointer = baseline_lib.read_pointer(shipped.uri)
  except baseline_lib.BaselineError as e:
    raise audit_errors.AuditConfigError(f'baseline: {e}') from e
  if pointer.report_uri is None:
    logging.info('No model has shipped yet (%s); the audit has no drift baseline', shipped.uri)
    return None
  return {'uri': pointer.report_uri, 'artifact_id': pointer.report_id,
          'model_id': pointer.model_id, 'shipped_at': pointer.shipped_at,
          'shipped_audit_uri': shipped.uri}


def _schema_features(schema_artifacts: List[types.Artifact]) -> List[str]:
  schema_path = io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(schema_artifacts))
  schema = io_utils.SchemaReader().read(schema_path)
  return [f.name for f in schema.feature]


def record_headline(report: types.Artifact, settings: VogSettings,
                    summary: ReportSummary) -> None:
  """Sets the report's ML Metadata custom properties: counts, headline settings (the
  plan's: rank_by is what ranked, `auto` resolved), what the flagged examples are
  (flagged_wrong_label, flagged_atypical, flagged_unclear over every split; memorised
  0/1 when it was measured; top_slice, one line, '' without a slice), ranked_by and,
  when the audit had a baseline it could compare with, the drift headline
  (DRIFT_PROPERTIES)."""
  for name in vocab.HEADLINE:
    report.set_int_custom_property(name, summary.counts[name])
  kinds = summary.flag_kinds or {}
  for kind, name in vocab.FLAGGED_KIND_PROPERTIES.items():
    report.set_int_custom_property(name, sum(k.get(kind, 0) for k in kinds.values()))
  memorised = None if summary.memorisation is None else summary.memorisation.memorised
  if memorised is not None:
    report.set_int_custom_property(vocab.MEMORISED, int(memorised))
  report.set_string_custom_property(vocab.RANKED_BY, summary.ranked_by)
  report.set_string_custom_property(
      vocab.TOP_SLICE, '' if summary.slices is None else slices_lib.best_line(
          summary.slices.top))
  for name, value in settings.headline().items():
    if isinstance(value, int):
      report.set_int_custom_property(name, value)
    else:
      report.set_string_custom_property(name, value)
  if summary.drift is not None:
    for name, value in summary.drift.properties().items():
      if isinstance(value, float):
        report.set_float_custom_property(name, value)
      elif isinstance(value, int):
        report.set_int_custom_property(name, value)
      else:
        report.set_string_custom_property(name, value)


class Executor(base_beam_executor.BaseBeamExecutor):
  """Scores every example of the chosen splits with VoG; see component.py."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    settings = settings_from_exec_properties(exec_properties)
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    split_patterns = {
        split: os.path.join(artifact_utils.get_split_uri([examples], split), '*')
        for split in artifact_utils.decode_split_names(examples.split_names)}
    baseline = None
    if input_dict.get(BASELINE_KEY):
      baseline = baseline_of(artifact_utils.get_single_instance(input_dict[BASELINE_KEY]))
    schema_features = (_schema_features(input_dict[SCHEMA_KEY])
                       if input_dict.get(SCHEMA_KEY) else None)
    transform_graph = (artifact_utils.get_single_uri(input_dict[TRANSFORM_GRAPH_KEY])
                       if input_dict.get(TRANSFORM_GRAPH_KEY) else None)

    plan = audit_plan.plan_audit(
        settings,
        artifact_utils.get_single_uri(input_dict[MODEL_RUN_KEY]),
        split_patterns,
        module_file=exec_properties.get(MODULE_FILE_KEY),
        schema_features=schema_features,
        baseline=baseline,
        transform_graph=transform_graph)

    scored = artifact_utils.get_single_instance(output_dict[SCORED_EXAMPLES_KEY])
    # Only the copied splits (by default the eval split the Evaluator reads) are in
    # scored_examples; every split's scores are in the report's score table.
    scored.split_names = artifact_utils.encode_split_names(
        settings.copied_splits(list(plan.split_files)))
    report = artifact_utils.get_single_instance(output_dict[DIFFICULTY_REPORT_KEY])
    # Which runner and workers this step got (the pipeline's arguments, then the
    # component's own): the one place to confirm a VoG-only pool took effect.
    logging.info('VarianceOfGradients runs Beam with: %s',
                 ' '.join(beam_args.shown(self._beam_pipeline_args)))
    summary = audit.audit_and_publish(plan, self._make_beam_pipeline(), scored.uri,
                                      report.uri)
    record_headline(report, plan.settings, summary)
    logging.info('VarianceOfGradients wrote %s and %s', scored.uri, report.uri)
