"""The Evaluator's configuration: difficulty slices and the thresholds that bless a model.

The Evaluator reads `scored_examples` (eval split) from VarianceOfGradients and slices on
the features VoG added. A model is blessed when
  * accuracy over all examples is at least `min_accuracy` (value threshold, overall),
  * accuracy on the `hard` bucket is at least `min_hard_accuracy` (value threshold on
    that slice alone; off, at 0, by default), and
  * once a blessed model exists, overall accuracy fell by no more than
    `max_accuracy_drop` against it (change threshold; TFX ignores it without a baseline).

The `hard` slice threshold is a `PerSliceMetricThreshold` on the metric: the dict form on
`MetricsSpec` reports the slice missing and never blesses under TFMA 0.47.

`top_slice_specs` turns what the flagged examples of an audit had in common (its report's
slices.json) into more slices for the Evaluator: each top categorical value alone and
crossed with the `hard` bucket, so the next evaluation shows the model's accuracy where
the suspect labels gathered; `difficulty_eval_config(extra_slicing_specs=...)` adds them.
"""

from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow_model_analysis as tfma

from components.vog import vocabulary as vocab
from components.vog.compute import slice_stats
from components.vog.report import report_format

ACCURACY = 'SparseCategoricalAccuracy'
BUCKET_KEY = vocab.VOG_BUCKET
DECILE_KEY = vocab.VOG_DECILE
HARD_BUCKET = vocab.HARD


TOP_SLICE_SPECS = 3  # top categorical slices a report adds to the Evaluator, by default
# A longer value may have been cut when counted (dataflow/slices.MAX_TOKEN_BYTES bytes), so
# it would name no example; such values are left out.
MAX_SLICE_VALUE_CHARS = 99


def top_slice_specs(slices: Union[report_format.Slices, Mapping[str, Any]],
                    max_slices: int = TOP_SLICE_SPECS,
                    splits: Optional[Sequence[str]] = None) -> List[tfma.SlicingSpec]:
  """Evaluator slices of an audit's top categorical slices (slices.json, best first).

  For each of at most `max_slices` categorical rows (feature = value), over `splits` (None:
  every split; the Evaluator reads `eval`, but a split's slices describe the data, so any
  split's are worth watching) in slices.json's order, rank by rank across them: the value
  alone, `SlicingSpec(feature_values={feature: value})`, and crossed with the hard bucket,
  `SlicingSpec(feature_values={feature: value, vog_bucket: 'hard'})`; a slice is taken
  once. Numeric ranges, text tokens and label pairs are left out: TFMA's `feature_values`
  matches one whole value of a feature, and a range is many values, a token a part of one,
  and a label pair two columns (label, prediction) of which TFMA slices on neither. So are
  values that may have been cut when counted (MAX_SLICE_VALUE_CHARS) and the audit's own
  features (vog_*, audit_*).

  Args:
    slices: report_format.Slices, or slices.json's content (checked by
      report_format.parse_slices).
    max_slices: how many categorical slices, each giving two specs; at least 1.
    splits: the splits whose rows are taken; None: all.

  Raises:
    ValueError: max_slices < 1; json_checks.ReportFormatError (a ValueError) for content
      that is not slices.json's.
  """
  if isinstance(max_slices, bool) or not isinstance(max_slices, int) or max_slices < 1:
    raise ValueError(f'max_slices={max_slices!r}; give a whole number of slices >= 1')
  if not isinstance(slices, report_format.Slices):
    slices = report_format.parse_slices(slices)
  entries = [e for name, e in slices.splits.items() if splits is None or name in splits]
  chosen: List[Tuple[str, str]] = []
  for rank in range(max((len(e.rows) for e in entries), default=0)):
    for entry in entries:
      if rank >= len(entry.rows):
        continue
      row = entry.rows[rank]
      key = (row.feature, row.value)
      if (row.kind != slice_stats.CATEGORICAL or key in chosen or not row.feature
          or row.feature.startswith(('vog_', 'audit_'))
          or len(row.value) > MAX_SLICE_VALUE_CHARS):
        continue
      chosen.append(key)
  specs = []
  for feature, value in chosen[:max_slices]:
    specs.append(tfma.SlicingSpec(feature_values={feature: value}))
    specs.append(tfma.SlicingSpec(feature_values={feature: value, BUCKET_KEY: HARD_BUCKET}))
  return specs


