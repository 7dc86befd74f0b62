"""The reference VoG audit pipeline, defined once for every runner and reference data set.

    ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator
    ImportExampleGen + SchemaGen -> Trainer (checkpoints for VoG)
    Trainer.model_run + ImportExampleGen + latest ShippedAudit -> VarianceOfGradients
    VarianceOfGradients.scored_examples (eval) + Trainer.model
        + latest blessed model -> Evaluator
    Evaluator.blessing + VarianceOfGradients.difficulty_report + latest ShippedAudit
        -> HumanReviewGate -> Pusher

The latest ShippedAudit names the audit of the last model the gate let ship; the audit
compares itself with it (summary.json's `drift`), and the gate passes it on when it does
not bless, so a rejected model never becomes the baseline.

The Pusher obeys the gate's blessing: a model ships only when the Evaluator blessed it and
the review (a written policy by default; a person over Slack or `vog-audit review`) approved.

That is the `digits` pipeline (`config.dataset`). The `tabular` and `text` pipelines put
Transform before the Trainer (pipeline.reference.reference_datasets names their module files):

    ImportExampleGen + SchemaGen -> Transform
    Transform.transformed_examples + Transform.transform_graph -> Trainer
    Trainer.model_run + ImportExampleGen (raw) + Transform.transform_graph
        + latest ShippedAudit -> VarianceOfGradients

The audit reads the RAW examples and applies the transform graph to each batch before it
takes gradients, so `scored_examples` hold the raw features plus the vog_* fields; the
serving model applies the same graph to raw tf.Examples, so the Evaluator is unchanged.

Every reference data set records which labels it planted wrong in `label_flipped`; the
audit leaves that feature out of its slice statistics (REFERENCE_SLICE_LEAVE_OUT) unless
`vog_slice_leave_out` names the features to leave out.

Runners: `tfx.orchestration.LocalDagRunner().run(create_pipeline(config))`, the Airflow DAG
in `pipeline/airflow_dag.py`, and `python -m kubeflow.compile`.
"""

import dataclasses
from typing import Tuple

from tfx import v1 as tfx

from components.review_gate import spec_keys as review_gate_keys
from components.vog.settings import VogSettings
from pipeline.reference import demo_data
from pipeline.reference import reference_datasets
from pipeline.config import PipelineConfig
from pipeline.evaluation import difficulty_eval_config

# Component ids, in pipeline order; runners and tests refer to these.
EXAMPLE_GEN = 'ImportExampleGen'
STATISTICS_GEN = 'StatisticsGen'
SCHEMA_GEN = 'SchemaGen'
EXAMPLE_VALIDATOR = 'ExampleValidator'
TRANSFORM = 'Transform'
TRAINER = 'Trainer'
VOG = 'VarianceOfGradients'
SHIPPED_AUDIT_RESOLVER = 'latest_shipped_audit_resolver'
BASELINE_RESOLVER = 'latest_blessed_model_resolver'
EVALUATOR = 'Evaluator'
# The split the Trainer evaluates on and the Evaluator reads from scored_examples.
EVAL_SPLIT = 'eval'
REVIEW_GATE = 'HumanReviewGate'
PUSHER = 'Pusher'
# The digits pipeline (the default); `component_ids` gives those of any data set.
COMPONENT_IDS = (EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR, TRAINER,
                 SHIPPED_AUDIT_RESOLVER, VOG, BASELINE_RESOLVER, EVALUATOR, REVIEW_GATE,
                 PUSHER)
# The tabular and text pipelines: Transform between the data checks and the Trainer.
TRANSFORM_COMPONENT_IDS = (EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR,
                           TRANSFORM, TRAINER, SHIPPED_AUDIT_RESOLVER, VOG,
                           BASELINE_RESOLVER, EVALUATOR, REVIEW_GATE, PUSHER)


def component_ids(dataset: str = reference_datasets.DIGITS) -> Tuple[str, ...]:
  """The component ids of the pipeline for `dataset`, in pipeline order.

  Raises ValueError naming the choices for an unknown data set.
  """
  uses_transform = reference_datasets.reference_dataset(dataset).uses_transform
  return TRANSFORM_COMPONENT_IDS if uses_transform else COMPONENT_IDS


# Features of the reference data sets the audit never slices unless
# vog_slice_leave_out names others: `label_flipped` records which labels were planted
# wrong, the answer the audit is measured against, so a slice on it would only find
# the planted labels again.
REFERENCE_SLICE_LEAVE_OUT = (demo_data.FLIPPED_KEY,)


