"""The VoG audit as Beam transforms.

    records | ParseForScoring | ScoreWithCheckpoints | NormalizePerClass
            | AssignPercentiles | FlagForReview
    records (read again) | WriteScoredExamples(scores as a side input)

Checkpoints load once per worker (shared across threads); a batch goes through all K
checkpoints before the next. Class statistics, percentiles and the flagged set are
global and arrive as side inputs. Only small score records cross those global steps;
the examples themselves stream through a second read and are matched to their scores
by a fingerprint of their bytes, so memory does not grow with the examples' size.
"""

import base64
import json
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.utils import shared
import numpy as np

from components.vog import examples_io
from components.vog import tallies
from components.vog.settings import VogSettings

NAMESPACE = 'vog_audit'
# Work files AuditExamples writes for the driver, which turns them into the report.
QUARANTINE_FILE = 'quarantine.jsonl'
FLAGGED_RECORDS_FILE = 'flagged_records.jsonl'
NUM_QUANTILES = 1001  # percentiles resolved to 0.1


class ScoredExample(NamedTuple):
  """The scores of one example; `record_key` is the fingerprint of its bytes."""
  split: str
  example_id: str
  record_key: str
  label: Optional[int]
  target_class: int
  predicted_class: int
  vog_raw: float
  vog_score: float = 0.0
  vog_percentile: float = 0.0
  vog_decile: int = 0
  vog_bucket: str = ''
  vog_flagged: int = 0
  review_rank: int = 0
  has_example_id: bool = True


class _Counted(beam.DoFn):
  """Passes elements through, counting them in a Beam counter."""

  def __init__(self, name: str):
    self._counter = beam.metrics.Metrics.counter(NAMESPACE, name)

  def process(self, element):
    self._counter.inc()
    yield element


class ParseForScoring(beam.PTransform):
  """(split, serialized) -> ScorableExample, with Quarantined on the 'quarantine' tag."""

  def __init__(self, parser_factory: Callable[[], examples_io.ExampleParser]):
    super().__init__()
    self._parser_factory = parser_factory

  class _Parse(beam.DoFn):

    def __init__(self, parser_factory):
      self._parser_factory = parser_factory
      self._parser = None

    def setup(self):
      self._parser = self._parser_factory()

    def process(self, element):
      split, serialized = element
      parsed = self._parser.parse(split, serialized)
      if isinstance(parsed, examples_io.Quarantined):
        yield beam.pvalue.TaggedOutput('quarantine', parsed)
      else:
        yield parsed

  def expand(self, records):
    return (records
            | 'CountSeen' >> beam.ParDo(_Counted('seen'))
            | 'Parse' >> beam.ParDo(self._Parse(self._parser_factory)).with_outputs(
                'quarantine', main='scorable'))


class _ScoreBatch(beam.DoFn):
  """Scores batches with checkpoints loaded once per worker process."""

  def __init__(self, shared_handle: shared.Shared, scorer_factory):
    self._shared = shared_handle
    self._scorer_factory = scorer_factory
    self._scorer = None
    self._scored = beam.metrics.Metrics.counter(NAMESPACE, 'scored')
    self._batches = beam.metrics.Metrics.counter(NAMESPACE, 'batches')

  def setup(self):
    self._scorer = self._shared.acquire(self._scorer_factory,
                                        tag=self._scorer_factory.cache_key())
    self._done, self._next_log = 0, 1000

  def process(self, batch: List[examples_io.ScorableExample]):
    names = self._scorer.input_names
    inputs = {n: np.stack([e.inputs[n] for e in batch]) for n in names}
    labels = None
    if self._scorer.label_mode == 'label':
      labels = np.asarray([e.label for e in batch], dtype=np.int64)
    result = self._scorer.score(inputs, labels)
    self._batches.inc()
    self._done += len(batch)
    if self._done >= self._next_log:
      logging.info('VoG scored %d examples in this worker', self._done)
      self._next_log = self._done * 2
    for i, e in enumerate(batch):
      raw = float(result.vog_raw[i])
      if not np.isfinite(raw):
        yield beam.pvalue.TaggedOutput('quarantine', examples_io.Quarantined(
            e.split, e.example_id, 'non-finite gradient',
            'the model produced NaN or infinite gradients for this example',
            e.serialized))
        continue
      self._scored.inc()
      yield ScoredExample(e.split, e.example_id, examples_io.fingerprint(e.serialized),
                          e.label, int(result.target_class[i]),
                          int(result.predicted_class[i]), raw,
                          has_example_id=e.has_example_id)


class ScoreWithCheckpoints(beam.PTransform):
  """ScorableExample -> ScoredExample (vog_raw), non-finite results quarantined.

  `scorer_factory()` builds a VogScorer; its `cache_key()` names what it loads.
  """

  def __init__(self, scorer_factory, batch_size: int):
    super().__init__()
    self._scorer_factory = scorer_factory
    self._batch_size = batch_size

  def expand(self, scorable):
    return (scorable
            | 'Batch' >> beam.BatchElements(min_batch_size=self._batch_size,
                                            max_batch_size=self._batch_size)
            | 'Score' >> beam.ParDo(_ScoreBatch(shared.Shared(), self._scorer_factory)
                                    ).with_outputs('quarantine', main='scored'))