def top_slice_specs_from(report_uri: str, max_slices: int = TOP_SLICE_SPECS,
                         splits: Optional[Sequence[str]] = None) -> List[tfma.SlicingSpec]:
  """`top_slice_specs` of the report folder at `report_uri` (e.g. the last audit's
  difficulty_report); [] for a report without slices.json (an older release).

  Raises:
    json_checks.ReportFormatError: the folder is not a readable report, naming the file.
  """
  slices = report_format.load_report(report_uri).slices
  return [] if slices is None else top_slice_specs(slices, max_slices, splits)


def _check_share(name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ValueError(f'{name}={value!r} is an accuracy bound and must be in [0, 1]')


def difficulty_eval_config(label_key: str = 'label',
                           min_accuracy: float = 0.8,
                           min_hard_accuracy: float = 0.0,
                           max_accuracy_drop: float = 0.05,
                           prediction_key: str = 'probabilities',
                           extra_slicing_specs: Sequence[tfma.SlicingSpec] = ()
                           ) -> tfma.EvalConfig:
  """EvalConfig slicing by overall, vog_bucket, vog_decile and label, with thresholds.

  Args:
    label_key: the int label feature.
    min_accuracy: lowest accuracy over all eval examples that still blesses.
    min_hard_accuracy: lowest accuracy on the `hard` bucket that still blesses; 0
      (the default) turns it off. The hard bucket is where mislabeled examples gather,
      so accuracy against the given labels there says little about the model: ranked
      by label confidence (VarianceOfGradients' default) the bucket holds the labels the
      model disagrees with, and its accuracy is near 0 by construction (0.0 on the demo
      data with 10% of labels flipped); ranked by VoG it was about 0.18. Set it only
      with rank_by='vog', far below `min_accuracy`, to catch a model that has given up
      on the hard examples.
    max_accuracy_drop: largest fall in overall accuracy against the last blessed
      model that still blesses.
    prediction_key: the serving signature's output holding class probabilities.
    extra_slicing_specs: more slices to compute metrics on, after the four above, e.g.
      `top_slice_specs_from(<the last audit's difficulty_report>)`; no thresholds apply
      to them. One that repeats a slice above is left out.

  Raises:
    ValueError: a bound outside [0, 1], an empty label_key, or an extra slicing spec
      that is not a tfma.SlicingSpec.
  """
  if not label_key:
    raise ValueError('label_key is empty; name the int label feature, e.g. "label"')
  _check_share('min_accuracy', min_accuracy)
  _check_share('min_hard_accuracy', min_hard_accuracy)
  _check_share('max_accuracy_drop', max_accuracy_drop)
  hard = tfma.SlicingSpec(feature_values={BUCKET_KEY: HARD_BUCKET})
  # `MetricConfig.threshold` would apply to every slice (each decile, each label), so
  # the overall bounds are per-slice thresholds on the overall slice too.
  accuracy = tfma.MetricConfig(
      class_name=ACCURACY,
      per_slice_thresholds=[
          tfma.PerSliceMetricThreshold(
              slicing_specs=[tfma.SlicingSpec()],
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(
                      lower_bound={'value': min_accuracy}),
                  change_threshold=tfma.GenericChangeThreshold(
                      direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                      absolute={'value': -max_accuracy_drop}))),
          tfma.PerSliceMetricThreshold(
              slicing_specs=[hard],
              threshold=tfma.MetricThreshold(
                  value_threshold=tfma.GenericValueThreshold(
                      lower_bound={'value': min_hard_accuracy}))),
      ])
  slicing_specs = [
      tfma.SlicingSpec(),
      tfma.SlicingSpec(feature_keys=[BUCKET_KEY]),
      tfma.SlicingSpec(feature_keys=[DECILE_KEY]),
      tfma.SlicingSpec(feature_keys=[label_key]),
  ]
  for spec in extra_slicing_specs:
    if not isinstance(spec, tfma.SlicingSpec):
      raise ValueError(f'extra_slicing_specs holds a {type(spec).__name__}; give '
                       'tfma.SlicingSpec objects, e.g. from top_slice_specs')
    if spec not in slicing_specs:
      slicing_specs.append(spec)
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name='serving_default',
                                  label_key=label_key,
                                  prediction_key=prediction_key,
                                  preprocessing_function_names=[])],
      slicing_specs=slicing_specs,
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          accuracy,
      ])])
