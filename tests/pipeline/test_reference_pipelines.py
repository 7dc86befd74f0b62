"""The tabular and text reference pipelines, end to end, as `vog-audit demo --dataset` runs them.

Each runs once (module-scoped) on LocalDagRunner with SQLite ML Metadata, at reduced size:
ImportExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer
-> VarianceOfGradients (raw examples + transform graph) -> Evaluator -> HumanReviewGate
-> Pusher. The checks are what a user sees: every step ran, the report is there, the scored
examples are the RAW examples with the vog_* fields added (not the transformed ones), the
Evaluator sliced the serving model's accuracy by difficulty, and the flagged set holds the
flipped labels far above chance. The factory's wiring and the data are checked without a
run.
"""

import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics

from components.vog.report import score_table
from pipeline import audit_pipeline
from pipeline import demo
from pipeline.reference import noisy_labels
from pipeline.reference import reference_datasets
from pipeline.reference import tabular_data
from pipeline.reference import tabular_transform
from pipeline.reference import text_data
from pipeline.reference import text_transform
from pipeline.config import PipelineConfig

TRANSFORM_DATASETS = (reference_datasets.TABULAR, reference_datasets.TEXT)
NUM_EXAMPLES = 600
BUDGET = 60  # the number of flipped labels at 10%, so a perfect ranking flags only them
FLIP_RATE = 0.1
# Small data trains in few steps: the text model needs a larger step than the default.
TRAINING = {reference_datasets.TABULAR: dict(epochs=6),
            reference_datasets.TEXT: dict(epochs=8, learning_rate=0.01)}
# What each pipeline's Transform makes, which the scored examples must NOT hold.
TRANSFORMED_ONLY = {
    reference_datasets.TABULAR: {tabular_transform.NUMERIC_FEATURE} | {
        tabular_transform.id_feature(c) for c in tabular_transform.CATEGORICAL_KEYS},
    reference_datasets.TEXT: {text_transform.TOKENS_KEY},
}
VOG_FIELDS = {'vog_score', 'vog_raw', 'vog_percentile', 'vog_decile', 'vog_bucket',
              'vog_flagged', 'vog_target_class'}
# Precision at budget (share of flipped labels among the 60 flagged) and the AUROC of
# vog_percentile for "label flipped", over both splits, at this size and these epochs with
# the default ranking (rank_by auto: label confidence). Observed with data seeds 0-3, with the
# flips spread evenly (before half of them were planted in one slice; seed 0 still passes):
#   tabular: precision 0.917, 0.817, 0.783, 0.833; AUROC 0.997, 0.982, 0.975, 0.984
#   text:    precision 0.867, 0.900, 0.900, 0.800; AUROC 0.993, 0.994, 0.998, 0.989
# Chance is the flip rate, 0.1 (a random 60 hold 6 +- 2.2 flipped labels); 0.6 is six
# times that and 0.18 below the lowest precision seen; an AUROC of 0.9 is 0.07 below the
# lowest seen. The tests run seed 0.
MIN_PRECISION = 0.6
MIN_AUROC = 0.9


@pytest.fixture(scope='module', params=TRANSFORM_DATASETS)
def run(request, tmp_path_factory):
  dataset = request.param
  out = str(tmp_path_factory.mktemp(dataset) / 'demo_output')
  lines = []
  summary = demo.run_demo(out, dataset=dataset, num_examples=NUM_EXAMPLES,
                          noise_rate=FLIP_RATE, echo=lines.append, inspection_budget=BUDGET,
                          beam_pipeline_args=('--direct_running_mode=in_memory',),
                          **TRAINING[dataset])
  return dataset, out, summary, lines


def _records(pattern):
  files = sorted(glob.glob(pattern))
  assert files, pattern
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _value(example, key):
  feature = example.features.feature[key]
  return getattr(feature, feature.WhichOneof('kind')).value[0]


def _scored_dir(summary):
  report = os.path.dirname(summary.report_html)
  root = os.path.dirname(os.path.dirname(report))
  return os.path.join(root, 'scored_examples', os.path.basename(report))


def _scored(summary):
  """The scored examples: the eval split, the one copied in full for the Evaluator."""
  assert os.listdir(_scored_dir(summary)) == ['Split-eval']
  return _records(os.path.join(_scored_dir(summary), 'Split-eval', '*'))


def test_every_step_ran_and_printed_a_line(run):
  dataset, _, summary, lines = run
  ids = audit_pipeline.component_ids(dataset)
  steps = [l.split(']')[1].split()[0] for l in lines if l.startswith('  [')]
  assert sorted(steps) == sorted(ids) and len(ids) == 12
  assert steps.index('Transform') < steps.index('Trainer') < steps.index(
      'VarianceOfGradients') < steps.index('Evaluator')
  ran = {n: s for n, s in summary.node_states.items() if 'resolver' not in n}
  assert set(ran) == {i for i in ids if 'resolver' not in i}
  assert set(ran.values()) == {'COMPLETE'}, ran
  noun = reference_datasets.reference_dataset(dataset).noun
  assert lines[0].startswith(f'demo data: {NUM_EXAMPLES} {noun} in ')


