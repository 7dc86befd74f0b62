"""HumanReviewGate executor: check upstream, ask the chosen backend, write the ModelBlessing."""

import hashlib
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.review_gate import backend_api
from components.review_gate import backends
from components.review_gate import decision as decision_lib
from components.review_gate import review_store
from components.review_gate import review_summary
from components.review_gate import spec_keys
from components.vog.report import baseline as baseline_lib


class Executor(base_executor.BaseExecutor):
  """Runs one review; records its outcome on `review_blessing` and `shipped_audit`."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Blesses `model` only when the review approves it.

    Args:
      input_dict: `model`, `difficulty_report`, optional `model_blessing`, `evaluation`
        and `last_shipped` (the newest ShippedAudit).
      output_dict: `review_blessing`, one ModelBlessing; `shipped_audit`, one ShippedAudit
        naming this run's report when the model is blessed, else passing `last_shipped` on.
      exec_properties: the HumanReviewGateSpec parameters.

    The backend named by `exec_properties['backend']` (backends.py) asks and decides by
    decision_rule.py; nothing it reads back from the reviews folder is trusted for the
    decision (see each backend's module).

    Raises:
      ValueError: a DifficultyReport without a readable summary, a reviews folder that
        cannot be found, or a `last_shipped` folder without a valid pointer file (read
        before anything is written). Review outcomes (rejection, timeout, Slack errors)
        never raise: they are written as NOT_BLESSED with the reason.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    last = (input_dict.get(spec_keys.LAST_SHIPPED_KEY) or [None])[0]
    last_pointer = None if last is None else baseline_lib.read_pointer(last.uri)
    outcome, review_id, cache_key = self._review(input_dict, output_dict, exec_properties)
    blessing = artifact_utils.get_single_instance(output_dict[spec_keys.REVIEW_BLESSING_KEY])
    _write_blessing(blessing, outcome, review_id, cache_key)
    if output_dict.get(spec_keys.SHIPPED_AUDIT_KEY):
      _write_shipped(
          artifact_utils.get_single_instance(output_dict[spec_keys.SHIPPED_AUDIT_KEY]),
          outcome, input_dict, last_pointer)

  def _review(self, input_dict, output_dict, exec_properties
              ) -> Tuple[decision_lib.Decision, str, str]:
    """(outcome, review id or '', cache key) of this execution's review."""
    model = artifact_utils.get_single_instance(input_dict[spec_keys.MODEL_KEY])
    report = artifact_utils.get_single_instance(input_dict[spec_keys.DIFFICULTY_REPORT_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[spec_keys.REVIEW_BLESSING_KEY])
    upstream = (input_dict.get(spec_keys.UPSTREAM_BLESSING_KEY) or [None])[0]
    evaluation = (input_dict.get(spec_keys.EVALUATION_KEY) or [None])[0]
    settings = backend_api.GateSettings.from_exec_properties(exec_properties)
    backend = backends.get(settings.backend)
    # Like the Evaluator, so that the Pusher and LatestBlessedModelStrategy find the model.
    blessing.set_string_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)

    pipeline = self._context.pipeline_info.id if self._context and self._context.pipeline_info \
        else ''
    run_id = (self._context.pipeline_run_id if self._context else None) or ''
    node_id = self._node_id()
    fingerprint = review_fingerprint(pipeline, node_id, settings.backend, model, report,
                                     upstream, evaluation)
    cache_key = exec_properties.get(spec_keys.CACHE_KEY_PROPERTY) or ''

    refusal = _upstream_refusal(upstream)
    if refusal:
      logging.info('Not asking for a review: %s', refusal)
      return decision_lib.Decision(decision=decision_lib.NOT_BLESSED_UPSTREAM,
                                   backend=settings.backend, reason=refusal), '', cache_key
    summary = review_summary.build_summary(
        report_uri=report.uri, model_uri=model.uri, model_id=model.id, report_id=report.id,
        pipeline=pipeline, run_id=run_id, evaluation_uri=evaluation.uri if evaluation else None,
        report_url_template=settings.report_url_template)
    logging.info('Review of model %d: %d seen, %d scored, %d quarantined, %d flagged; accuracy '
                 'overall %s, hard slice %s', model.id, summary.counts['seen'],
                 summary.counts['scored'], summary.counts['quarantined'],
                 summary.counts['flagged'], review_summary.format_accuracy(summary.overall_accuracy),
                 review_summary.format_accuracy(summary.hard_accuracy))
    logging.info('%s', review_summary.drift_headline(summary.drift))
    request = backend_api.ReviewRequest(
        settings=settings, summary=summary, fingerprint=fingerprint, pipeline=pipeline,
        run_id=run_id, node_id=node_id, model_uri=model.uri, model_id=model.id,
        report_uri=report.uri, report_id=report.id,
        reviews_dir=self._reviews_dir(exec_properties, blessing.uri) if backend.RECORDS
        else None)
    logging.info('Asking the %s backend: %s', backend.NAME, backend.DECIDES)
    result = backend(settings).review(request)
    return result.decision, result.review_id, cache_key

  def _node_id(self) -> str:
    node = self._context.pipeline_node if self._context else None
    return node.node_info.id if node is not None else 'HumanReviewGate'

  def _reviews_dir(self, exec_properties: Dict[str, Any], output_uri: str) -> str:
    """`reviews_dir` when given, else `<pipeline_root>/reviews` read off the output URI."""
    if exec_properties.get(spec_keys.REVIEWS_DIR_KEY):
      return exec_properties[spec_keys.REVIEWS_DIR_KEY]
    # TFX lays outputs out as <pipeline_root>/<node_id>/<output_key>/<execution_id>.
    node_dir, key = os.path.split(os.path.dirname(os.path.normpath(output_uri)))
    root, node = os.path.split(node_dir)
    if key != spec_keys.REVIEW_BLESSING_KEY or node != self._node_id():
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


