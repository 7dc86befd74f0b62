"""Inputs for the review gate's tests: a DifficultyReport folder, TFMA metrics, executor runs."""

import json
import os
import time
from typing import Dict, List, Optional, Tuple

from PIL import Image

from components.vog.report import drift_model
from components.vog.report import report_rows

from components.vog import vocabulary as vocab

SUMMARY = {
    'format_version': 1, 'created_at': '2025-01-01T00:00:00Z',
    'settings': {'label_key': 'label', 'target': 'loss', 'label_mode': 'label',
                 'normalize': 'class', 'stage': 'complete', 'num_checkpoints': 10,
                 'splits': ['train', 'eval'], 'batch_size': 256, 'inspection_budget': 200,
                 'bucket_percentiles': [50, 90], 'example_id_key': 'example_id'},
    'checkpoints': [{'path': 'epoch-0003.keras', 'epoch': 3, 'step': 96}],
    'counts': {'seen': 1797, 'scored': 1790, 'quarantined': 7, 'flagged': 200},
    'splits': {'train': {'seen': 1437, 'scored': 1432, 'quarantined': 5, 'flagged': 160},
               'eval': {'seen': 360, 'scored': 358, 'quarantined': 2, 'flagged': 40}},
    'per_class': [
        {'split': 'train', 'class': 3, 'count': 120, 'flagged': 14, 'flagged_share': 0.1167,
         'vog_raw_mean': 0.012, 'vog_raw_std': 0.004, 'error_rate': 0.05},
        {'split': 'train', 'class': 8, 'count': 100, 'flagged': 31, 'flagged_share': 0.31,
         'vog_raw_mean': 0.02, 'vog_raw_std': 0.006, 'error_rate': 0.12},
        {'split': 'eval', 'class': 1, 'count': 40, 'flagged': 2, 'flagged_share': 0.05,
         'vog_raw_mean': 0.01, 'vog_raw_std': 0.003, 'error_rate': 0.0},
    ],
    'error_rate_by_decile': [], 'baseline': None, 'drift': None,
}

FLAGGED = [
    {'rank': 1, 'example_id': 'digit-0412', 'split': 'train', 'label': 8, 'predicted_class': 1,
     'target_class': 8, 'vog_score': 4.2, 'vog_raw': 0.03, 'vog_percentile': 99.9,
     'vog_bucket': 'hard'},
    {'rank': 2, 'example_id': 'digit-<0099>', 'split': 'train', 'label': 3,
     'predicted_class': 5, 'target_class': 3, 'vog_score': 3.9, 'vog_raw': 0.028,
     'vog_percentile': 99.8, 'vog_bucket': 'hard'},
]


def example_drift(flagged_then: float = 0.111,
                  class_3_rises: Tuple[float, float] = (0.05, 0.12),
                  streaks: Optional[Dict[int, int]] = None) -> drift_model.Drift:
  """A Drift as the audit writes it: flagged 11.1% -> 13.0% overall; class 3's hard share
  rises by `class_3_rises` in (train, eval), by default most in eval (+12 points); class 8
  of eval falls; 40 newly flagged, 25 still flagged, 4 audits in a row at most.
  """
  def cls(split, class_id, then, change, psi):
    return drift_model.DriftClass(
        split, class_id, count_now=40, count_then=40, flagged_share_now=0.1,
        flagged_share_then=0.1, hard_share_now=then + change, hard_share_then=then, psi=psi)

  def split(name, newly, still, new_data):
    return drift_model.DriftSplit(
        name, 0.13, flagged_then, 0.2, 0.18, matched=300,
        new_examples=20, gone_examples=3, newly_flagged=newly, still_flagged=still,
        no_longer_flagged=4, flagged_new_data=new_data,
        flagged_new_data_share=new_data / (newly + still + new_data))

  return drift_model.Drift(
      '/pipelines/digits/VarianceOfGradients/difficulty_report/2', '2025-01-01T00:00:00Z', None,
      0.130, flagged_then,
      (split('train', 30, 20, 110), split('eval', 10, 5, 25)),
      (cls('train', 3, 0.1, class_3_rises[0], 0.04), cls('eval', 3, 0.1, class_3_rises[1], 0.31),
       cls('eval', 8, 0.2, -0.05, 0.12)),
      {2: 18, 3: 6, 4: 1} if streaks is None else streaks)