def test_the_report_is_written(run):
  _, _, summary, lines = run
  report = os.path.dirname(summary.report_html)
  for name in ('report.html', 'summary.json', 'flagged.jsonl'):
    assert os.path.getsize(os.path.join(report, name)) > 0, name
  flagged = [json.loads(l) for l in open(os.path.join(report, 'flagged.jsonl'))]
  assert len(flagged) == BUDGET == summary.flagged
  assert f'report: {summary.report_html}' in lines
  assert sum(s['scored'] for s in summary.splits.values()) == NUM_EXAMPLES


def test_scored_examples_are_the_raw_examples_with_the_vog_fields(run):
  dataset, out, summary, _ = run
  raw = {_value(e, 'example_id'): e for e in _records(os.path.join(out, 'data', 'eval',
                                                                   '*.gz'))}
  scored = _scored(summary)
  assert len(scored) == len(raw) == summary.splits['eval']['scored']
  raw_features = set(reference_datasets.reference_dataset(dataset).raw_features)
  for example in scored:
    keys = set(example.features.feature)
    assert raw_features | {'example_id', 'label', 'label_flipped'} | VOG_FIELDS <= keys
    assert not keys & TRANSFORMED_ONLY[dataset], keys & TRANSFORMED_ONLY[dataset]
    original = raw[_value(example, 'example_id')]
    for key in raw_features | {'label', 'label_flipped'}:
      assert example.features.feature[key] == original.features.feature[key], key


def test_evaluator_slices_the_serving_models_accuracy_by_difficulty(run):
  import tensorflow_model_analysis as tfma  # pylint: disable=g-import-not-at-top
  _, out, summary, _ = run
  [evaluation] = glob.glob(os.path.join(out, 'pipeline', 'Evaluator', 'evaluation', '*'))
  buckets = {}
  for per_slice in tfma.load_metrics(evaluation):
    keys = per_slice.slice_key.single_slice_keys
    if len(keys) == 1 and keys[0].column == 'vog_bucket':
      buckets[keys[0].bytes_value.decode()] = per_slice
  assert set(buckets) == {'easy', 'medium', 'hard'}
  assert {'overall', 'easy', 'medium', 'hard'} <= set(summary.accuracy)
  eval_size = summary.splits['eval']['scored']
  assert sum(summary.accuracy[b][1] for b in buckets) == eval_size
  # The serving model takes raw tf.Examples: run on the written eval data (no vog_*
  # fields), it scores what the Evaluator reported on the scored examples.
  [serving] = glob.glob(os.path.join(out, 'pipeline', 'Trainer', 'model', '*',
                                     'Format-Serving'))
  model = tf.saved_model.load(serving)
  examples = _records(os.path.join(out, 'data', 'eval', '*.gz'))
  probabilities = model.signatures['serving_default'](
      examples=tf.constant([e.SerializeToString() for e in examples]))['probabilities']
  correct = np.argmax(probabilities.numpy(), axis=1) == [_value(e, 'label') for e in examples]
  assert summary.accuracy['overall'] == (pytest.approx(correct.mean(), abs=1e-6), eval_size)


def test_flagged_set_holds_flipped_labels_far_above_chance(run):
  _, out, summary, lines = run
  assert summary.flipped == round(FLIP_RATE * NUM_EXAMPLES)
  precision = summary.flipped_in_flagged / summary.flagged
  assert precision >= MIN_PRECISION, lines
  # Every split's scores, from the score table, against the flips the data recorded.
  raw = {_value(e, 'example_id').decode(): _value(e, 'label_flipped')
         for e in _records(os.path.join(out, 'data', '*', '*.gz'))}
  table = score_table.read_table(os.path.dirname(summary.report_html)).to_pydict()
  assert len(table['example_id']) == len(raw) == NUM_EXAMPLES
  flipped = [raw[i] for i in table['example_id']]
  assert metrics.roc_auc_score(flipped, table['vog_percentile']) >= MIN_AUROC


