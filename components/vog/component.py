"""VarianceOfGradients: the contract. Inputs, outputs and parameters; the work is in
executor.py.

    vog = VarianceOfGradients(
        examples=example_gen.outputs['examples'],
        model_run=trainer.outputs['model_run'],
        label_key='label')
    evaluator = Evaluator(examples=vog.outputs['scored_examples'], ...)

Every VoG setting travels in one execution property, `vog_settings`: the JSON text of a
`VogSettings` (as StatisticsGen carries its StatsOptions).
"""

import inspect
import textwrap
from typing import Any, Callable, Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from components.vog import executor
from components.vog.artifacts import DifficultyReport
from components.vog.artifacts import ShippedAudit
from components.vog.settings import VogSettings
from components.vog.settings import declared
from components.vog.spec_keys import BASELINE_KEY
from components.vog.spec_keys import DIFFICULTY_REPORT_KEY
from components.vog.spec_keys import EXAMPLES_KEY
from components.vog.spec_keys import MODEL_RUN_KEY
from components.vog.spec_keys import MODULE_FILE_KEY
from components.vog.spec_keys import SCHEMA_KEY
from components.vog.spec_keys import SCORED_EXAMPLES_KEY
from components.vog.spec_keys import SETTINGS_KEY
from components.vog.spec_keys import TRANSFORM_GRAPH_KEY

# Where the docstring of VarianceOfGradients.__init__ lists the settings.
_SETTINGS_ARGS = '<one line per VoG setting>'


def _with_setting_keywords(init: Callable[..., None]) -> Callable[..., None]:
  """`init` with one keyword argument per VoG setting in its signature and docstring.

  `init` takes the settings as **setting_values; its signature (what help() and IDEs
  show) lists each declared setting instead, with its type and default, and its
  docstring gets the setting's help line where it says _SETTINGS_ARGS.
  """
  signature = inspect.signature(init)
  parameters = [p for p in signature.parameters.values()
                if p.kind is not inspect.Parameter.VAR_KEYWORD]
  parameters += [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY,
                                   default=s.default, annotation=s.type)
                 for s in declared()]
  init.__signature__ = signature.replace(parameters=parameters)
  if init.__doc__:  # None when Python runs with -OO
    lines = []
    for s in declared():
      lines += textwrap.wrap(f'{s.name}: {s.help} [{s.default!r}].', width=80,
                             initial_indent=' ' * 8, subsequent_indent=' ' * 10)
    init.__doc__ = init.__doc__.replace(' ' * 8 + _SETTINGS_ARGS, '\n'.join(lines))
  return init


class VarianceOfGradientsSpec(ComponentSpec):
  """Inputs, outputs, and the audit's settings as one VogSettings JSON text."""

  PARAMETERS = {
      SETTINGS_KEY: ExecutionParameter(type=str),
      MODULE_FILE_KEY: ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
      SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
      BASELINE_KEY: ChannelParameter(type=ShippedAudit, optional=True),
      TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph,
                                            optional=True),
  }
  OUTPUTS = {
      SCORED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      DIFFICULTY_REPORT_KEY: ChannelParameter(type=DifficultyReport),
  }


class VarianceOfGradients(base_beam_component.BaseBeamComponent):
  """Scores every example by Variance of Gradients across the Trainer's checkpoints.

  Outputs `scored_examples` (the `copy_splits`, by default the eval split: each
  example with vog_score, vog_raw, vog_percentile, vog_decile, vog_bucket, vog_flagged,
  vog_target_class, example_id and, with labels, the label-error signals audit_*
  added) for the Evaluator to slice on, and `difficulty_report` (summary.json,
  flagged.jsonl, quarantine shards, the score table of every split under score_table/,
  report.html) for people and the HumanReviewGate; the report's ML Metadata custom properties hold the headline
  counts and settings. Beam runner and workers come from `beam_pipeline_args`
  (`.with_beam_pipeline_args([...])` or the pipeline's).
  """

  SPEC_CLASS = VarianceOfGradientsSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  @_with_setting_keywords
  def __init__(self,
               examples: types.BaseChannel,
               model_run: types.BaseChannel,
               schema: Optional[types.BaseChannel] = None,
               baseline: Optional[types.BaseChannel] = None,
               transform_graph: Optional[types.BaseChannel] = None,
               *,
               module_file: Optional[str] = None,
               settings: Optional[VogSettings] = None,
               **setting_values: Any):
    """Args:
      examples: Examples to score (every split unless `splits` says otherwise).
      model_run: the Trainer's ModelRun holding `vog_checkpoints/` written by
        VogCheckpointCallback.
      schema: optional Schema; model inputs and the label are checked against it.
      baseline: optional ShippedAudit naming the audit of the last model that shipped
        (HumanReviewGate's `shipped_audit`, through a LatestArtifactStrategy resolver);
        the report then holds `drift` against it, and the history it keeps is extended.
      transform_graph: optional TransformGraph (Transform's `transform_graph`) when the
        model takes transformed features: `examples` are then the raw examples Transform
        read, each batch goes through the graph before scoring, and the scored examples
        keep the raw features. Every model input must be an output of the graph, and
        a module_file must not define vog_inputs_fn as well.
      module_file: optional Python file defining `vog_inputs_fn(features) -> inputs`
        (not with `transform_graph`) and/or `custom_objects` for custom layers. Trusted
        code: it is imported in the executor process and in every Beam worker, and its
        custom_objects run while checkpoints load and score.
      settings: every VoG setting at once, as a VogSettings; give either this or the
        separate settings below, not both.
      **setting_values: each VogSettings field, by name (components/vog/settings.py
        declares them); one left out takes its default, in brackets:
        <one line per VoG setting>

    Raises:
      TypeError: a keyword argument that names no setting (named, with the settings).
      ValueError: a bad setting, named; or `settings` given together with separate
        settings (named). A module_file defining vog_inputs_fn together with
        `transform_graph` is refused when the executor starts, before any example is
        scored (the module is read there).
    """
    names = VogSettings.field_names()
    unknown = sorted(set(setting_values) - set(names))
    if unknown:
      raise TypeError(f'VarianceOfGradients got unknown setting(s) {", ".join(unknown)}; '
                      f'the settings are {", ".join(names)}')
    given = {name: setting_values[name] for name in names if name in setting_values}
    if settings is None:
      settings = VogSettings(**given)
    elif not isinstance(settings, VogSettings):
      raise ValueError(f'settings={settings!r} must be a VogSettings; or leave it out and '
                       'give the settings as separate arguments')
    elif given:
      raise ValueError(f'VarianceOfGradients got settings= and also {", ".join(given)}; '
                       'give either a VogSettings or separate settings, not both '
                       '(e.g. settings=dataclasses.replace(settings, ...))')
    settings.validate()
    spec = VarianceOfGradientsSpec(
        **{EXAMPLES_KEY: examples, MODEL_RUN_KEY: model_run, SCHEMA_KEY: schema,
           BASELINE_KEY: baseline, TRANSFORM_GRAPH_KEY: transform_graph,
           SETTINGS_KEY: settings.to_json_string(),
           MODULE_FILE_KEY: module_file,
           SCORED_EXAMPLES_KEY: types.Channel(type=standard_artifacts.Examples),
           DIFFICULTY_REPORT_KEY: types.Channel(type=DifficultyReport)})
    super().__init__(spec=spec)
