"""VarianceOfGradients: the contract. Inputs, outputs and parameters; the work is in
executor.py.

    vog = VarianceOfGradients(
        examples=example_gen.outputs['examples'],
        model_run=trainer.outputs['model_run'],
        label_key='label')
    evaluator = Evaluator(examples=vog.outputs['scored_examples'], ...)
"""

import json
from typing import List, Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ComponentSpec
from tfx.types.component_spec import ExecutionParameter

from components.vog import executor
from components.vog.artifacts import DifficultyReport
from components.vog.settings import VogSettings

DEFAULTS = VogSettings()


class VarianceOfGradientsSpec(ComponentSpec):
  """Parameters of a VoG audit; lists and the stage travel as JSON strings."""

  PARAMETERS = {
      'label_key': ExecutionParameter(type=str, optional=True),
      'target': ExecutionParameter(type=str),
      'label_mode': ExecutionParameter(type=str),
      'normalize': ExecutionParameter(type=str),
      'stage': ExecutionParameter(type=str),
      'num_checkpoints': ExecutionParameter(type=int),
      'splits': ExecutionParameter(type=str, optional=True),
      'batch_size': ExecutionParameter(type=int),
      'inspection_budget': ExecutionParameter(type=int),
      'bucket_percentiles': ExecutionParameter(type=str),
      'example_id_key': ExecutionParameter(type=str),
      'module_file': ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      'examples': ChannelParameter(type=standard_artifacts.Examples),
      'model_run': ChannelParameter(type=standard_artifacts.ModelRun),
      'schema': ChannelParameter(type=standard_artifacts.Schema, optional=True),
      'baseline': ChannelParameter(type=DifficultyReport, optional=True),
  }
  OUTPUTS = {
      'scored_examples': ChannelParameter(type=standard_artifacts.Examples),
      'difficulty_report': ChannelParameter(type=DifficultyReport),
  }


class VarianceOfGradients(base_beam_component.BaseBeamComponent):
  """Scores every example by Variance of Gradients across the Trainer's checkpoints.

  Outputs `scored_examples` (the input splits, each example with vog_score, vog_raw,
  vog_percentile, vog_decile, vog_bucket, vog_flagged, vog_target_class and
  example_id added) for the Evaluator to slice on, and `difficulty_report`
  (summary.json, flagged.jsonl, quarantine.jsonl, report.html) for people and the
  HumanReviewGate. Beam runner and workers come from `beam_pipeline_args`
  (`.with_beam_pipeline_args([...])` or the pipeline's).
  """

  SPEC_CLASS = VarianceOfGradientsSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self,
               examples: types.BaseChannel,
               model_run: types.BaseChannel,
               schema: Optional[types.BaseChannel] = None,
               baseline: Optional[types.BaseChannel] = None,
               label_key: Optional[str] = DEFAULTS.label_key,
               target: str = DEFAULTS.target,
               label_mode: str = DEFAULTS.label_mode,
               normalize: str = DEFAULTS.normalize,
               stage: Union[str, Sequence[int]] = DEFAULTS.stage,
               num_checkpoints: int = DEFAULTS.num_checkpoints,
               splits: Optional[List[str]] = None,
               batch_size: int = DEFAULTS.batch_size,
               inspection_budget: int = DEFAULTS.inspection_budget,
               bucket_percentiles: Sequence[float] = DEFAULTS.bucket_percentiles,
               example_id_key: str = DEFAULTS.example_id_key,
               module_file: Optional[str] = None):
    """Args:
      examples: Examples to score (every split unless `splits` says otherwise).
      model_run: the Trainer's ModelRun holding `vog_checkpoints/` written by
        VogCheckpointCallback.
      schema: optional Schema; model inputs and the label are checked against it.
      baseline: optional DifficultyReport of an earlier run, recorded in the summary.
      label_key: int label feature (needed in `label` mode).
      target: `loss` (default; best at finding mislabeled examples), `prob` or `logit`.
      label_mode: `label`, or `predicted` for unlabeled data.
      normalize: `class` (default), `abs-class` or `raw`.
      stage: `early`, `middle`, `late`, `complete` or a list of saved steps.
      num_checkpoints: at most this many checkpoints of the stage, evenly spaced.
      splits: splits to score; all when None.
      batch_size: examples per gradient batch (size it to the worker's memory).
      inspection_budget: how many examples at most to surface for people.
      bucket_percentiles: the two percentile cut points for easy/medium/hard.
      example_id_key: feature holding example ids; fingerprints are used without it.
      module_file: optional Python file defining `vog_inputs_fn(features) -> inputs`
        and/or `custom_objects` for custom layers.
    """
    VogSettings(label_key, target, label_mode, normalize,
                stage if isinstance(stage, str) else list(stage), num_checkpoints,
                splits, batch_size, inspection_budget, tuple(bucket_percentiles),
                example_id_key).validate()
    spec = VarianceOfGradientsSpec(
        examples=examples,
        model_run=model_run,
        schema=schema,
        baseline=baseline,
        label_key=label_key,
        target=target,
        label_mode=label_mode,
        normalize=normalize,
        stage=stage if isinstance(stage, str) else json.dumps([int(s) for s in stage]),
        num_checkpoints=num_checkpoints,
        splits=json.dumps(list(splits)) if splits is not None else None,
        batch_size=batch_size,
        inspection_budget=inspection_budget,
        bucket_percentiles=json.dumps([float(c) for c in bucket_percentiles]),
        example_id_key=example_id_key,
        module_file=module_file,
        scored_examples=types.Channel(type=standard_artifacts.Examples),
        difficulty_report=types.Channel(type=DifficultyReport))
    super().__init__(spec=spec)