class MeanStdCombineFn(beam.CombineFn):
  """(count, mean, population std) in float64, merged with Chan's parallel formula."""

  def create_accumulator(self):
    return 0, 0.0, 0.0

  def add_input(self, acc, value):
    count, mean, m2 = acc
    count += 1
    delta = value - mean
    mean += delta / count
    return count, mean, m2 + delta * (value - mean)

  def merge_accumulators(self, accumulators):
    count, mean, m2 = 0, 0.0, 0.0
    for n, m, s in accumulators:
      if n == 0:
        continue
      total = count + n
      delta = m - mean
      mean += delta * n / total
      m2 += s + delta * delta * count * n / total
      count = total
    return count, mean, m2

  def extract_output(self, acc):
    count, mean, m2 = acc
    return count, mean, float(np.sqrt(m2 / count)) if count else 0.0


class NormalizePerClass(beam.PTransform):
  """Adds vog_score; returns (scored, class statistics keyed by (split, class))."""

  def __init__(self, normalize: str):
    super().__init__()
    self._normalize = normalize

  def expand(self, scored):
    from components.vog.scoring import normalize_score
    class_stats = (scored
                   | 'KeyByClass' >> beam.Map(
                       lambda s: ((s.split, s.target_class), s.vog_raw))
                   | 'ClassMeanStd' >> beam.CombinePerKey(MeanStdCombineFn()))
    normalize = self._normalize

    def add_score(s, stats):
      count, mean, std = stats[(s.split, s.target_class)]
      return s._replace(vog_score=normalize_score(s.vog_raw, mean, std, count, normalize))

    normalized = scored | 'Normalize' >> beam.Map(add_score,
                                                   beam.pvalue.AsDict(class_stats))
    return normalized, class_stats


def percentile_of(score: float, quantiles: Sequence[float]) -> float:
  """Share (0-100) of the split at or below `score`, read off its quantile boundaries."""
  position = np.searchsorted(np.asarray(quantiles), score, side='right') - 1
  return float(np.clip(100.0 * position / (len(quantiles) - 1), 0.0, 100.0))


def bucket_of(percentile: float, cuts: Sequence[float]) -> str:
  if percentile <= cuts[0]:
    return 'easy'
  return 'medium' if percentile <= cuts[1] else 'hard'


def decile_of(percentile: float) -> int:
  return int(np.clip(np.ceil(percentile / 10.0), 1, 10))


class AssignPercentiles(beam.PTransform):
  """Adds percentile within split, decile and bucket from approximate quantiles."""

  def __init__(self, bucket_percentiles: Sequence[float]):
    super().__init__()
    self._cuts = list(bucket_percentiles)

  def expand(self, normalized):
    quantiles = (normalized
                 | 'KeyBySplit' >> beam.Map(lambda s: (s.split, s.vog_score))
                 | 'Quantiles' >> beam.ApproximateQuantiles.PerKey(NUM_QUANTILES))
    cuts = self._cuts

    def place(s, split_quantiles):
      p = percentile_of(s.vog_score, split_quantiles[s.split])
      return s._replace(vog_percentile=p, vog_decile=decile_of(p),
                        vog_bucket=bucket_of(p, cuts))

    return normalized | 'Place' >> beam.Map(place, beam.pvalue.AsDict(quantiles))


def _review_order(s: ScoredExample) -> Tuple[float, str, str]:
  # Deterministic across runners: ties broken by split and id.
  return s.vog_score, s.split, s.example_id


class FlagForReview(beam.PTransform):
  """Marks the `inspection_budget` highest scores across splits with their rank."""

  def __init__(self, inspection_budget: int):
    super().__init__()
    self._budget = inspection_budget

  def expand(self, placed):
    budget = self._budget
    ranks = (placed
             | 'Top' >> beam.combiners.Top.Of(max(budget, 1), key=_review_order)
             | 'Ranks' >> beam.FlatMap(lambda rows: [
                 ((t.split, t.record_key), rank)
                 for rank, t in enumerate(rows[:budget], start=1)]))

    def mark(s, rank_of):
      rank = rank_of.get((s.split, s.record_key), 0)
      return s._replace(vog_flagged=int(rank > 0), review_rank=rank)

    return placed | 'Mark' >> beam.Map(mark, beam.pvalue.AsDict(ranks))


def _attach_scores(record: Tuple[str, bytes], scores: Dict[Tuple[str, str], ScoredExample]):
  split, serialized = record
  score = scores.get((split, examples_io.fingerprint(serialized)))
  if score is not None:  # Records without a score are in quarantine.jsonl.
    yield score, serialized


