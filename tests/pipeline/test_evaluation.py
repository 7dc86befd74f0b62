"""The Evaluator's config: the slices an audit's report adds, and that TFMA takes them."""

import json
import os

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.slicer import slicer_lib

from components.vog.compute import slice_stats as ss
from components.vog.report.json_checks import ReportFormatError
from pipeline import evaluation


def _slices():
  """slices.json's content as the audit writes it: train's rows the audit's own feature, a
  label pair, a cut value, device=tablet, region=r3, a range, a token; eval's region=r3
  and channel=partner."""
  def split(candidates, sizes):
    rows, tests = ss.slice_rows(candidates, ss.GroupSizes(*sizes))
    return {'examples': sizes[0], 'flagged': sizes[1], 'hard': sizes[2],
            'features': 'examined', 'tests': tests, 'rows': rows}

  train = [ss.SliceCounts('label -> predicted', ss.LABEL_PAIR, '3 -> 5', 25, 24, 10, False,
                          classes=(3, 5)),
           ss.SliceCounts('region', ss.CATEGORICAL, 'r3', 130, 52, 20, False),
           ss.SliceCounts('income_k', ss.NUMERIC, '>= 7.5', 100, 38, 12, True, 7.5, None),
           ss.SliceCounts('text', ss.TOKEN, 'news', 90, 30, 15, False),
           ss.SliceCounts('device', ss.CATEGORICAL, 'tablet', 100, 45, 12, False),
           ss.SliceCounts('vog_bucket', ss.CATEGORICAL, 'hard', 100, 90, 100, False),
           ss.SliceCounts('code', ss.CATEGORICAL, 'x' * 100, 100, 45, 12, False)]
  eval_ = [ss.SliceCounts('region', ss.CATEGORICAL, 'r3', 40, 20, 6, False),
           ss.SliceCounts('channel', ss.CATEGORICAL, 'partner', 40, 15, 6, False)]
  return {'format_version': 1, 'settings': {},
          'splits': {'train': split(train, (1000, 200, 100)),
                     'eval': split(eval_, (300, 40, 30))}}


def _values(specs):
  return [dict(s.feature_values) for s in specs]


def test_top_categorical_slices_become_a_slice_and_its_hard_cross():
  specs = evaluation.top_slice_specs(_slices(), max_slices=3)
  # Rank by rank across the splits: eval's region (train's rank 1 is the audit's own
  # vog_bucket), eval's channel (train's rank 2 is a label pair), train's device (its rank 3
  # a value that may have been cut when counted); train's region comes later, and once.
  assert _values(specs) == [
      {'region': 'r3'}, {'region': 'r3', 'vog_bucket': 'hard'},
      {'channel': 'partner'}, {'channel': 'partner', 'vog_bucket': 'hard'},
      {'device': 'tablet'}, {'device': 'tablet', 'vog_bucket': 'hard'}]
  assert _values(evaluation.top_slice_specs(_slices(), max_slices=1, splits=['eval'])) == [
      {'region': 'r3'}, {'region': 'r3', 'vog_bucket': 'hard'}]
  # Ranges, tokens, label pairs, the audit's own features and cut values never make a spec.
  every = _values(evaluation.top_slice_specs(_slices(), max_slices=50))
  assert {k for v in every for k in v} == {'region', 'channel', 'device', 'vog_bucket'}
  assert len(every) == 6


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match='max_slices=0'):
    evaluation.top_slice_specs(_slices(), max_slices=0)
  with pytest.raises(ReportFormatError, match='slices.json: has format_version 7'):
    evaluation.top_slice_specs(dict(_slices(), format_version=7))
  with pytest.raises(ValueError, match='extra_slicing_specs holds a dict'):
    evaluation.difficulty_eval_config(extra_slicing_specs=[{'region': 'r3'}])


def test_the_eval_config_carries_the_extra_slices_and_tfma_slices_by_them():
  extra = evaluation.top_slice_specs(_slices(), max_slices=2)
  config = evaluation.difficulty_eval_config(
      extra_slicing_specs=extra + [tfma.SlicingSpec(feature_keys=['vog_bucket'])])
  # The four of every config, then the extra ones (a repeated one once).
  assert len(config.slicing_specs) == 4 + 4
  assert list(config.slicing_specs[4:]) == extra
  # As the Evaluator's exec property holds it: JSON, parsed back.
  parsed = json_format.Parse(json_format.MessageToJson(config), tfma.EvalConfig())
  assert list(parsed.slicing_specs) == list(config.slicing_specs)
  # TFMA's slicer takes each spec and puts an example of the slice in it.
  single = [slicer_lib.SingleSliceSpec(spec=s) for s in parsed.slicing_specs]
  features = {'region': np.array([b'r3']), 'vog_bucket': np.array([b'hard']),
              'vog_decile': np.array([10]), 'label': np.array([3]),
              'channel': np.array([b'partner'])}
  keys = set(slicer_lib.get_slices_for_features_dicts([features], None, single))
  assert (('region', 'r3'),) in keys
  assert (('region', 'r3'), ('vog_bucket', 'hard')) in keys
  assert (('channel', 'partner'), ('vog_bucket', 'hard')) in keys
  other = dict(features, region=np.array([b'r1']))
  keys = set(slicer_lib.get_slices_for_features_dicts([other], None, single))
  assert not [k for k in keys if ('region', 'r3') in k]


def test_specs_from_a_report_folder_and_none_from_an_older_one(tmp_path):
  folder = tmp_path / 'report'
  folder.mkdir()
  summary = {'format_version': 1, 'settings': {}, 'checkpoints': [],
             'counts': {'seen': 1, 'scored': 1, 'quarantined': 0, 'flagged': 0},
             'splits': {}}
  (folder / 'summary.json').write_text(json.dumps(summary))
  (folder / 'flagged.jsonl').write_text('')
  assert evaluation.top_slice_specs_from(str(folder)) == []
  (folder / 'slices.json').write_text(json.dumps(_slices()))
  assert _values(evaluation.top_slice_specs_from(str(folder), max_slices=1)) == [
      {'region': 'r3'}, {'region': 'r3', 'vog_bucket': 'hard'}]
  (folder / 'slices.json').write_text('{"format_version": 1, "splits": []}')
  with pytest.raises(ReportFormatError, match=os.path.join(str(folder), 'slices.json')):
    evaluation.top_slice_specs_from(str(folder))
