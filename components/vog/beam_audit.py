"""The VoG audit's computation as Beam transforms.

    files | ReadRecordsWithPosition -> {records, files_read}
    records | ScoreExamples -> {scored, quarantined, class_stats}

ScoreExamples is ParseAndScore | NormalizePerClass | AssignPercentiles | FlagForReview.
Checkpoints load once per worker (shared across threads); a batch goes through all K
checkpoints before the next. Every global number that comes back as a side input is
bounded: class statistics (splits x classes), quantiles (splits x 1001) and the flagged
set (`inspection_budget`). Per-example scores never travel as a side input: they are
keyed by the example's position (split, file, record index), which is also its
identity, so copies of one record are different examples. The writers
(beam_writers.py) join the scores back to the records by that position.
"""

from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.utils import shared
import numpy as np

from components.vog import examples_io
from components.vog import percentiles
from components.vog import record_files
from components.vog.examples_io import InputRecord, Quarantined

NAMESPACE = 'vog_audit'
NUM_QUANTILES = percentiles.NUM_QUANTILES


class InputFile(NamedTuple):
  """One input file of a split; `file_index` is its place in the split's sorted list."""
  split: str
  file_index: int
  path: str
  compression: str  # GZIP or UNCOMPRESSED


class FileRead(NamedTuple):
  """What reading one file gave: its record count, and the damage that stopped it early."""
  split: str
  file_index: int
  path: str
  records: int
  damage: Optional[str] = None


class ScoredExample(NamedTuple):
  """The scores of one example, identified by its position in the input."""
  split: str
  file_index: int
  record_index: int
  example_id: str
  has_example_id: bool
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

  @property
  def position(self) -> Tuple[str, int, int]:
    return self.split, self.file_index, self.record_index


ClassKey = Tuple[str, int]
ClassStats = Tuple[int, float, float]  # count, mean, population std

def _counter(name: str):
  return beam.metrics.Metrics.counter(NAMESPACE, name)


def read_records(input_file: InputFile) -> Iterable[Tuple[int, bytes]]:
  """(record index, bytes) of one input file, in order; DamagedRecordFile where broken."""
  return record_files.read_records(input_file.path, input_file.compression)


class _ReadFile(beam.DoFn):
  """Reads one file in order; its record count (and any damage) on the 'files' tag."""

  def __init__(self, progress=None):
    self._progress = progress
    self._seen = _counter('seen')

  def process(self, input_file: InputFile):
    count, damage = 0, None
    try:
      for index, serialized in read_records(input_file):
        count = index + 1
        self._seen.inc()
        yield InputRecord(input_file.split, input_file.file_index, index, serialized)
    except record_files.DamagedRecordFile as e:
      damage = str(e)
      logging.error('VoG audit cannot read past record %d: %s', count, damage)
    if self._progress is not None:
      self._progress.add('read', count)
      self._progress.add('files', 1)
    yield beam.pvalue.TaggedOutput('files', FileRead(
        input_file.split, input_file.file_index, input_file.path, count, damage))

  def teardown(self):
    if self._progress is not None:
      self._progress.flush()


class ReadRecordsWithPosition(beam.PTransform):
  """InputFile -> {'records': InputRecord, 'files': FileRead}.

  Each file is read whole, in order, by one worker, so record indices are stable
  across reads; the input is spread over workers by file.
  """

  def __init__(self, progress=None):
    super().__init__()
    self._progress = progress

  def expand(self, files):
    return (files
            | 'Spread' >> beam.Reshuffle()
            | 'Read' >> beam.ParDo(_ReadFile(self._progress)).with_outputs(
                'files', main='records').with_output_types(InputRecord))


class _ParseAndScoreBatch(beam.DoFn):
  """Parses and scores a batch with checkpoints loaded once per worker process."""

  def __init__(self, shared_handle: shared.Shared, scorer_factory, parser_factory,
               progress=None):
    self._shared = shared_handle
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress
    self._scorer = None
    self._parser = None
    self._scored = _counter('scored')
    self._quarantined = _counter('quarantined')
    self._batches = _counter('batches')

  def setup(self):
    self._scorer = self._shared.acquire(self._scorer_factory,
                                        tag=self._scorer_factory.cache_key())
    self._parser = self._parser_factory()
    self._done, self._next_log = 0, 1000

  def process(self, records: List[InputRecord]):
    batch, bad = self._parser.parse_batch(records)
    for q in bad:
      self._quarantined.inc()
      yield beam.pvalue.TaggedOutput('quarantine', q)
    if batch.records:
      yield from self._score(batch)
    self._batches.inc()
    self._done += len(records)
    if self._progress is not None:
      self._progress.add('scored', len(records))
    if self._done >= self._next_log:
      logging.info('VoG scored %d examples in this worker', self._done)
      self._next_log = self._done * 2

  def _score(self, batch: examples_io.ScorableBatch):
    labels = None
    if self._scorer.label_mode == 'label':
      labels = np.asarray(batch.labels, dtype=np.int64)
    result = self._scorer.score(batch.inputs, labels)
    for i, record in enumerate(batch.records):
      raw = float(result.vog_raw[i])
      if not np.isfinite(raw):
        self._quarantined.inc()
        yield beam.pvalue.TaggedOutput('quarantine', Quarantined(
            record.split, batch.example_ids[i], 'non-finite gradient',
            'the model produced NaN or infinite gradients for this example',
            record.serialized, record.file_index, record.record_index))
        continue
      self._scored.inc()
      yield ScoredExample(record.split, record.file_index, record.record_index,
                          batch.example_ids[i], batch.has_example_ids[i], batch.labels[i],
                          int(result.target_class[i]), int(result.predicted_class[i]), raw)

  def teardown(self):
    if self._progress is not None:
      self._progress.flush()


