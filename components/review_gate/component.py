"""HumanReviewGate: asks a person (or a written policy) before the Pusher ships a model.

Wiring:

    gate = HumanReviewGate(
        model=trainer.outputs['model'],
        difficulty_report=vog.outputs['difficulty_report'],
        blessing=evaluator.outputs['blessing'],          # optional: not blessed -> nobody asked
        evaluation=evaluator.outputs['evaluation'],      # optional: accuracy in the message
        last_shipped=shipped_resolver.outputs['shipped_audit'],  # optional: drift baseline
        backend='slack', slack_channel='C0123ABCD', approvers=['U01ALICE', 'U02BOB'],
        quorum=1, timeout_seconds=4 * 3600,
        report_url_template='https://reports.example.com/{report_id}/report.html')
    pusher = Pusher(model=trainer.outputs['model'],
                    model_blessing=gate.outputs['review_blessing'], ...)

The output `review_blessing` is a standard ModelBlessing (`blessed` = 1/0, a BLESSED or
NOT_BLESSED file, `current_model`/`current_model_id`) with the review on it as custom properties:
review_decision, reviewer, review_comment, reviewed_at, review_backend, review_reason,
review_id, slack_channel, slack_thread_ts, review_cache, review_cache_key. Only an approval
blesses - `quorum` approvers approved and none rejected (decision_rule.py); a timeout, a
rejection, an error or an upstream NOT_BLESSED all give NOT_BLESSED. `reviewer` lists the
deciding approvers, comma-separated.

With caching on, TFX may hand out an earlier approval (or rejection) of the same model and
report again, and its `review_cache` property says so; a timeout or an error is never reused:
ReviewGateDriver gives such an execution a cache key no later run asks for.

The Evaluator's blessing comes in through the argument `blessing` and is stored under the
input key `model_blessing`. The output is not called `blessing` like the Evaluator's: TFX's
Airflow runner names artifacts `<output key>:<run id>`, unique per type, so the two
ModelBlessings of one run would collide.

The second output, `shipped_audit` (a ShippedAudit), names the DifficultyReport of the last
model that shipped: this run's when the review blesses, else `last_shipped` passed on. A
LatestArtifactStrategy resolver over it gives VarianceOfGradients its drift `baseline`.
"""

import hashlib
import secrets
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import base_driver
from tfx.dsl.components.base import executor_spec
from tfx.proto.orchestration import driver_output_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.review_gate import auto_policy as auto_policy_lib
from components.review_gate import backend_api
from components.review_gate import backends
from components.review_gate import decision as decision_lib
from components.review_gate import executor
from components.review_gate import review_summary
from components.review_gate import slack_backend
from components.review_gate import spec_keys
from components.vog.artifacts import DifficultyReport
from components.vog.artifacts import ShippedAudit

BACKENDS = backends.NAMES  # declared once, in backends.py


class HumanReviewGateSpec(types.ComponentSpec):
  """Inputs, output and parameters of HumanReviewGate."""

  PARAMETERS = {
      spec_keys.BACKEND_KEY: ExecutionParameter(type=str),
      spec_keys.APPROVERS_KEY: ExecutionParameter(type=str),  # JSON list
      # Absent in pipelines compiled before it existed: 1.
      spec_keys.QUORUM_KEY: ExecutionParameter(type=int, optional=True),
      spec_keys.TIMEOUT_SECONDS_KEY: ExecutionParameter(type=float),
      spec_keys.POLL_INTERVAL_SECONDS_KEY: ExecutionParameter(type=float),
      spec_keys.SLACK_CHANNEL_KEY: ExecutionParameter(type=str, optional=True),
      spec_keys.SLACK_TOKEN_ENV_KEY: ExecutionParameter(type=str),
      spec_keys.SLACK_API_URL_KEY: ExecutionParameter(type=str, optional=True),
      spec_keys.REPORT_URL_TEMPLATE_KEY: ExecutionParameter(type=str, optional=True),
      spec_keys.AUTO_POLICY_KEY: ExecutionParameter(type=str, optional=True),  # JSON object
      spec_keys.REVIEWS_DIR_KEY: ExecutionParameter(type=str, optional=True),
      # Set at run time by ReviewGateDriver, never by hand: part of TFX's cache key.
      spec_keys.CACHE_KEY_PROPERTY: ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      spec_keys.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      spec_keys.DIFFICULTY_REPORT_KEY: ChannelParameter(type=DifficultyReport),
      spec_keys.UPSTREAM_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                                        optional=True),
      spec_keys.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation,
                                                 optional=True),
      spec_keys.LAST_SHIPPED_KEY: ChannelParameter(type=ShippedAudit, optional=True),
  }
  OUTPUTS = {
      spec_keys.REVIEW_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
      spec_keys.SHIPPED_AUDIT_KEY: ChannelParameter(type=ShippedAudit),
  }