def unavailable_drift(reason: str) -> drift_model.Drift:
  return drift_model.Drift('/pipelines/digits/VarianceOfGradients/difficulty_report/2', None,
                           reason, None, None, (), (), {})


def write_report(folder: str, with_montage: bool = True, counts: Optional[Dict] = None,
                 drift: Optional[drift_model.Drift] = None,
                 flagged: Optional[List[Dict]] = None) -> str:
  """A DifficultyReport folder as VarianceOfGradients writes it; with `drift`, an audit that
  had the last shipped model's audit to compare with; `flagged` replaces FLAGGED's rows."""
  os.makedirs(folder, exist_ok=True)
  summary = dict(SUMMARY, counts=dict(SUMMARY['counts'], **(counts or {})))
  if drift is not None:
    summary.update(format_version=3, drift=drift.to_json())
  with open(os.path.join(folder, 'summary.json'), 'w') as f:
    json.dump(summary, f)
  with open(os.path.join(folder, 'flagged.jsonl'), 'w') as f:
    for row in FLAGGED if flagged is None else flagged:
      f.write(json.dumps(row) + '\n')
  with open(os.path.join(folder, vocab.quarantine_shard_name(0, 1)), 'w') as f:
    f.write(json.dumps(report_rows.quarantine_row_to_json(report_rows.QuarantineRow(
        'train', 'digit-9999', 'missing label', 'missing label: no label', b'\x00'))) + '\n')
  with open(os.path.join(folder, 'report.html'), 'w') as f:
    f.write('<html><body>report</body></html>')
  if with_montage:
    Image.new('RGB', (32, 16), (200, 30, 30)).save(os.path.join(folder, 'flagged.png'))
  return folder


