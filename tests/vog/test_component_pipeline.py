"""VarianceOfGradients in a real LocalDagRunner pipeline with SQLite ML Metadata."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import metadata

from components import DifficultyReport
from components import VarianceOfGradients
from components.vog.inputs import checkpoints
from components.vog.report import score_table
from components.vog.settings import HEADLINE
from components.vog.compute.scoring import VogScorer
import fixtures
import repo_paths

HERE = repo_paths.TESTS
NUM_EXAMPLES = 240


def _pipeline(root, data_dir, enable_cache):
  example_gen = tfx.components.ImportExampleGen(
      input_base=data_dir,
      input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name='train', pattern='train/*'),
          tfx.proto.Input.Split(name='eval', pattern='eval/*')]))
  trainer = tfx.components.Trainer(
      module_file=os.path.join(HERE, 'vog_trainer_module.py'),
      examples=example_gen.outputs['examples'],
      train_args=tfx.proto.TrainArgs(num_steps=1),
      eval_args=tfx.proto.EvalArgs(num_steps=1))
  vog = VarianceOfGradients(examples=example_gen.outputs['examples'],
                            model_run=trainer.outputs['model_run'],
                            label_key='label', batch_size=64, inspection_budget=25)
  return tfx.dsl.Pipeline(
      pipeline_name='vog_component_test', pipeline_root=os.path.join(root, 'pipeline'),
      components=[example_gen, trainer, vog], enable_cache=enable_cache,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.join(root, 'metadata.sqlite')))


def _read_examples(pattern):
  files = glob.glob(pattern)
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _value(example, key):
  feature = example.features.feature[key]
  return getattr(feature, feature.WhichOneof('kind')).value[0]


@pytest.fixture(scope='module')
def pipeline_run(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('vog_pipeline'))
  images, labels, _ = fixtures.digits(NUM_EXAMPLES, seed=1)
  records = [fixtures.example(im, lab, f'digit-{i}').SerializeToString()
             for i, (im, lab) in enumerate(zip(images, labels))]
  fixtures.write_records(os.path.join(root, 'data', 'train', 'part.gz'), records[:180])
  fixtures.write_records(os.path.join(root, 'data', 'eval', 'part.gz'), records[180:])
  tfx.orchestration.LocalDagRunner().run(
      _pipeline(root, os.path.join(root, 'data'), enable_cache=True))
  return root, images, labels


def _store(root):
  config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(root, 'metadata.sqlite'))
  return metadata.Metadata(config)


def test_every_example_scored_once_with_the_core_scores(pipeline_run):
  root, images, labels = pipeline_run
  with _store(root) as m:
    [scored] = m.store.get_artifacts_by_type('Examples')[1:]
    [model_run] = m.store.get_artifacts_by_type('ModelRun')
    [report] = m.store.get_artifacts_by_type(DifficultyReport.TYPE_NAME)
  # The Evaluator's split is copied in full; every split has its score table.
  assert json.loads(scored.properties['split_names'].string_value) == ['eval']
  assert not os.path.exists(os.path.join(scored.uri, 'Split-train'))
  table = score_table.read_table(report.uri).to_pydict()
  ids = table['example_id']
  assert sorted(ids) == sorted(f'digit-{i}' for i in range(NUM_EXAMPLES))
  assert sorted(set(table['split'])) == ['eval', 'train']

  entries = checkpoints.load_manifest(model_run.uri)
  scorer = VogScorer(checkpoints.load_checkpoint_models(entries), target='loss')
  expected = scorer.score({'image': images}, labels).vog_raw
  got = np.array(table['vog_raw'])
  order = [int(i.split('-')[1]) for i in ids]
  np.testing.assert_allclose(got, expected[order], rtol=1e-5)
  assert set(table['vog_bucket']) == {'easy', 'medium', 'hard'}
  assert sum(table['vog_flagged']) == 25

  examples = _read_examples(os.path.join(scored.uri, 'Split-eval', '*'))
  assert sorted(_value(e, 'example_id').decode() for e in examples) == sorted(
      f'digit-{i}' for i in range(180, NUM_EXAMPLES))
  in_table = {i: (raw, flag) for i, raw, flag, split in zip(
      ids, table['vog_raw'], table['vog_flagged'], table['split']) if split == 'eval'}
  for example in examples:  # original features kept, VoG fields added
    assert {'image', 'label', 'vog_score', 'vog_percentile', 'vog_decile', 'vog_bucket',
            'vog_flagged', 'vog_target_class'} <= set(example.features.feature)
    raw, flag = in_table[_value(example, 'example_id').decode()]
    assert (_value(example, 'vog_raw'), _value(example, 'vog_flagged')) == (raw, flag)


def test_report_registered_in_ml_metadata(pipeline_run):
  root, _, _ = pipeline_run
  with _store(root) as m:
    [report] = m.store.get_artifacts_by_type(DifficultyReport.TYPE_NAME)
  props = {k: getattr(v, v.WhichOneof('value'))
           for k, v in report.custom_properties.items()}
  assert {k: props[k] for k in ('seen', 'scored', 'quarantined', 'flagged')} == {
      'seen': NUM_EXAMPLES, 'scored': NUM_EXAMPLES, 'quarantined': 0, 'flagged': 25}
  # The headline settings sit beside the counts, so runs can be compared in ML Metadata.
  assert {k: props[k] for k in HEADLINE} == {
      'target': 'loss', 'label_mode': 'label', 'normalize': 'class',
      'stage': 'complete', 'num_checkpoints': 10, 'inspection_budget': 25,
      'rank_by': 'confidence'}
  # One quarantine shard per input file (a file for each of the two splits).
  for name in ('summary.json', 'flagged.jsonl', 'quarantine-00000-of-00002.jsonl',
               'quarantine-00001-of-00002.jsonl', 'report.html'):
    assert os.path.exists(os.path.join(report.uri, name)), name
  summary = json.loads(open(os.path.join(report.uri, 'summary.json')).read())
  assert summary['splits']['eval']['seen'] == NUM_EXAMPLES - 180
  assert len(summary['checkpoints']) == 3
  flagged = [json.loads(l) for l in open(os.path.join(report.uri, 'flagged.jsonl'))]
  assert [f['rank'] for f in flagged] == list(range(1, 26))
  # Ranked by default by label confidence: the least confident label first.
  confidence = [f['signals']['audit_confidence'] for f in flagged]
  assert confidence == sorted(confidence)


def test_rerun_with_caching_reuses_the_result(pipeline_run):
  root, _, _ = pipeline_run
  tfx.orchestration.LocalDagRunner().run(
      _pipeline(root, os.path.join(root, 'data'), enable_cache=True))
  with _store(root) as m:
    executions = m.store.get_executions_by_type(
        'components.vog.component.VarianceOfGradients')
    reports = m.store.get_artifacts_by_type(DifficultyReport.TYPE_NAME)
  states = sorted(metadata_store_pb2.Execution.State.Name(e.last_known_state)
                  for e in executions)
  assert states == ['CACHED', 'COMPLETE']
  assert len(reports) == 1