@pytest.mark.parametrize('dataset', TRANSFORM_DATASETS)
def test_factory_puts_transform_before_the_trainer(tmp_path, dataset):
  config = PipelineConfig(data_root=str(tmp_path / 'data'),
                          pipeline_root=str(tmp_path / 'root'),
                          serving_model_dir=str(tmp_path / 'serving'), dataset=dataset)
  pipeline = audit_pipeline.create_pipeline(config)
  nodes = {c.id: c for c in pipeline.components}
  assert set(nodes) == set(audit_pipeline.component_ids(dataset))

  def source(node, key):
    channel = nodes[node].inputs[key]
    return channel.producer_component_id, channel.output_key

  reference = reference_datasets.reference_dataset(dataset)
  assert source('Transform', 'examples') == ('ImportExampleGen', 'examples')
  assert nodes['Transform'].exec_properties['module_file'] == (
      reference.transform_module_file)
  assert source('Trainer', 'examples') == ('Transform', 'transformed_examples')
  assert source('Trainer', 'transform_graph') == ('Transform', 'transform_graph')
  assert nodes['Trainer'].exec_properties['module_file'] == reference.trainer_module_file
  # The audit reads the raw examples and applies the graph itself.
  assert source('VarianceOfGradients', 'examples') == ('ImportExampleGen', 'examples')
  assert source('VarianceOfGradients', 'transform_graph') == ('Transform', 'transform_graph')
  assert source('Evaluator', 'examples') == ('VarianceOfGradients', 'scored_examples')
  # Installed code instead of module files, as in a container image.
  installed = audit_pipeline.create_pipeline(PipelineConfig(
      'd', 'r', 's', dataset=dataset, module_file=None, transform_module_file=None))
  nodes = {c.id: c for c in installed.components}
  assert nodes['Trainer'].exec_properties['run_fn'] == reference.trainer_run_fn
  assert nodes['Transform'].exec_properties['preprocessing_fn'] == reference.preprocessing_fn


def test_dataset_setting_comes_from_the_environment_and_is_checked():
  assert PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x'}).dataset == 'digits'
  assert PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x',
                                  'VOG_AUDIT_DATASET': 'text'}).dataset == 'text'
  with pytest.raises(ValueError, match="VOG_AUDIT_DATASET='images' is not a reference data "
                                       'set; choose one of digits, tabular, text'):
    PipelineConfig.from_env({'VOG_AUDIT_HOME': '/x', 'VOG_AUDIT_DATASET': 'images'})
  with pytest.raises(ValueError, match="dataset='images' is not a reference data set"):
    audit_pipeline.create_pipeline(PipelineConfig('d', 'r', 's', dataset='images'))
  assert audit_pipeline.component_ids() == audit_pipeline.COMPONENT_IDS


def test_a_folder_with_another_data_sets_demo_is_refused(tmp_path):
  out = tmp_path / 'demo_output'
  (out / 'data').mkdir(parents=True)
  (out / 'data' / 'demo_data.json').write_text(json.dumps({'seed': 0}))  # a digits demo
  with pytest.raises(ValueError, match=re.escape(f'{out} holds the digits demo; give another '
                                                 'output folder for the text demo')):
    demo.run_demo(str(out), dataset='text', echo=lambda line: None)
  assert sorted(os.listdir(out)) == ['data'] and os.listdir(out / 'data') == ['demo_data.json']


@pytest.mark.parametrize('write, module', [
    (tabular_data.write_tabular_data, tabular_data),
    (text_data.write_text_data, text_data),
])
def test_data_flips_an_exact_seeded_share_of_labels(tmp_path, write, module):
  summary = write(str(tmp_path / 'a'), flip_fraction=0.1, seed=3, num_examples=200)
  again = write(str(tmp_path / 'b'), flip_fraction=0.1, seed=3, num_examples=200)
  rows, truth = module.generate_rows(200, 3)
  truth_of = {f'{module.NAME}-{i:05d}': (row, int(t)) for i, (row, t) in
              enumerate(zip(rows, truth))}
  for split in noisy_labels.SPLITS:
    examples = _records(summary[split].path)
    assert len(examples) == summary[split].examples == {'train': 150, 'eval': 50}[split]
    flipped = [_value(e, 'label_flipped') for e in examples]
    assert sum(flipped) == round(0.1 * len(examples)) == summary[split].flipped
    for example in examples:
      row, true_label = truth_of[_value(example, 'example_id').decode()]
      label = _value(example, 'label')
      # A flipped label always names another class; an unflipped one is the truth.
      assert (label != true_label) == bool(_value(example, 'label_flipped'))
      assert 0 <= label < module.NUM_CLASSES
      for key, value in row.items():
        got = _value(example, key)
        if isinstance(value, str):
          assert got.decode() == value, key
        else:
          assert got == pytest.approx(value, rel=1e-6), key
    assert examples == _records(again[split].path)  # the same seed writes the same data
  reference = reference_datasets.reference_dataset(module.NAME)
  assert reference.raw_features == module.RAW_FEATURES
  assert reference.class_names == module.CLASS_NAMES


def test_transform_modules_read_the_columns_the_data_writes():
  assert tabular_transform.NUMERIC_KEYS == tabular_data.NUMERIC_KEYS
  assert tabular_transform.CATEGORICAL_KEYS == tabular_data.CATEGORICAL_KEYS
  assert text_transform.TEXT_KEY == text_data.TEXT_KEY
  # The longest generated sentence fits without being cut.
  rows, _ = text_data.generate_rows(2000, 0)
  assert max(len(r['text'].split()) for r in rows) <= text_transform.MAX_TOKENS