class ReviewGateDriver(base_driver.BaseDriver):
  """Keeps a timeout or an error out of TFX's cache, and lets a decision be reused.

  TFX reuses an execution's outputs when the inputs and the parameters are the same. For the
  gate that would hand out an old timeout (or Slack outage) forever. So before the cache is
  looked up, this driver sets the parameter `review_cache_key`: the key of the newest earlier
  outcome of this gate for the same input artifacts if that outcome was a decision
  (decision.REUSABLE: approved, rejected, not blessed upstream), otherwise a new random key
  that no earlier execution had. The executor writes the key onto the blessing, so the next
  driver finds it. Keys look like `<inputs hash>/<random>`.

  It runs under the portable launcher (LocalDagRunner, BeamDagRunner) through `run` and under
  the Airflow runner's launcher through `resolve_input_artifacts`. Kubeflow Pipelines v2 and
  Vertex AI run no custom driver and cache by their own rules.
  """

  def run(self, execution_info) -> driver_output_pb2.DriverOutput:
    """Portable launcher: returns the cache key as an execution property."""
    with self._metadata_handle as m:
      key = cache_key(m.store, execution_info.input_dict, execution_info.pipeline_info.id,
                      execution_info.pipeline_node.node_info.id)
    output = driver_output_pb2.DriverOutput()
    output.exec_properties[spec_keys.CACHE_KEY_PROPERTY].string_value = key
    return output

  def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
    """Airflow's launcher: notes the node ID for `resolve_input_artifacts`."""
    self._component_id = component_info.component_id
    return super().resolve_exec_properties(exec_properties, pipeline_info, component_info)

  def resolve_input_artifacts(self, input_dict, exec_properties, driver_args, pipeline_info):
    """Airflow's launcher: resolves the inputs, then sets the key before the cache lookup."""
    artifacts = super().resolve_input_artifacts(input_dict, exec_properties, driver_args,
                                                pipeline_info)
    exec_properties[spec_keys.CACHE_KEY_PROPERTY] = cache_key(
        self._metadata_handle.store, artifacts, pipeline_info.pipeline_name,
        getattr(self, '_component_id', ''))
    return artifacts


def cache_key(store, input_artifacts: Mapping[str, Sequence[types.Artifact]], pipeline: str,
              node_id: str) -> str:
  """The `review_cache_key` for a gate execution with these inputs (see ReviewGateDriver).

  Args:
    store: the ML Metadata store the pipeline writes to.
    input_artifacts: the resolved inputs, key -> artifacts.
    pipeline: the pipeline's name.
    node_id: the gate's node ID.

  Returns:
    The key of the newest earlier reusable outcome of this gate for these inputs, or a new one.
  """
  parts = [pipeline, node_id] + [f'{key}:{",".join(str(a.id) for a in input_artifacts[key])}'
                                 for key in sorted(input_artifacts)]
  prefix = hashlib.sha256('\n'.join(parts).encode('utf-8')).hexdigest()[:16] + '/'
  newest = None
  for blessing in store.get_artifacts_by_type(standard_artifacts.ModelBlessing.TYPE_NAME):
    props = blessing.custom_properties
    key = props[spec_keys.CACHE_KEY_PROPERTY].string_value if (
        spec_keys.CACHE_KEY_PROPERTY in props) else ''
    decided = props[decision_lib.DECISION_PROPERTY].string_value if (
        decision_lib.DECISION_PROPERTY in props) else ''
    if (key.startswith(prefix) and decided in decision_lib.REUSABLE
        and blessing.state == metadata_store_pb2.Artifact.LIVE
        and (newest is None or blessing.id > newest[0])):
      newest = (blessing.id, key, decided)
  if newest:
    logging.info('HumanReviewGate: the same inputs were %s before (blessing #%d); TFX may reuse '
                 'that outcome', newest[2], newest[0])
    return newest[1]
  logging.info('HumanReviewGate: no earlier decision on these inputs; asking afresh, out of '
               "TFX's cache")
  return prefix + secrets.token_hex(8)


