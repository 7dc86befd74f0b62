"""HumanReviewGate executor: check upstream, ask the chosen backend, write the ModelBlessing."""

import hashlib
import json
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.review_gate import auto_policy
from components.review_gate import decision as decision_lib
from components.review_gate import local_backend
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import slack_backend

UPSTREAM_BLESSING_KEY = 'model_blessing'
OUTPUT_KEY = 'blessing'
# Custom properties written onto the output ModelBlessing (all strings).
REVIEW_PROPERTIES = ('review_decision', 'reviewer', 'review_comment', 'reviewed_at',
                     'review_backend', 'review_reason', 'review_id', 'slack_channel',
                     'slack_thread_ts')


class Executor(base_executor.BaseExecutor):
  """Runs one review and records its outcome on the `blessing` output."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Blesses `model` only when the review approves it.

    Args:
      input_dict: `model`, `difficulty_report`, optional `model_blessing` and `evaluation`.
      output_dict: `blessing`, one ModelBlessing.
      exec_properties: the HumanReviewGateSpec parameters.

    Raises:
      ValueError: a DifficultyReport without a readable summary, or a reviews folder that
        cannot be found. Review outcomes (rejection, timeout, Slack errors) never raise: they
        are written as NOT_BLESSED with the reason.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(input_dict['model'])
    report = artifact_utils.get_single_instance(input_dict['difficulty_report'])
    blessing = artifact_utils.get_single_instance(output_dict[OUTPUT_KEY])
    upstream = (input_dict.get(UPSTREAM_BLESSING_KEY) or [None])[0]
    evaluation = (input_dict.get('evaluation') or [None])[0]
    backend = exec_properties['backend']
    # Like the Evaluator, so that the Pusher and LatestBlessedModelStrategy find the model.
    blessing.set_string_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)

    refusal = _upstream_refusal(upstream)
    if refusal:
      logging.info('Not asking for a review: %s', refusal)
      _write_blessing(blessing, decision_lib.Decision(
          decision=decision_lib.NOT_BLESSED_UPSTREAM, backend=backend, reason=refusal), '')
      return

    pipeline = self._context.pipeline_info.id if self._context and self._context.pipeline_info \
        else ''
    run_id = (self._context.pipeline_run_id if self._context else None) or ''
    summary = review_summary.build_summary(
        report_uri=report.uri, model_uri=model.uri, model_id=model.id, report_id=report.id,
        pipeline=pipeline, run_id=run_id, evaluation_uri=evaluation.uri if evaluation else None,
        report_url_template=exec_properties.get('report_url_template'))
    logging.info('Review of model %d: %d seen, %d scored, %d quarantined, %d flagged; accuracy '
                 'overall %s, hard slice %s', model.id, summary.counts['seen'],
                 summary.counts['scored'], summary.counts['quarantined'],
                 summary.counts['flagged'], review_summary.format_accuracy(summary.overall_accuracy),
                 review_summary.format_accuracy(summary.hard_accuracy))

    if backend == auto_policy.BACKEND:
      outcome = auto_policy.decide(json.loads(exec_properties['auto_policy']), summary)
      logging.info('Auto policy: %s', outcome.reason)
      _write_blessing(blessing, outcome, '')
      return

    store = review_store.ReviewStore(self._reviews_dir(exec_properties, blessing.uri))
    approvers = json.loads(exec_properties['approvers'])
    node_id = self._node_id()
    record, resumed = store.open_review(
        _fingerprint(pipeline, node_id, backend, model, report, upstream, evaluation),
        {'backend': backend, 'pipeline': pipeline, 'run_id': run_id, 'node_id': node_id,
         'model_uri': model.uri, 'model_id': model.id, 'report_uri': report.uri,
         'report_id': report.id, 'approvers': approvers, 'headline': summary.headline(),
         'slack_channel': exec_properties.get('slack_channel') or ''})
    review_id = record['review_id']
    logging.info('%s %s review %s in %s', 'Resuming' if resumed else 'Opened', backend, review_id,
                 store.reviews_dir)
    timeout = float(exec_properties['timeout_seconds'])
    poll = float(exec_properties['poll_interval_seconds'])
    if record['status'] != review_store.PENDING and record.get('decision'):
      outcome = decision_lib.Decision.from_json(record['decision'])
      logging.info('Review %s was already answered: %s', review_id, outcome.decision)
    elif backend == local_backend.BACKEND:
      outcome = local_backend.wait_for_answer(store, review_id, timeout_seconds=timeout,
                                              poll_interval_seconds=poll)
    else:
      outcome = slack_backend.SlackReview(
          channel=record.get('slack_channel_id') or exec_properties['slack_channel'],
          approvers=approvers, token_env=exec_properties['slack_token_env'],
          api_url=exec_properties.get('slack_api_url'), poll_interval_seconds=poll,
      ).run(store, record, summary, timeout)
    review_store.close(store, review_id, outcome, outcome.slack_thread_ts or None)
    _write_blessing(blessing, outcome, review_id)

  def _node_id(self) -> str:
    node = self._context.pipeline_node if self._context else None
    return node.node_info.id if node is not None else 'HumanReviewGate'

  def _reviews_dir(self, exec_properties: Dict[str, Any], output_uri: str) -> str:
    """`reviews_dir` when given, else `<pipeline_root>/reviews` read off the output URI."""
    if exec_properties.get('reviews_dir'):
      return exec_properties['reviews_dir']
    # TFX lays outputs out as <pipeline_root>/<node_id>/<output_key>/<execution_id>.
    node_dir, key = os.path.split(os.path.dirname(os.path.normpath(output_uri)))
    root, node = os.path.split(node_dir)
    if key != OUTPUT_KEY or node != self._node_id():
      raise ValueError(
          f'cannot tell the pipeline root from the output URI {output_uri}; set reviews_dir '
          'on HumanReviewGate to the folder where pending reviews should be written')
    return review_store.default_reviews_dir(root)


def _upstream_refusal(upstream: Optional[types.Artifact]) -> str:
  """Why the Evaluator's blessing stops the review, or '' when it lets it go on."""
  if upstream is None:
    return ''
  key = evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
  if not upstream.has_custom_property(key):
    return (f'the upstream blessing (artifact {upstream.id}) carries no "{key}" property; '
            'give the Evaluator thresholds so that it validates the model')
  if upstream.get_int_custom_property(key) != evaluator_constants.BLESSED_VALUE:
    return (f'the Evaluator did not bless the model (blessing artifact {upstream.id}); '
            'nobody was asked')
  return ''


