"""VarianceOfGradients behind Transform: raw examples in, transformed model inputs scored.

A real transform graph is written with tensorflow_transform's Beam API (z-scores of two
numbers, a vocabulary over a string feature) and a small Keras model over its outputs
is trained with VogCheckpointCallback. The audit then reads the raw examples, the
transform graph makes the model inputs, and the scored examples keep the raw bytes.
"""

import base64
import glob
import json
import os

from click.testing import CliRunner
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
import apache_beam as beam

from components import VarianceOfGradients
from components.vog import audit
from components.vog import audit_errors
from components.vog import audit_plan
from components.vog import factories
from components.vog import report_page
from components.vog.report import summary_model
from components.vog.inputs import examples_io
from components.vog import executor as vog_executor
from components.vog.report import report_format as fmt
from components.vog import vocabulary as vocab
from components.vog import spec_keys
from components.vog.inputs import transform_inputs
from components.vog.inputs.checkpoints import VogCheckpointCallback
from components.vog.settings import VogSettings
from pipeline.cli import main as cli
import fixtures

N = 20
COLORS = (b'red', b'green', b'blue')
NUM_CLASSES = 3
# compute_and_apply_vocabulary: the 3 colours, then one bucket for colours never seen.
VOCAB_SIZE = len(COLORS) + 1
RAW_SPEC = {
    'x1': tf.io.FixedLenFeature([], tf.float32),
    'x2': tf.io.FixedLenFeature([], tf.float32),
    'color': tf.io.FixedLenFeature([], tf.string),
    'label': tf.io.FixedLenFeature([], tf.int64),
    'example_id': tf.io.FixedLenFeature([], tf.string),
}
FLOAT_INPUTS = ('x1_z', 'x2_z', 'color_onehot')
def preprocessing_fn(inputs):
  color_id = tft.compute_and_apply_vocabulary(inputs['color'], num_oov_buckets=1,
                                              vocab_filename='color')
  return {
      'x1_z': tft.scale_to_z_score(inputs['x1']),
      'x2_z': tft.scale_to_z_score(inputs['x2']),
      'color_id': color_id,
      'color_onehot': tf.one_hot(color_id, VOCAB_SIZE),
      'label': inputs['label'],
  }


def raw_example(i: int, **changes) -> bytes:
  """Example i: the class is its colour, x1 and x2 lean with the class. `changes` set a
  feature to a tf.train.Feature, or drop it (None)."""
  rng = np.random.default_rng(i)
  label = i % NUM_CLASSES
  feature = {
      'x1': tf.train.Feature(float_list=tf.train.FloatList(
          value=[float(10 * label + rng.normal())])),
      'x2': tf.train.Feature(float_list=tf.train.FloatList(
          value=[float(100 - 20 * label + 3 * rng.normal())])),
      'color': tf.train.Feature(bytes_list=tf.train.BytesList(value=[COLORS[label]])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[f'ex-{i}'.encode()])),
  }
  for key, value in changes.items():
    if value is None:
      del feature[key]
    else:
      feature[key] = value
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _raw_dicts(records):
  parsed = tf.io.parse_example(records, RAW_SPEC)
  return [{k: v[i].numpy() for k, v in parsed.items()} for i in range(len(records))]


