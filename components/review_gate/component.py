"""HumanReviewGate: asks a person (or a written policy) before the Pusher ships a model.

Wiring:

    gate = HumanReviewGate(
        model=trainer.outputs['model'],
        difficulty_report=vog.outputs['difficulty_report'],
        blessing=evaluator.outputs['blessing'],          # optional: not blessed -> nobody asked
        evaluation=evaluator.outputs['evaluation'],      # optional: accuracy in the message
        backend='slack', slack_channel='C0123ABCD', approvers=['U01ALICE', 'U02BOB'],
        timeout_seconds=4 * 3600,
        report_url_template='https://reports.example.com/{report_id}/report.html')
    pusher = Pusher(model=trainer.outputs['model'], model_blessing=gate.outputs['blessing'], ...)

The output `blessing` is a standard ModelBlessing (`blessed` = 1/0, a BLESSED or NOT_BLESSED
file, `current_model`/`current_model_id`) with the review on it as custom properties:
review_decision, reviewer, review_comment, reviewed_at, review_backend, review_reason,
review_id, slack_channel, slack_thread_ts. Only an approval blesses; a timeout, a rejection,
an error or an upstream NOT_BLESSED all give NOT_BLESSED.

The Evaluator's blessing comes in through the argument `blessing` and is stored under the
input key `model_blessing`: TFX needs input and output names to differ, and the output keeps
the name `blessing` that the Evaluator's output has.
"""

import json
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.review_gate import auto_policy as auto_policy_lib
from components.review_gate import executor
from components.review_gate import review_summary
from components.vog.artifacts import DifficultyReport

BACKENDS = ('slack', 'local', 'auto')
UPSTREAM_BLESSING_KEY = 'model_blessing'


class HumanReviewGateSpec(types.ComponentSpec):
  """Inputs, output and parameters of HumanReviewGate."""

  PARAMETERS = {
      'backend': ExecutionParameter(type=str),
      'approvers': ExecutionParameter(type=str),  # JSON list
      'timeout_seconds': ExecutionParameter(type=float),
      'poll_interval_seconds': ExecutionParameter(type=float),
      'slack_channel': ExecutionParameter(type=str, optional=True),
      'slack_token_env': ExecutionParameter(type=str),
      'slack_api_url': ExecutionParameter(type=str, optional=True),
      'report_url_template': ExecutionParameter(type=str, optional=True),
      'auto_policy': ExecutionParameter(type=str, optional=True),  # JSON object
      'reviews_dir': ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {
      'model': ChannelParameter(type=standard_artifacts.Model),
      'difficulty_report': ChannelParameter(type=DifficultyReport),
      UPSTREAM_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                              optional=True),
      'evaluation': ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
  }
  OUTPUTS = {
      'blessing': ChannelParameter(type=standard_artifacts.ModelBlessing),
  }


class HumanReviewGate(base_component.BaseComponent):
  """Blesses a model only when a listed approver (or the written policy) says so."""

  SPEC_CLASS = HumanReviewGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self,
               model: types.BaseChannel,
               difficulty_report: types.BaseChannel,
               blessing: Optional[types.BaseChannel] = None,
               evaluation: Optional[types.BaseChannel] = None,
               backend: str = 'slack',
               approvers: Optional[List[str]] = None,
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
      backend: `slack` (a message answered in its thread or by reaction), `local` (a review
        on disk answered with `vog-audit review`), or `auto` (`auto_policy` decides).
      approvers: who may decide: Slack user IDs (U0123...) for `slack`, names given to
        `--by` for `local`. Required for both; others are ignored and logged.
      timeout_seconds: how long the review may take in all (posting, retries, waiting);
        after that the model is NOT_BLESSED.
      poll_interval_seconds: how often the thread or the review file is read.
      slack_channel: channel ID (or name the bot can post to) for `slack`.
      slack_token_env: environment variable that holds the bot token at run time; the
        token itself is never a parameter, so it never reaches ML Metadata.
      slack_api_url: Slack Web API base URL, for Slack-compatible endpoints; default Slack's.
      report_url_template: link to the review page, with placeholders from
        `review_summary.REPORT_URL_FIELDS` (e.g. `{report_id}`); default the file path.
      auto_policy: thresholds for `auto`, rules from `auto_policy.RULES`, e.g.
        `{"max_flagged_share": 0.15, "min_hard_accuracy": 0.6}`.
      reviews_dir: where pending reviews are written; default `<pipeline_root>/reviews`.
        It must be a local or mounted path (on Vertex, e.g. `/gcs/<bucket>/reviews`):
        reviews need file locks and atomic renames, which object stores lack.

    Raises:
      ValueError: an unknown backend, a Slack gate without channel or approvers, a local
        gate without approvers, an auto gate without a valid policy, a non-positive time, or
        a report URL template with unknown placeholders.
    """
    if backend not in BACKENDS:
      raise ValueError(f'backend {backend!r} is not one of {", ".join(BACKENDS)}')
    approvers = [str(a).strip() for a in (approvers or []) if str(a).strip()]
    if backend in ('slack', 'local') and not approvers:
      raise ValueError(f'backend={backend!r} needs approvers: list who may approve ('
                       + ('Slack user IDs like U0123ABCD' if backend == 'slack'
                          else 'the names they pass to --by') + ')')
    if backend == 'slack' and not slack_channel:
      raise ValueError('backend="slack" needs slack_channel (a channel ID like C0123ABCD)')
    if backend == 'auto':
      auto_policy = auto_policy_lib.check_policy(auto_policy)
    elif auto_policy:
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
        model=model,
        difficulty_report=difficulty_report,
        model_blessing=blessing,
        evaluation=evaluation,
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        backend=backend,
        approvers=json.dumps(approvers),
        timeout_seconds=float(timeout_seconds),
        poll_interval_seconds=float(poll_interval_seconds),
        slack_channel=slack_channel,
        slack_token_env=slack_token_env,
        slack_api_url=slack_api_url,
        report_url_template=report_url_template,
        auto_policy=json.dumps(auto_policy) if auto_policy else None,
        reviews_dir=reviews_dir)
    super().__init__(spec=spec)
