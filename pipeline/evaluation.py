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
"""

import tensorflow_model_analysis as tfma

from components.vog import vocabulary as vocab

ACCURACY = 'SparseCategoricalAccuracy'
BUCKET_KEY = vocab.VOG_BUCKET
DECILE_KEY = vocab.VOG_DECILE
HARD_BUCKET = vocab.HARD


def _check_share(name: str, value: float) -> None:
  if not 0.0 <= value <= 1.0:
    raise ValueError(f'{name}={value!r} is an accuracy bound and must be in [0, 1]')


def difficulty_eval_config(label_key: str = 'label',
                           min_accuracy: float = 0.8,
                           min_hard_accuracy: float = 0.0,
                           max_accuracy_drop: float = 0.05,
                           prediction_key: str = 'probabilities') -> tfma.EvalConfig:
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

  Raises:
    ValueError: a bound outside [0, 1], or an empty label_key.
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
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name='serving_default',
                                  label_key=label_key,
                                  prediction_key=prediction_key,
                                  preprocessing_function_names=[])],
      slicing_specs=[
          tfma.SlicingSpec(),
          tfma.SlicingSpec(feature_keys=[BUCKET_KEY]),
          tfma.SlicingSpec(feature_keys=[DECILE_KEY]),
          tfma.SlicingSpec(feature_keys=[label_key]),
      ],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'),
          accuracy,
      ])])
