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

from typing import Any, List, Optional, Sequence, Union

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
from components.vog.spec_keys import BASELINE_KEY
from components.vog.spec_keys import DIFFICULTY_REPORT_KEY
from components.vog.spec_keys import EXAMPLES_KEY
from components.vog.spec_keys import MODEL_RUN_KEY
from components.vog.spec_keys import MODULE_FILE_KEY
from components.vog.spec_keys import SCHEMA_KEY
from components.vog.spec_keys import SCORED_EXAMPLES_KEY
from components.vog.spec_keys import SETTINGS_KEY
from components.vog.spec_keys import TRANSFORM_GRAPH_KEY



class _Default:
  """Marks a setting the caller did not give; it takes its VogSettings default."""

  def __repr__(self) -> str:
    return 'VogSettings default'


_DEFAULT: Any = _Default()


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

  def __init__(self,
               examples: types.BaseChannel,
               model_run: types.BaseChannel,
               schema: Optional[types.BaseChannel] = None,
               baseline: Optional[types.BaseChannel] = None,
               transform_graph: Optional[types.BaseChannel] = None,
               label_key: Optional[str] = _DEFAULT,
               target: str = _DEFAULT,
               label_mode: str = _DEFAULT,
               normalize: str = _DEFAULT,
               stage: Union[str, Sequence[int]] = _DEFAULT,
               num_checkpoints: int = _DEFAULT,
               splits: Optional[List[str]] = _DEFAULT,
               batch_size: int = _DEFAULT,
               inspection_budget: int = _DEFAULT,
               bucket_percentiles: Sequence[float] = _DEFAULT,
               example_id_key: str = _DEFAULT,
               rank_by: str = _DEFAULT,
               gradient_layers: Optional[List[str]] = _DEFAULT,
               pad_id: Optional[int] = _DEFAULT,
               copy_splits: Union[None, str, List[str]] = _DEFAULT,
               output_compression: str = _DEFAULT,
               max_record_bytes: int = _DEFAULT,
               module_file: Optional[str] = None,
               settings: Optional[VogSettings] = None):
    """Args (settings left out take the defaults of VogSettings, shown in brackets):
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
      label_key: int label feature, needed in `label` mode ['label'].
      target: `loss` (best at finding mislabeled examples), `prob` or `logit` ['loss'].
      label_mode: `label`, or `predicted` for unlabeled data ['label'].
      normalize: `class`, `abs-class` or `raw` ['class'].
      stage: `early`, `middle`, `late`, `complete` or a list of saved steps
        ['complete'].
      num_checkpoints: at most this many checkpoints of the stage, evenly spaced [10].
      splits: splits to score; all when None [None].
      batch_size: examples per gradient batch (size it to the worker's memory) [256].
      inspection_budget: how many examples at most to surface for people [200].
      bucket_percentiles: the two percentile cut points for easy/medium/hard
        [(50, 90)].
      example_id_key: feature holding example ids; fingerprints are used without it
        ['example_id'].
      rank_by: what ranks the examples for the buckets, the slices and the flagged set:
        `vog`, or a label-error signal (`confidence`, `margin_mean`, `margin_last`,
        `final_loss`, `el2n`, `variability`, `forgetting`); `auto` is `confidence` with
        labels and `vog` in `predicted` mode ['auto'].
      gradient_layers: layers whose outputs stand in for inputs that are not
        differentiable (token or category ids into an Embedding); None finds the
        Embedding layers that integer and text inputs feed [None].
      pad_id: the padding id of integer inputs into an Embedding without a mask; padded
        positions are left out of VoG [None].
      copy_splits: the splits `scored_examples` holds in full, every example with its
        VoG fields: a list of split names, `all`, or None for the split the Evaluator
        reads, `eval`; every split's scores are in the report's score table either
        way [None].
      output_compression: `gzip` (the copies gzip level 1, the score table zstd) or
        `none` ['gzip'].
      max_record_bytes: an input record longer than this is quarantined (`record too
        large`) without being read into memory [64 MiB].
      module_file: optional Python file defining `vog_inputs_fn(features) -> inputs`
        (not with `transform_graph`) and/or `custom_objects` for custom layers. Trusted
        code: it is imported in the executor process and in every Beam worker, and its
        custom_objects run while checkpoints load and score.
      settings: every setting above at once, as a VogSettings; give either this or
        the separate settings, not both.

    Raises:
      ValueError: a bad setting, named; or `settings` given together with separate
        settings (named). A module_file defining vog_inputs_fn together with
        `transform_graph` is refused when the executor starts, before any example is
        scored (the module is read there).
    """
    given = {name: value for name, value in (
        ('label_key', label_key), ('target', target), ('label_mode', label_mode),
        ('normalize', normalize), ('stage', stage), ('num_checkpoints', num_checkpoints),
        ('splits', splits), ('batch_size', batch_size),
        ('inspection_budget', inspection_budget),
        ('bucket_percentiles', bucket_percentiles), ('example_id_key', example_id_key),
        ('rank_by', rank_by), ('gradient_layers', gradient_layers), ('pad_id', pad_id),
        ('copy_splits', copy_splits), ('output_compression', output_compression),
        ('max_record_bytes', max_record_bytes),
    ) if value is not _DEFAULT}
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