def review_fingerprint(pipeline: str, node_id: str, backend: str,
                       *artifacts: Optional[types.Artifact]) -> str:
  """Identifies the question: the same inputs to the same gate resume the same review."""
  parts = [pipeline, node_id, backend] + [f'{a.type_name}:{a.id}:{a.uri}' if a is not None else '-'
                                 for a in artifacts]
  return hashlib.sha256('\n'.join(parts).encode('utf-8')).hexdigest()


_NOUNS = {decision_lib.APPROVED: 'approval', decision_lib.REJECTED: 'rejection',
          decision_lib.NOT_BLESSED_UPSTREAM: "Evaluator's refusal"}


def _cache_note(outcome: decision_lib.Decision, cache_key: str) -> str:
  """What TFX's cache may do with this outcome, for the `review_cache` property."""
  if outcome.decision in decision_lib.REUSABLE:
    return (f'reusable: with caching on, TFX may reuse this {_NOUNS[outcome.decision]} for the '
            'same model and report')
  if cache_key:
    return 'not reusable: with caching on, the next run asks again'
  return ('not reusable: the next run must ask again, but no HumanReviewGate driver ran here '
          'to keep it out of the cache; turn caching off for this pipeline')


def _write_blessing(blessing: types.Artifact, outcome: decision_lib.Decision,
                    review_id: str, cache_key: str = '') -> None:
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
      decision_lib.DECISION_PROPERTY: outcome.decision, 'reviewer': outcome.reviewer,
      'review_comment': outcome.comment, 'reviewed_at': outcome.reviewed_at,
      'review_backend': outcome.backend, 'review_reason': outcome.reason,
      'review_id': review_id, 'slack_channel': outcome.slack_channel,
      'slack_thread_ts': outcome.slack_thread_ts,
      'review_cache': _cache_note(outcome, cache_key), spec_keys.CACHE_KEY_PROPERTY: cache_key,
  }
  for name in decision_lib.REVIEW_PROPERTIES:
    blessing.set_string_custom_property(name, values[name] or '')
  logging.info('Review decision %s (%s): %s written to %s; %s', outcome.decision,
               'BLESSED' if blessed else 'NOT_BLESSED', outcome.reason, blessing.uri,
               values['review_cache'])


def _write_shipped(shipped: types.Artifact, outcome: decision_lib.Decision,
                   input_dict: Dict[str, List[types.Artifact]],
                   last_pointer: Optional[baseline_lib.ShippedPointer]) -> None:
  """This run's report when the model shipped, else the last shipped one passed on."""
  report = artifact_utils.get_single_instance(input_dict[spec_keys.DIFFICULTY_REPORT_KEY])
  model = artifact_utils.get_single_instance(input_dict[spec_keys.MODEL_KEY])
  if outcome.blessed:
    pointer = baseline_lib.shipped_now(report.uri, report.id or None, model.id or None)
  else:
    pointer = baseline_lib.passed_on(last_pointer)
  baseline_lib.write_pointer(shipped.uri, pointer)
  shipped.set_string_custom_property('difficulty_report_uri', pointer.report_uri or '')
  shipped.set_int_custom_property('difficulty_report_id', pointer.report_id or 0)
  shipped.set_int_custom_property('model_id', pointer.model_id or 0)
  shipped.set_int_custom_property('carried', int(pointer.carried))
  logging.info('Shipped audit: %s', pointer.report_uri or 'no model has shipped yet')