class ParseAndScore(beam.PTransform):
  """InputRecord -> {'scored': ScoredExample with vog_raw, 'quarantine': Quarantined}.

  `scorer_factory()` builds a VogScorer (its `cache_key()` names what it loads) and
  `parser_factory()` an ExampleParser; both run inside the workers.
  """

  def __init__(self, scorer_factory, parser_factory, batch_size: int, progress=None):
    super().__init__()
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._batch_size = batch_size
    self._progress = progress

  def expand(self, records):
    return (records
            | 'Batch' >> beam.BatchElements(min_batch_size=self._batch_size,
                                            max_batch_size=self._batch_size)
            | 'Score' >> beam.ParDo(_ParseAndScoreBatch(
                shared.Shared(), self._scorer_factory, self._parser_factory,
                self._progress)).with_outputs('quarantine', main='scored'))


class MeanStdCombineFn(beam.CombineFn):
  """(count, mean, population std) in float64, merged with Chan's parallel formula."""

  def create_accumulator(self):
    return percentiles.MeanStd()

  def add_input(self, acc, value):
    return acc.add(value)

  def merge_accumulators(self, accumulators):
    return percentiles.MeanStd.merge(accumulators)

  def extract_output(self, acc):
    return acc.result()


class NormalizePerClass(beam.PTransform):
  """ScoredExample -> (ScoredExample with vog_score, class statistics by (split, class))."""

  def __init__(self, normalize: str):
    super().__init__()
    self._normalize = normalize

  def expand(self, scored):
    from components.vog.scoring import normalize_score  # pylint: disable=g-import-not-at-top
    class_stats = (scored
                   | 'KeyByClass' >> beam.Map(
                       lambda s: ((s.split, s.target_class), s.vog_raw)
                   ).with_output_types(Tuple[ClassKey, float])
                   | 'ClassMeanStd' >> beam.CombinePerKey(MeanStdCombineFn()
                                                          ).with_output_types(
                                                              Tuple[ClassKey, ClassStats]))
    normalize = self._normalize

    def add_score(s: ScoredExample, stats: Dict[ClassKey, ClassStats]) -> ScoredExample:
      count, mean, std = stats[(s.split, s.target_class)]
      return s._replace(vog_score=normalize_score(s.vog_raw, mean, std, count, normalize))

    normalized = scored | 'Normalize' >> beam.Map(
        add_score, beam.pvalue.AsDict(class_stats)).with_output_types(ScoredExample)
    return normalized, class_stats


class AssignPercentiles(beam.PTransform):
  """ScoredExample -> ScoredExample with percentile within split, decile and bucket."""

  def __init__(self, bucket_percentiles: Sequence[float]):
    super().__init__()
    self._cuts = list(bucket_percentiles)

  def expand(self, normalized):
    quantiles = (normalized
                 | 'KeyBySplit' >> beam.Map(lambda s: (s.split, s.vog_score)
                                            ).with_output_types(Tuple[str, float])
                 | 'Quantiles' >> beam.ApproximateQuantiles.PerKey(NUM_QUANTILES))
    cuts = self._cuts

    def place(s: ScoredExample, split_quantiles) -> ScoredExample:
      p = percentiles.percentile_of(s.vog_score, split_quantiles[s.split])
      return s._replace(vog_percentile=p, vog_decile=percentiles.decile_of(p),
                        vog_bucket=percentiles.bucket_of(p, cuts))

    return normalized | 'Place' >> beam.Map(
        place, beam.pvalue.AsDict(quantiles)).with_output_types(ScoredExample)


def review_order(s: ScoredExample) -> Tuple[float, str, int, int]:
  """Highest score first; ties go to the earlier position, the same on every runner."""
  return s.vog_score, s.split, -s.file_index, -s.record_index


class FlagForReview(beam.PTransform):
  """Marks the `inspection_budget` highest scores across splits with their rank."""

  def __init__(self, inspection_budget: int):
    super().__init__()
    self._budget = inspection_budget

  def expand(self, placed):
    budget = self._budget
    ranks = (placed
             | 'Top' >> beam.combiners.Top.Of(max(budget, 1), key=review_order)
             | 'Ranks' >> beam.FlatMap(lambda rows: [
                 (t.position, rank) for rank, t in enumerate(rows[:budget], start=1)]))

    def mark(s: ScoredExample, rank_of) -> ScoredExample:
      rank = rank_of.get(s.position, 0)
      return s._replace(vog_flagged=int(rank > 0), review_rank=rank)

    return placed | 'Mark' >> beam.Map(mark, beam.pvalue.AsDict(ranks)
                                       ).with_output_types(ScoredExample)


class ScoreExamples(beam.PTransform):
  """InputRecord -> {'scored', 'quarantined', 'class_stats'}: the whole VoG computation.

  `scored` holds one final ScoredExample per scorable record (score, percentile,
  bucket, flag and review rank); `quarantined` every record that could not be scored;
  `class_stats` ((split, class), (count, mean, std)) of vog_raw.
  """

  def __init__(self, settings, scorer_factory, parser_factory, progress=None):
    super().__init__()
    self._settings = settings
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress

  def expand(self, records):
    s = self._settings
    parsed = records | 'ParseAndScore' >> ParseAndScore(
        self._scorer_factory, self._parser_factory, s.batch_size, self._progress)
    normalized, class_stats = parsed.scored | 'NormalizePerClass' >> NormalizePerClass(
        s.normalize)
    flagged = (normalized
               | 'AssignPercentiles' >> AssignPercentiles(s.bucket_percentiles)
               | 'FlagForReview' >> FlagForReview(s.inspection_budget))
    return {'scored': flagged, 'quarantined': parsed.quarantine, 'class_stats': class_stats}