def write_transform_graph(folder: str, records) -> str:
  """Analyzes `records` and writes a TransformGraph folder as Transform does."""
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
  with beam.Pipeline() as pipeline:
    with tft_beam.Context(temp_dir=os.path.join(folder, '.tmp'), force_tf_compat_v1=False):
      data = pipeline | 'Raw' >> beam.Create(_raw_dicts(records))
      transform_fn = (data, metadata) | 'Analyze' >> tft_beam.AnalyzeDataset(preprocessing_fn)
      _ = transform_fn | 'WriteTransformFn' >> tft_beam.WriteTransformFn(folder)
      _ = metadata | 'WriteRawMetadata' >> tft_beam.WriteMetadata(
          os.path.join(folder, tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
  return folder


def transformed_by_layer(folder: str, records):
  """What the graph's own transform_features_layer gives for `records`."""
  output = tft.TFTransformOutput(folder)
  layer = output.transform_features_layer()
  return {k: v.numpy() for k, v in layer(
      tf.io.parse_example(list(records), output.raw_feature_spec())).items()}


def float_model(seed: int, input_names=FLOAT_INPUTS) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  inputs = [tf.keras.Input((VOCAB_SIZE if n == 'color_onehot' else 1,), name=n)
            for n in input_names]
  x = tf.keras.layers.Concatenate()(inputs)
  x = tf.keras.layers.Dense(8, activation='relu')(x)
  out = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax')(x)
  return tf.keras.Model(inputs, out)


def embedding_model(seed: int, vocabulary: int = VOCAB_SIZE) -> tf.keras.Model:
  tf.keras.utils.set_random_seed(seed)
  color_id = tf.keras.Input((1,), dtype='int64', name='color_id')
  x1 = tf.keras.Input((1,), name='x1_z')
  embedded = tf.keras.layers.Flatten()(
      tf.keras.layers.Embedding(vocabulary, 4, name='color_embedding')(color_id))
  x = tf.keras.layers.Concatenate()([embedded, x1])
  x = tf.keras.layers.Dense(8, activation='relu')(x)
  out = tf.keras.layers.Dense(NUM_CLASSES, activation='softmax')(x)
  return tf.keras.Model([color_id, x1], out)


def train(model_run_dir: str, model: tf.keras.Model, transformed, epochs: int = 3):
  # Eager: 20 examples train in no time, and AutoGraph's conversion of Keras' training
  # step would take seconds.
  model.compile(optimizer=tf.keras.optimizers.Adam(0.05),
                loss='sparse_categorical_crossentropy', run_eagerly=True)
  features = {n: transformed[n].reshape((N,) + tuple(t.shape[1:]))
              for n, t in zip(model.input_names, model.inputs)}
  model.fit(features, transformed['label'], epochs=epochs, batch_size=8, verbose=0,
            callbacks=[VogCheckpointCallback(model_run_dir, epochs)])
  return model_run_dir


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('transform_inputs'))
  records = [raw_example(i) for i in range(N)]
  graph = write_transform_graph(os.path.join(root, 'transform_graph'), records)
  transformed = transformed_by_layer(graph, records)
  run = train(os.path.join(root, 'run'), float_model(0), transformed)
  return {'root': root, 'records': records, 'graph': graph, 'run': run,
          'transformed': transformed}


def _specs(plan_or_names):
  return [examples_io.InputSpec(n, (VOCAB_SIZE,) if n == 'color_onehot' else (1,), 'float32')
          for n in plan_or_names]


def _parser(graph, specs, label_required=True):
  return transform_inputs.TransformParser(graph, specs, 'label', label_required,
                                          NUM_CLASSES, 'example_id')


def _records(serialized, split='train'):
  return [examples_io.InputRecord(split, 0, i, s) for i, s in enumerate(serialized)]


def test_transformed_inputs_equal_the_transform_layer(setup):
  records = setup['records']
  batch, bad = _parser(setup['graph'], _specs(FLOAT_INPUTS)).parse_batch(
      _records(records))
  assert bad == []
  expected = setup['transformed']
  assert batch.example_ids == [f'ex-{i}' for i in range(N)]
  assert batch.labels == [i % NUM_CLASSES for i in range(N)]  # the raw label
  for name in FLOAT_INPUTS:
    assert batch.inputs[name].dtype == np.float32
    np.testing.assert_array_equal(batch.inputs[name],
                                  expected[name].reshape(batch.inputs[name].shape))
  # The z-scores really are transformed: mean 0 over the analyzed data.
  assert abs(float(batch.inputs['x1_z'].mean())) < 1e-5
  # One record alone gives what it gives in the batch.
  one = _parser(setup['graph'], _specs(FLOAT_INPUTS)).parse('train', records[4])
  assert isinstance(one, examples_io.ScorableExample) and one.example_id == 'ex-4'
  np.testing.assert_array_equal(one.inputs['color_onehot'], batch.inputs['color_onehot'][4])


def test_vocabulary_ids_convert_to_the_model_input_dtype(setup):
  specs = [examples_io.InputSpec('color_id', (1,), 'int64'),
           examples_io.InputSpec('x1_z', (1,), 'float64')]
  batch, bad = _parser(setup['graph'], specs).parse_batch(_records(setup['records'][:6]))
  assert bad == []
  assert batch.inputs['color_id'].dtype == np.int64
  assert batch.inputs['x1_z'].dtype == np.float64
  np.testing.assert_array_equal(batch.inputs['color_id'][:, 0],
                                setup['transformed']['color_id'][:6])


def test_a_record_missing_a_raw_feature_is_quarantined_and_the_rest_kept(setup):
  records = list(setup['records'][:8])
  records[3] = raw_example(3, x2=None)
  records[5] = raw_example(5, x1=tf.train.Feature(int64_list=tf.train.Int64List(value=[4])))
  records[6] = raw_example(6, label=None)
  batch, bad = _parser(setup['graph'], _specs(FLOAT_INPUTS)).parse_batch(_records(records))
  assert [(q.example_id, q.record_index, q.reason) for q in bad] == [
      ('ex-3', 3, "missing feature: 'x2' (a raw feature the transform graph reads)"),
      ('ex-5', 5, "wrong type: feature 'x1' holds int64_list; the transform graph reads "
                  'float32 (float_list)'),
      ('ex-6', 6, "missing label: no value for 'label'")]
  assert batch.example_ids == ['ex-0', 'ex-1', 'ex-2', 'ex-4', 'ex-7']
  kept = [setup['records'][i] for i in (0, 1, 2, 4, 7)]
  expected = transformed_by_layer(setup['graph'], kept)
  np.testing.assert_array_equal(batch.inputs['x2_z'][:, 0], expected['x2_z'])


def _run_audit(plan, out):
  return audit.run_audit(plan, beam.Pipeline(argv=['--runner=DirectRunner']),
                         os.path.join(out, 'scored'), os.path.join(out, 'report'))


def test_audit_scores_raw_examples_and_keeps_their_bytes(setup, tmp_path):
  records = list(setup['records']) + [raw_example(N, color=None)]
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {'train': records})
  plan = audit_plan.plan_audit(VogSettings(batch_size=8, inspection_budget=4,
                                           copy_splits=['train']),
                               setup['run'], patterns, transform_graph=setup['graph'])
  assert [s.name for s in plan.input_specs] == list(FLOAT_INPUTS)
  summary = _run_audit(plan, str(tmp_path / 'out'))
  assert summary['counts'] == {'seen': N + 1, 'scored': N, 'quarantined': 1, 'flagged': 4}
  assert summary[summary_model.TRANSFORM_GRAPH] == setup['graph']

  by_id = {f'ex-{i}': r for i, r in enumerate(records)}
  scored = [r.numpy() for path in glob.glob(str(tmp_path / 'out/scored/Split-train/*.gz'))
            for r in tf.data.TFRecordDataset(path, compression_type='GZIP')]
  assert len(scored) == N
  for record in scored:
    features = tf.train.Example.FromString(record).features.feature
    raw = by_id[features['example_id'].bytes_list.value[0].decode()]
    assert record[:len(raw)] == raw  # the raw example byte for byte, then the new fields
    added = tf.train.Example.FromString(record[len(raw):]).features.feature
    assert set(added) == set(vocab.VOG_FIELDS) | set(vocab.SIGNAL_FIELDS)
    assert np.isfinite(added['vog_raw'].float_list.value[0])
    assert 'x1_z' not in features  # transformed features stay out of the examples

  report_dir = str(tmp_path / 'out' / 'report')
  rows = [json.loads(line) for path in glob.glob(os.path.join(report_dir, vocab.QUARANTINE_GLOB))
          for line in open(path)]
  assert [(r['example_id'], r['reason']) for r in rows] == [
      (f'ex-{N}', "missing feature: 'color' (a raw feature the transform graph reads)")]
  assert base64.b64decode(rows[0]['record_base64']) == records[-1]
  # The report reads back with the extra summary key, and its page rebuilds.
  loaded = fmt.load_report(report_dir)
  assert loaded.summary.raw[summary_model.TRANSFORM_GRAPH] == setup['graph']
  assert os.path.exists(report_page.rebuild_report_page(report_dir))
  # Each flagged row names the model inputs (each one-hot column apart) whose gradients
  # moved most, largest first; the page shows them beside the example's raw features.
  sources = {'x1_z', 'x2_z'} | {f'color_onehot[{j}]' for j in range(VOCAB_SIZE)}
  for row in loaded.flagged:
    names = [name for name, _ in row.top_sigma]
    sigmas = [value for _, value in row.top_sigma]
    assert len(names) == 5 and set(names) <= sources and sigmas == sorted(sigmas, reverse=True)
  page = open(os.path.join(report_dir, vocab.REPORT_FILE)).read()
  assert 'gradients moved most (sigma)' in page and '<table class="features">' in page