def _flagged_line(pair: Tuple[ScoredExample, bytes]) -> str:
  s, serialized = pair
  return json.dumps({
      'rank': s.review_rank, 'example_id': s.example_id, 'split': s.split,
      'label': s.label, 'predicted_class': s.predicted_class,
      'target_class': s.target_class, 'vog_score': s.vog_score, 'vog_raw': s.vog_raw,
      'vog_percentile': s.vog_percentile, 'vog_bucket': s.vog_bucket,
      'record_base64': base64.b64encode(serialized).decode('ascii')})


class WriteScoredExamples(beam.PTransform):
  """Writes each split's examples, VoG fields added, to <dir>/Split-<name>/*.gz.

  Takes (records, final scores); also writes the flagged examples with their bytes
  to `flagged_records_path` for the review page.
  """

  def __init__(self, output_dir: str, splits: Sequence[str], example_id_key: str,
               flagged_records_path: str):
    super().__init__()
    self._output_dir = output_dir
    self._splits = list(splits)
    self._example_id_key = example_id_key
    self._flagged_records_path = flagged_records_path

  def expand(self, inputs):
    records, scores = inputs
    splits, key = self._splits, self._example_id_key
    keyed = scores | 'KeyByRecord' >> beam.Map(lambda s: ((s.split, s.record_key), s))
    joined = records | 'AttachScores' >> beam.FlatMap(_attach_scores,
                                                      beam.pvalue.AsDict(keyed))
    _ = (joined
         | 'Flagged' >> beam.Filter(lambda pair: pair[0].vog_flagged)
         | 'FlaggedLines' >> beam.Map(_flagged_line)
         | 'WriteFlagged' >> beam.io.WriteToText(self._flagged_records_path,
                                                 shard_name_template=''))
    parts = joined | 'BySplit' >> beam.Partition(
        lambda pair, n: splits.index(pair[0].split), len(splits))
    for split, part in zip(splits, parts):
      _ = (part
           | f'Serialize[{split}]' >> beam.MapTuple(
               lambda s, serialized: examples_io.with_vog_features(
                   serialized, key, s.example_id, s._asdict(), s.has_example_id))
           | f'Write[{split}]' >> beam.io.WriteToTFRecord(
               os.path.join(self._output_dir, f'Split-{split}', 'data_tfrecord'),
               file_name_suffix='.gz'))
    return joined


class AuditExamples(beam.PTransform):
  """The whole audit; writes scored examples and the work files of the report.

  Takes a function that reads (split, serialized) records into a pipeline (it is
  called twice: once to score, once to write). Writes scored examples under
  `scored_examples_dir`, and QUARANTINE_FILE, FLAGGED_RECORDS_FILE and
  tallies.TALLIES_FILE under `work_dir`.
  """

  def __init__(self, settings: VogSettings, splits: Sequence[str],
               read_records: Callable[[beam.Pipeline, str], beam.PCollection],
               parser_factory: Callable[[], examples_io.ExampleParser],
               scorer_factory, scored_examples_dir: str, work_dir: str):
    super().__init__()
    self._settings = settings
    self._splits = list(splits)
    self._read_records = read_records
    self._parser_factory = parser_factory
    self._scorer_factory = scorer_factory
    self._scored_examples_dir = scored_examples_dir
    self._work_dir = work_dir

  def expand(self, pipeline):
    s = self._settings
    records = self._read_records(pipeline, 'ToScore')
    parsed = records | 'ParseForScoring' >> ParseForScoring(self._parser_factory)
    scored = parsed.scorable | 'ScoreWithCheckpoints' >> ScoreWithCheckpoints(
        self._scorer_factory, s.batch_size)
    normalized, class_stats = (scored.scored
                               | 'NormalizePerClass' >> NormalizePerClass(s.normalize))
    placed = normalized | 'AssignPercentiles' >> AssignPercentiles(s.bucket_percentiles)
    flagged = placed | 'FlagForReview' >> FlagForReview(s.inspection_budget)
    _ = ((self._read_records(pipeline, 'ToWrite'), flagged)
         | 'WriteScoredExamples' >> WriteScoredExamples(
             self._scored_examples_dir, self._splits, s.example_id_key,
             os.path.join(self._work_dir, FLAGGED_RECORDS_FILE)))
    quarantined = ((parsed.quarantine, scored.quarantine)
                   | 'AllQuarantined' >> beam.Flatten()
                   | 'CountQuarantined' >> beam.ParDo(_Counted('quarantined')))
    _ = (quarantined
         | 'QuarantineLines' >> beam.Map(lambda q: json.dumps(q.to_json()))
         | 'WriteQuarantine' >> beam.io.WriteToText(
             os.path.join(self._work_dir, QUARANTINE_FILE), shard_name_template=''))
    return ((records, flagged, quarantined, class_stats)
            | 'WriteAuditTallies' >> tallies.WriteAuditTallies(
                os.path.join(self._work_dir, tallies.TALLIES_FILE)))