def _fingerprint(pipeline: str, node_id: str, backend: str,
                 *artifacts: Optional[types.Artifact]) -> str:
  """Identifies the question: the same inputs to the same gate resume the same review."""
  parts = [pipeline, node_id, backend] + [f'{a.type_name}:{a.id}:{a.uri}' if a is not None else '-'
                                 for a in artifacts]
  return hashlib.sha256('\n'.join(parts).encode('utf-8')).hexdigest()


def _write_blessing(blessing: types.Artifact, outcome: decision_lib.Decision,
                    review_id: str) -> None:
  """BLESSED/NOT_BLESSED file and `blessed` as the Evaluator writes them, plus the review."""
  if outcome.blessed:
    io_utils.write_string_file(
        os.path.join(blessing.uri, evaluator_constants.BLESSED_FILE_NAME), '')
    blessed = evaluator_constants.BLESSED_VALUE
  else:
    io_utils.write_string_file(
        os.path.join(blessing.uri, evaluator_constants.NOT_BLESSED_FILE_NAME), '')
    blessed = evaluator_constants.NOT_BLESSED_VALUE
  blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY, blessed)
  values = {
      'review_decision': outcome.decision, 'reviewer': outcome.reviewer,
      'review_comment': outcome.comment, 'reviewed_at': outcome.reviewed_at,
      'review_backend': outcome.backend, 'review_reason': outcome.reason,
      'review_id': review_id, 'slack_channel': outcome.slack_channel,
      'slack_thread_ts': outcome.slack_thread_ts,
  }
  for name in REVIEW_PROPERTIES:
    blessing.set_string_custom_property(name, values[name] or '')
  logging.info('Review decision %s (%s): %s written to %s', outcome.decision,
               'BLESSED' if blessed else 'NOT_BLESSED', outcome.reason, blessing.uri)