def test_vog_inputs_fn_and_a_transform_graph_are_refused(setup, tmp_path):
  module = tmp_path / 'inputs_module.py'
  module.write_text('def vog_inputs_fn(features):\n  return features\n')
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'),
                                              {'train': setup['records'][:4]})
  with pytest.raises(audit_errors.AuditConfigError, match='defines vog_inputs_fn and a transform '
                     'graph'):
    audit_plan.plan_audit(VogSettings(), setup['run'], patterns, module_file=str(module),
                          transform_graph=setup['graph'])

  # Through the component's executor too, before anything is written.
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'ex')
  examples.split_names = artifact_utils.encode_split_names(['train'])
  model_run = standard_artifacts.ModelRun()
  model_run.uri = setup['run']
  graph = standard_artifacts.TransformGraph()
  graph.uri = setup['graph']
  scored = standard_artifacts.Examples()
  scored.uri = str(tmp_path / 'scored')
  report = standard_artifacts.Examples()
  report.uri = str(tmp_path / 'report')
  with pytest.raises(audit_errors.AuditConfigError, match='use the transform graph alone'):
    vog_executor.Executor().Do(
        {spec_keys.EXAMPLES_KEY: [examples], spec_keys.MODEL_RUN_KEY: [model_run],
         spec_keys.TRANSFORM_GRAPH_KEY: [graph]},
        {spec_keys.SCORED_EXAMPLES_KEY: [scored], spec_keys.DIFFICULTY_REPORT_KEY: [report]},
        {spec_keys.SETTINGS_KEY: VogSettings().to_json_string(),
         spec_keys.MODULE_FILE_KEY: str(module)})
  assert not os.path.exists(scored.uri)