class HumanReviewGate(base_component.BaseComponent):
  """Blesses a model only when `quorum` listed approvers approve and none rejects (or when
  the written policy says so)."""

  SPEC_CLASS = HumanReviewGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
  DRIVER_CLASS = ReviewGateDriver

  def __init__(self,
               model: types.BaseChannel,
               difficulty_report: types.BaseChannel,
               blessing: Optional[types.BaseChannel] = None,
               evaluation: Optional[types.BaseChannel] = None,
               last_shipped: Optional[types.BaseChannel] = None,
               backend: str = 'slack',
               approvers: Optional[List[str]] = None,
               quorum: int = 1,
               timeout_seconds: float = 24 * 3600.0,
               poll_interval_seconds: float = 15.0,
               slack_channel: Optional[str] = None,
               slack_token_env: str = 'SLACK_BOT_TOKEN',
               slack_api_url: Optional[str] = None,
               report_url_template: Optional[str] = None,
               auto_policy: Optional[Dict[str, Any]] = None,
               reviews_dir: Optional[str] = None):
    """Declares the gate.

    Args:
      model: the Model to review (the Trainer's `model`).
      difficulty_report: VarianceOfGradients' `difficulty_report`.
      blessing: optional Evaluator `blessing`; when it is NOT_BLESSED nobody is asked.
      evaluation: optional Evaluator `evaluation`; overall and `vog_bucket=hard` accuracy.
      last_shipped: optional newest ShippedAudit (a LatestArtifactStrategy resolver over
        this gate's `shipped_audit`); passed on when this review does not bless.
      backend: one of backends.NAMES: `slack` (a message answered in its thread or by
        reaction), `local` (a review on disk answered with `vog-audit review`), or `auto`
        (`auto_policy` decides).
      approvers: who may decide: Slack user IDs (U0123ABCD, or W... on Enterprise Grid) for
        `slack`, names given to `--by` for `local`. Required for both; others are ignored and
        logged. The gate checks every answer against this list when it reads it.
      quorum: how many distinct approvers must approve, from 1 to the number of approvers.
        The model ships only when `quorum` approvers approved and no approver rejected
        before the decision; any approver's rejection stops it (decision_rule.py). Must be
        1 for `auto`.
      timeout_seconds: how long the review may take: for `slack` counted from the review
        message's own Slack time, for `local` from when the review record is opened. A
        retried execution keeps that deadline, and an approval after it does not count.
        After it the model is NOT_BLESSED.
      poll_interval_seconds: how often the thread or the review file is read.
      slack_channel: channel ID (or name the bot can post to) for `slack`.
      slack_token_env: environment variable that holds the bot token at run time; the
        token itself is never a parameter, so it never reaches ML Metadata.
      slack_api_url: Slack Web API base URL, for Slack-compatible endpoints; default Slack's.
        Must be https:// (the token goes with every call); http:// only to a loopback address.
      report_url_template: link to the review page, with placeholders from
        `review_summary.REPORT_URL_FIELDS` (e.g. `{report_id}`); default the file path.
      auto_policy: thresholds for `auto`, rules from `auto_policy.RULES`, e.g.
        `{"max_flagged_share": 0.15, "min_hard_accuracy": 0.6}`.
      reviews_dir: where pending reviews are written; default `<pipeline_root>/reviews`.
        It must be a folder on a local disk or a POSIX network file system (NFSv4) that the
        gate and every reviewer reach: reviews need file locks and atomic renames, which
        object stores and their FUSE mounts lack. Whoever can write it can write a review
        record, so the gate verifies every decision it reads back (see the threat model in
        the README).

    Raises:
      ValueError: an unknown backend, a Slack gate without channel or approvers, Slack
        approvers that are not user IDs, a `slack_api_url` that is not https:// (loopback
        excepted), a local gate without approvers, a quorum outside 1..approvers, an auto
        gate without a valid policy, a non-positive time, or a report URL template with
        unknown placeholders.
    """
    approvers = [str(a).strip() for a in (approvers or []) if str(a).strip()]
    settings = backends.check_settings(backend_api.GateSettings(
        backend=backend, approvers=tuple(approvers), quorum=quorum,
        timeout_seconds=timeout_seconds, poll_interval_seconds=poll_interval_seconds,
        slack_channel=slack_channel or '', slack_token_env=slack_token_env,
        slack_api_url=slack_api_url, report_url_template=report_url_template,
        auto_policy=auto_policy, reviews_dir=reviews_dir))
    if slack_api_url is not None:
      slack_backend.check_api_url(slack_api_url)
    if auto_policy and backend != auto_policy_lib.BACKEND:
      auto_policy_lib.check_policy(auto_policy)
    if not timeout_seconds or timeout_seconds <= 0:
      raise ValueError(f'timeout_seconds must be positive, got {timeout_seconds!r}')
    if not poll_interval_seconds or poll_interval_seconds <= 0:
      raise ValueError(f'poll_interval_seconds must be positive, got {poll_interval_seconds!r}')
    if not slack_token_env or not slack_token_env.replace('_', '').isalnum():
      raise ValueError(f'slack_token_env must name an environment variable (e.g. '
                       f'SLACK_BOT_TOKEN), got {slack_token_env!r}; never pass the token itself')
    review_summary.check_report_url_template(report_url_template)
    spec = HumanReviewGateSpec(
        **{spec_keys.MODEL_KEY: model,
           spec_keys.DIFFICULTY_REPORT_KEY: difficulty_report,
           spec_keys.UPSTREAM_BLESSING_KEY: blessing,
           spec_keys.EVALUATION_KEY: evaluation,
           spec_keys.LAST_SHIPPED_KEY: last_shipped,
           spec_keys.REVIEW_BLESSING_KEY: types.Channel(type=standard_artifacts.ModelBlessing),
           spec_keys.SHIPPED_AUDIT_KEY: types.Channel(type=ShippedAudit)},
        **settings.to_exec_properties())
    super().__init__(spec=spec)