def write_evaluation(folder: str, overall: float, hard: float,
                     metric: str = 'sparse_categorical_accuracy') -> str:
  """TFMA metrics output (metrics-*.tfrecord of MetricsForSlice) with two slices."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.proto import metrics_for_slice_pb2  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  records = []
  for slice_value, value in ((None, overall), (b'hard', hard)):
    m = metrics_for_slice_pb2.MetricsForSlice()
    if slice_value is not None:
      key = m.slice_key.single_slice_keys.add()
      key.column, key.bytes_value = 'vog_bucket', slice_value
    kv = m.metric_keys_and_values.add()
    kv.key.name = metric
    kv.value.double_value.value = value
    kv = m.metric_keys_and_values.add()
    kv.key.name = 'example_count'
    kv.value.double_value.value = 100.0
    records.append(m.SerializeToString())
  with tf.io.TFRecordWriter(os.path.join(folder, 'metrics-00000-of-00001.tfrecord')) as w:
    for r in records:
      w.write(r)
  return folder


def gate_properties(**overrides) -> Dict:
  """Exec properties as HumanReviewGate serialises them, with short test times."""
  props = {
      'backend': 'slack', 'approvers': json.dumps(['U0ALICE', 'U0BOB']),
      'timeout_seconds': 5.0, 'poll_interval_seconds': 0.2, 'slack_channel': 'C0REVIEW',
      'slack_token_env': 'SLACK_BOT_TOKEN', 'slack_api_url': None,
      'report_url_template': 'https://reports.example.com/{pipeline}/{report_id}/report.html',
      'auto_policy': None, 'reviews_dir': None, 'quorum': 1,
  }
  for key, value in overrides.items():
    props[key] = json.dumps(value) if key in ('approvers', 'auto_policy') and value else value
  return props


def run_gate(root: str, props: Dict, *, upstream_blessed: Optional[int] = None,
             evaluation_uri: Optional[str] = None, with_montage: bool = True,
             execution_id: int = 7, model_id: int = 11, report_id: int = 12,
             drift: Optional[drift_model.Drift] = None,
             flagged: Optional[List[Dict]] = None):
  """Runs the HumanReviewGate executor as the orchestrator would; returns the output blessing.

  Artifacts live under `root` laid out like a pipeline root, so reviews land in root/reviews.
  The report (with `drift` and `flagged` rows when given) is written unless one is there
  already.
  """
  from tfx.dsl.components.base import base_executor  # pylint: disable=g-import-not-at-top
  from tfx.proto.orchestration import pipeline_pb2  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from components.review_gate import executor  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top

  model = standard_artifacts.Model()
  model.uri, model.id = os.path.join(root, 'Trainer', 'model', '3'), model_id
  os.makedirs(model.uri, exist_ok=True)
  report = DifficultyReport()
  report.uri, report.id = os.path.join(root, 'VarianceOfGradients', 'difficulty_report', '5'), report_id
  if not os.path.exists(os.path.join(report.uri, 'summary.json')):
    write_report(report.uri, with_montage=with_montage, drift=drift, flagged=flagged)
  inputs = {'model': [model], 'difficulty_report': [report]}
  if upstream_blessed is not None:
    upstream = standard_artifacts.ModelBlessing()
    upstream.uri, upstream.id = os.path.join(root, 'Evaluator', 'blessing', '6'), 21
    upstream.set_int_custom_property('blessed', upstream_blessed)
    inputs['model_blessing'] = [upstream]
  if evaluation_uri:
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri, evaluation.id = evaluation_uri, 22
    inputs['evaluation'] = [evaluation]
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = os.path.join(root, 'HumanReviewGate', 'review_blessing', str(execution_id))
  os.makedirs(blessing.uri, exist_ok=True)
  node = pipeline_pb2.PipelineNode()
  node.node_info.id = 'HumanReviewGate'
  context = base_executor.BaseExecutor.Context(
      tmp_dir=os.path.join(root, '.tmp'), unique_id=str(execution_id), pipeline_node=node,
      pipeline_info=pipeline_pb2.PipelineInfo(id='digits_audit'), pipeline_run_id='run-1')
  executor.Executor(context).Do(inputs, {'review_blessing': [blessing]}, props)
  return blessing


def local_record(fingerprint: str, *, approvers=('alice',), quorum: int = 1,
                 timeout_seconds: float = 3600.0, **fields):
  """A new local review record as the gate opens one (for ReviewStore.open_review)."""
  from components.review_gate import review_record  # pylint: disable=g-import-not-at-top
  values = dict(
      review_id='', fingerprint=fingerprint, backend='local', status='pending', closed=False,
      created_at='2025-01-01T00:00:00Z', timeout_seconds=timeout_seconds,
      approvers=tuple(approvers), quorum=quorum, pipeline='digits_audit', run_id='run-1',
      node_id='HumanReviewGate', model_uri='/pipelines/digits/Trainer/model/3', model_id=11,
      report_uri='/pipelines/digits/VarianceOfGradients/difficulty_report/5', report_id=12,
      headline={'counts': dict(SUMMARY['counts']), 'overall_accuracy': None,
                'hard_accuracy': None, 'report_url': '/r/report.html',
                'drift': 'First audit with no shipped model to compare with'},
      decision=None,
      state={'deadline_at': time.time() + timeout_seconds, 'answers': []})
  values.update(fields)
  return review_record.ReviewRecord(**values)


def record_json(review_id: str, **changes) -> Dict:
  """A well-formed local record as JSON, with `changes` applied (for writing damaged ones)."""
  data = local_record(review_id.split('-')[0].ljust(64, '0')).replace(
      review_id=review_id).to_json()
  data.update(changes)
  return data


def slack_gate_properties(slack, **overrides) -> Dict:
  """gate_properties for the Slack backend against the stand-in `slack`."""
  return gate_properties(slack_api_url=slack.api_url, **overrides)


def review_fields(blessing) -> Dict[str, str]:
  """What the gate wrote on its blessing about the review."""
  return {name: blessing.get_string_custom_property(name)
          for name in ('review_decision', 'reviewer', 'review_comment', 'review_reason',
                       'reviewed_at')}