def test_a_model_input_the_transform_does_not_make_is_refused(setup, tmp_path):
  transformed = dict(setup['transformed'], x3_z=setup['transformed']['x1_z'])
  run = train(str(tmp_path / 'run'), float_model(1, ('x1_z', 'x3_z')), transformed,
              epochs=2)
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'),
                                              {'train': setup['records'][:4]})
  message = ("model input(s) ['x3_z'] are not produced by the transform graph "
             f"{setup['graph']} (it produces ['color_id', 'color_onehot', 'label', "
             "'x1_z', 'x2_z'])")
  with pytest.raises(audit_errors.AuditConfigError) as refused:
    audit_plan.plan_audit(VogSettings(), run, patterns, transform_graph=setup['graph'])
  assert message in str(refused.value)

  # `vog-audit score --transform-graph` says the same in one line, exit code 2.
  result = CliRunner().invoke(cli, [
      'score', '--model-run', run, '--examples', str(tmp_path / 'ex'),
      '--output', str(tmp_path / 'cli'), '--transform-graph', setup['graph']])
  assert result.exit_code == 2, result.output
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], result.stderr


def test_raw_features_the_transform_reads_are_checked_before_beam(setup, tmp_path):
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {
      'train': [raw_example(i, x2=None) for i in range(4)]})
  with pytest.raises(audit_errors.AuditConfigError,
                     match=r"raw feature\(s\) \['x2'\] that the transform graph .* reads "
                           r"are not features of split 'train'"):
    audit_plan.plan_audit(VogSettings(), setup['run'], patterns, transform_graph=setup['graph'])
  with pytest.raises(audit_errors.AuditConfigError,
                     match='transform graph .*nowhere does not exist'):
    audit_plan.plan_audit(VogSettings(), setup['run'], patterns,
                          transform_graph=str(tmp_path / 'nowhere'))