def reference_vog_settings(config: PipelineConfig) -> VogSettings:
  """The VarianceOfGradients settings of the reference pipeline: the config's, with
  slice_leave_out REFERENCE_SLICE_LEAVE_OUT when the config leaves it empty."""
  settings = config.vog_settings()
  if not settings.slice_leave_out:
    settings = dataclasses.replace(settings,
                                   slice_leave_out=list(REFERENCE_SLICE_LEAVE_OUT))
  return settings


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
  """Builds the audit pipeline from `config`.

  Args:
    config: paths, ML Metadata, Beam arguments and component settings; `config.dataset`
      picks the digits pipeline or one with Transform (tabular, text). Every Beam
      component gets `config.beam_args()`; VarianceOfGradients gets
      `config.vog_beam_args()` after them.
    metadata_connection_config: overrides `config.metadata`; Kubeflow passes None
      through `kubeflow.compile`, where the cluster provides ML Metadata. It becomes
      part of the pipeline IR and TFX logs it, so it must hold no password.

  Raises:
    ValueError: a bad setting, named (from this module, the VoG component, the
      Evaluator configuration or the review gate).
  """
  # Imported here so that `pipeline` stays importable while only the config is needed.
  from components import HumanReviewGate  # pylint: disable=g-import-not-at-top
  from components import ShippedAudit  # pylint: disable=g-import-not-at-top
  from components import VarianceOfGradients  # pylint: disable=g-import-not-at-top

  if config.epochs < 2:
    raise ValueError(f'epochs={config.epochs}; VarianceOfGradients needs at least 2 '
                     'saved checkpoints, so train for at least 2 epochs')
  transform_code = config.transform_code()  # refuses an unknown dataset by name

  example_gen = tfx.components.ImportExampleGen(
      input_base=config.data_root, input_config=demo_data.input_config())
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'],
      schema=schema_gen.outputs['schema'])

  transform = None
  if transform_code is not None:
    transform = tfx.components.Transform(
        **transform_code,
        examples=example_gen.outputs['examples'],
        schema=schema_gen.outputs['schema']).with_id(TRANSFORM)
    # The model trains on transformed examples and gets the graph for its serving input.
    training = {'examples': transform.outputs['transformed_examples'],
                'transform_graph': transform.outputs['transform_graph']}
  else:
    training = {'examples': example_gen.outputs['examples']}
  trainer = tfx.components.Trainer(
      **config.trainer_code(),
      **training,
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=['train']),
      eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
      custom_config=config.trainer_custom_config())

  # The audit of the last model that shipped; none before the first one ships.
  shipped_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      shipped_audit=tfx.dsl.Channel(type=ShippedAudit),
  ).with_id(SHIPPED_AUDIT_RESOLVER)

  # Always the raw examples: with Transform the audit applies the graph itself, and the
  # scored examples keep the raw features that the Evaluator and people read.
  vog_inputs = {}
  if transform is not None:
    vog_inputs['transform_graph'] = transform.outputs['transform_graph']
  settings = reference_vog_settings(config)
  if EVAL_SPLIT not in settings.copied_splits(settings.splits or [EVAL_SPLIT]):
    raise ValueError(
        f'vog_copy_splits={settings.copy_splits!r} and vog_splits={settings.splits!r} leave '
        f'the {EVAL_SPLIT!r} split out of scored_examples, which the Evaluator reads - keep '
        f'{EVAL_SPLIT!r} in both (or leave them unset)')
  vog = VarianceOfGradients(
      examples=example_gen.outputs['examples'],
      model_run=trainer.outputs['model_run'],
      schema=schema_gen.outputs['schema'],
      baseline=shipped_resolver.outputs['shipped_audit'],
      settings=settings,
      **vog_inputs).with_id(VOG)
  if config.vog_beam_pipeline_args:
    # VoG alone (a GPU pool, another runner); tfx.dsl.Pipeline puts the pipeline's
    # beam_pipeline_args in front of these, so they add to and override those.
    vog.with_beam_pipeline_args(config.vog_beam_args())

  # The change threshold compares against the last model that was blessed; before one
  # exists the Evaluator drops it and applies the value thresholds alone.
  baseline_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id(BASELINE_RESOLVER)

  evaluator = tfx.components.Evaluator(
      examples=vog.outputs['scored_examples'],
      model=trainer.outputs['model'],
      baseline_model=baseline_resolver.outputs['model'],
      example_splits=[EVAL_SPLIT],
      eval_config=difficulty_eval_config(
          label_key=config.label_key,
          min_accuracy=config.min_accuracy,
          min_hard_accuracy=config.min_hard_accuracy,
          max_accuracy_drop=config.max_accuracy_drop))

  # When the Evaluator does not bless, the gate asks nobody and does not bless either.
  gate = HumanReviewGate(
      model=trainer.outputs['model'],
      difficulty_report=vog.outputs['difficulty_report'],
      blessing=evaluator.outputs['blessing'],
      evaluation=evaluator.outputs['evaluation'],
      last_shipped=shipped_resolver.outputs['shipped_audit'],
      backend=config.review_backend,
      approvers=list(config.review_approvers),
      quorum=config.review_quorum,
      timeout_seconds=config.review_timeout_seconds,
      poll_interval_seconds=config.review_poll_seconds,
      slack_channel=config.slack_channel,
      slack_token_env=config.slack_token_env,
      slack_api_url=config.slack_api_url,
      report_url_template=config.report_url_template,
      auto_policy=config.auto_policy_rules() if config.review_backend == 'auto' else None,
      reviews_dir=config.reviews_dir).with_id(REVIEW_GATE)

  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=gate.outputs[review_gate_keys.REVIEW_BLESSING_KEY],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir)))

  components = [example_gen, statistics_gen, schema_gen, example_validator] + (
      [transform] if transform is not None else []) + [
          trainer, shipped_resolver, vog, baseline_resolver, evaluator, gate, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=config.beam_args())


def create_local_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
  """`create_pipeline` with the ML Metadata store of `config` (SQLite by default).

  The connection config in the pipeline holds no MySQL password. The password goes from
  the variable that `config.metadata.password_env` names to MYSQL_PWD of this process
  (see MetadataConfig.export_password), where ML Metadata's MySQL client reads it when
  LocalDagRunner, or an Airflow task that imported the DAG file, connects.
  """
  metadata = config.metadata_config()
  connection = metadata.connection_config()
  metadata.export_password()
  return create_pipeline(config, connection)


def run_local(config: PipelineConfig) -> None:
  """Runs the pipeline once with LocalDagRunner and the store of `config`."""
  tfx.orchestration.LocalDagRunner().run(create_local_pipeline(config))