def test_the_component_takes_a_transform_graph_channel():
  from tfx import types  # pylint: disable=g-import-not-at-top
  channels = {
      'examples': types.Channel(type=standard_artifacts.Examples),
      'model_run': types.Channel(type=standard_artifacts.ModelRun),
      'transform_graph': types.Channel(type=standard_artifacts.TransformGraph)}
  component = VarianceOfGradients(**channels)
  assert component.inputs[spec_keys.TRANSFORM_GRAPH_KEY] is channels['transform_graph']
  assert spec_keys.TRANSFORM_GRAPH_KEY not in VarianceOfGradients(
      examples=channels['examples'], model_run=channels['model_run']).inputs


def test_scorer_cache_key_names_the_gradient_layers_and_pad_id():
  keys = {factories.ScorerFactory([], None, 'loss', 'label', gradient_layers=layers,
                                  pad_id=pad).cache_key()
          for layers, pad in ((None, None), (['emb'], None), (['emb'], 0), (None, 0))}
  assert len(keys) == 4


def test_embedding_over_vocabulary_ids(setup, tmp_path):
  """The vocabulary id feeds an Embedding, whose output stands in for the id in the
  gradients."""
  run = train(str(tmp_path / 'run'), embedding_model(2), setup['transformed'], epochs=2)
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'),
                                              {'train': setup['records']})
  plan = audit_plan.plan_audit(VogSettings(batch_size=8), run, patterns,
                               transform_graph=setup['graph'])
  assert {s.name: s.dtype for s in plan.input_specs}['color_id'] == 'int64'
  parser = factories.ParserFactory(plan.input_specs, plan.settings, plan.num_classes, None,
                                   plan.transform_graph)()
  batch, bad = parser.parse_batch(_records(setup['records']))
  assert bad == []
  np.testing.assert_array_equal(batch.inputs['color_id'][:, 0],
                                setup['transformed']['color_id'])
  scorer = factories.ScorerFactory(plan.entries, None, 'loss', 'label',
                                   gradient_layers=plan.settings.gradient_layers,
                                   pad_id=plan.settings.pad_id)()
  result = scorer.score(batch.inputs, np.asarray(batch.labels))
  assert result.vog_raw.shape == (N,) and np.isfinite(result.vog_raw).all()


def test_an_id_beyond_the_embedding_is_quarantined_and_its_batch_scored(setup, tmp_path):
  # A model whose Embedding knows only the three colours it was trained on: a colour
  # never seen gets the out-of-vocabulary id 3, which that Embedding cannot look up.
  run = train(str(tmp_path / 'run'), embedding_model(3, vocabulary=len(COLORS)),
              setup['transformed'], epochs=2)
  unseen = raw_example(99, color=tf.train.Feature(
      bytes_list=tf.train.BytesList(value=[b'mauve'])))
  records = setup['records'][:10] + [unseen] + setup['records'][10:]
  patterns = fixtures.write_examples_artifact(str(tmp_path / 'ex'), {'train': records})
  plan = audit_plan.plan_audit(VogSettings(batch_size=8), run, patterns,
                               transform_graph=setup['graph'])
  summary = _run_audit(plan, str(tmp_path / 'out'))
  assert summary['counts']['scored'] == N and summary['counts']['quarantined'] == 1
  report = fmt.load_report(str(tmp_path / 'out' / 'report'))
  [row] = list(report.quarantine_rows())
  assert row.example_id == 'ex-99' and row.kind == 'model refused input'
  # Refused by the scorer's own check, so on a GPU (where the lookup gives zeros) too.
  assert row.reason.endswith("the model cannot take this example: model input 'color_id' "
                             "holds ids [3] outside the vocabulary of Embedding layer "
                             "'color_embedding' (0 to 2)"), row.reason
  assert row.record == unseen
