"""The VoG audit's computation as Beam transforms.

    files | ReadRecordBatches -> {batches, files}
    batches | ScoreExamples -> {scored, quarantined, class_stats}

ScoreExamples is ParseAndScore | NormalizePerClass | AssignPercentiles | FlagForReview.
Checkpoints load once per worker (shared across threads); a batch goes through all K
checkpoints before the next. The global numbers are bounded: class statistics (splits x
classes), quantiles (splits x 1001) and the flagged set (`inspection_budget`); each is
copied to every input file and joined with that file's scores (ApplyGlobalValue), so
no side input is used and no worker holds more than one file's scores. An example is
identified by its position (split, file, record index), so copies of one record are
different examples. The writers (beam_writers.py) join the scores back to the records
by that position.

Only primitives that every runner executes alike are used: each DoFn has one output
(a transform that yields two kinds of things tags them and `split_by_tag` separates
them), nothing is emitted from `finish_bundle` (records are batched per file by the
reader), and writing is done by DoFns that write whole files under their final names.
Beam 2.74's Dask runner, for one, drops tagged outputs, `finish_bundle` output and
every leaf of a pipeline but the last, and computes side inputs built by a combine
from part of the data.
"""

from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

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


Tagged = Tuple[str, Any]  # (tag, value): one DoFn output that holds several kinds of things


def split_by_tag(tagged, types: Dict[str, Any]) -> Dict[str, beam.PCollection]:
  """(tag, value) pairs -> {tag: PCollection of values typed types[tag]}.

  Refuses (ValueError, failing the pipeline) a tag that is not in `types`.
  """
  known = set(types)

  def check(pair: Tagged) -> Tagged:
    if pair[0] not in known:
      raise ValueError(f'unexpected output tag {pair[0]!r}; expected one of {sorted(known)}')
    return pair

  checked = tagged | 'CheckTags' >> beam.Map(check)
  return {tag: (checked
                | f'Keep[{tag}]' >> beam.Filter(lambda pair, t=tag: pair[0] == t)
                | f'Value[{tag}]' >> beam.Map(lambda pair: pair[1]).with_output_types(kind))
          for tag, kind in types.items()}


def read_records(input_file: InputFile) -> Iterable[Tuple[int, bytes]]:
  """(record index, bytes) of one input file, in order; DamagedRecordFile where broken."""
  return record_files.read_records(input_file.path, input_file.compression)


class _ReadFile(beam.DoFn):
  """Reads one file in order: ('batch', [InputRecord...]) and then ('file', FileRead)."""

  def __init__(self, batch_size: int, progress=None):
    self._batch_size = batch_size
    self._progress = progress
    self._seen = _counter('seen')

  def process(self, input_file: InputFile) -> Iterable[Tagged]:
    count, damage, batch = 0, None, []
    try:
      for index, serialized in read_records(input_file):
        count = index + 1
        batch.append(InputRecord(input_file.split, input_file.file_index, index,
                                 serialized))
        if len(batch) == self._batch_size:
          self._seen.inc(len(batch))
          yield 'batch', batch
          batch = []
    except record_files.DamagedRecordFile as e:
      damage = str(e)
      logging.error('VoG audit cannot read past record %d: %s', count, damage)
    if batch:
      self._seen.inc(len(batch))
      yield 'batch', batch
    if self._progress is not None:
      self._progress.add('read', count)
      self._progress.add('files', 1)
      self._progress.flush()
    yield 'file', FileRead(input_file.split, input_file.file_index, input_file.path, count,
                           damage)


@beam.typehints.with_input_types(InputFile)
class ReadRecordBatches(beam.PTransform):
  """InputFile -> {'batches': [InputRecord...], 'files': FileRead}.

  Each file is read whole, in order, by one worker, so record indices are stable
  across reads, and cut into batches of `batch_size` records; the input is spread
  over workers by file.
  """

  def __init__(self, batch_size: int, progress=None):
    super().__init__()
    self._batch_size = batch_size
    self._progress = progress

  def expand(self, files):
    tagged = (files
              | 'Spread' >> beam.Reshuffle()
              | 'Read' >> beam.ParDo(_ReadFile(self._batch_size, self._progress)))
    parts = split_by_tag(tagged, {'batch': List[InputRecord], 'file': FileRead})
    return {'batches': parts['batch'], 'files': parts['file']}


class _ParseAndScoreBatch(beam.DoFn):
  """Parses and scores a batch: ('scored', ScoredExample) or ('quarantined', Quarantined).

  Checkpoints are loaded once per worker process and shared across its threads.
  """

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

  def process(self, records: List[InputRecord]) -> Iterable[Tagged]:
    batch, bad = self._parser.parse_batch(records)
    for q in bad:
      self._quarantined.inc()
      yield 'quarantined', q
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
      # As stored (float32): the score and percentile follow from the written vog_raw,
      # and copies of a record scored in different batches do not differ by batch noise.
      raw = float(np.float32(result.vog_raw[i]))
      if not np.isfinite(raw):
        self._quarantined.inc()
        yield 'quarantined', Quarantined(
            record.split, batch.example_ids[i], 'non-finite gradient',
            'the model produced NaN or infinite gradients for this example',
            record.serialized, record.file_index, record.record_index)
        continue
      self._scored.inc()
      yield 'scored', ScoredExample(
          record.split, record.file_index, record.record_index, batch.example_ids[i],
          batch.has_example_ids[i], batch.labels[i], int(result.target_class[i]),
          int(result.predicted_class[i]), raw)

  def teardown(self):
    if self._progress is not None:
      self._progress.flush()


@beam.typehints.with_input_types(List[InputRecord])
class ParseAndScore(beam.PTransform):
  """[InputRecord...] -> {'scored': ScoredExample with vog_raw, 'quarantined': Quarantined}.

  `scorer_factory()` builds a VogScorer (its `cache_key()` names what it loads) and
  `parser_factory()` an ExampleParser; both run inside the workers.
  """

  def __init__(self, scorer_factory, parser_factory, progress=None):
    super().__init__()
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress

  def expand(self, batches):
    tagged = batches | 'Score' >> beam.ParDo(_ParseAndScoreBatch(
        shared.Shared(), self._scorer_factory, self._parser_factory, self._progress))
    return split_by_tag(tagged, {'scored': ScoredExample, 'quarantined': Quarantined})


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


FileKey = Tuple[str, int]  # (split, file index)


def _apply_per_file(element, fn):
  """One file's examples with the broadcast value: fn(example, value) for each."""
  _, grouped = element
  values = list(grouped['value'])
  examples = list(grouped['examples'])
  if examples and len(values) != 1:
    raise RuntimeError(f'{len(values)} copies of a global value reached the examples of '
                       'one input file; expected exactly 1')
  for example in examples:
    yield fn(example, values[0])


class ApplyGlobalValue(beam.PTransform):
  """(examples, a one-element PCollection) -> fn(example, value) for every example.

  A bounded global value (class statistics, quantiles, the flagged set) meets the
  examples through a join, not a side input: it is copied once for each input file
  and grouped with that file's examples by (split, file index), so a worker holds one
  file's examples at a time. Some runners (Beam 2.74's Dask runner) compute side
  inputs inside each task and get combined values wrong there; a join is a shuffle,
  which every runner does alike.
  """

  def __init__(self, value, fn: Callable, file_keys: Sequence[FileKey],
               output_type: Any = Any):
    super().__init__()
    self._value = value
    self._fn = fn
    self._file_keys = list(file_keys)
    self._output_type = output_type

  def expand(self, examples):
    file_keys, fn = self._file_keys, self._fn
    return ({'examples': examples | 'KeyByFile' >> beam.Map(
                 lambda e: ((e.split, e.file_index), e)),
             'value': self._value | 'CopyPerFile' >> beam.FlatMap(
                 lambda v: [(key, v) for key in file_keys])}
            | 'GroupByFile' >> beam.CoGroupByKey()
            | 'Apply' >> beam.FlatMap(_apply_per_file, fn).with_output_types(
                self._output_type))


def _as_dict(label: str, pairs):
  """(key, value) pairs -> one dict (bounded inputs only)."""
  return pairs | label >> beam.CombineGlobally(
      beam.combiners.ToDictCombineFn()).without_defaults()


@beam.typehints.with_input_types(ScoredExample)
class NormalizePerClass(beam.PTransform):
  """ScoredExample -> (ScoredExample with vog_score, class statistics by (split, class))."""

  def __init__(self, normalize: str, file_keys: Sequence[FileKey]):
    super().__init__()
    self._normalize = normalize
    self._file_keys = list(file_keys)

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

    normalized = scored | 'Normalize' >> ApplyGlobalValue(
        _as_dict('AllClassStats', class_stats), add_score, self._file_keys, ScoredExample)
    return normalized, class_stats


@beam.typehints.with_input_types(ScoredExample)
@beam.typehints.with_output_types(ScoredExample)
class AssignPercentiles(beam.PTransform):
  """ScoredExample -> ScoredExample with percentile within split, decile and bucket."""

  def __init__(self, bucket_percentiles: Sequence[float], file_keys: Sequence[FileKey]):
    super().__init__()
    self._cuts = list(bucket_percentiles)
    self._file_keys = list(file_keys)

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

    return normalized | 'Place' >> ApplyGlobalValue(
        _as_dict('AllQuantiles', quantiles), place, self._file_keys, ScoredExample)


def review_order(s: ScoredExample) -> Tuple[float, str, int, int]:
  """Highest score first; ties go to the earlier position, the same on every runner."""
  return s.vog_score, s.split, -s.file_index, -s.record_index


@beam.typehints.with_input_types(ScoredExample)
@beam.typehints.with_output_types(ScoredExample)
class FlagForReview(beam.PTransform):
  """Marks the `inspection_budget` highest scores across splits with their rank."""

  def __init__(self, inspection_budget: int, file_keys: Sequence[FileKey]):
    super().__init__()
    self._budget = inspection_budget
    self._file_keys = list(file_keys)

  def expand(self, placed):
    budget = self._budget
    ranks = (placed
             | 'Top' >> beam.CombineGlobally(beam.combiners.TopCombineFn(
                 max(budget, 1), key=review_order)).without_defaults()
             | 'Ranks' >> beam.Map(lambda rows: {
                 t.position: rank for rank, t in enumerate(rows[:budget], start=1)}))

    def mark(s: ScoredExample, rank_of) -> ScoredExample:
      rank = rank_of.get(s.position, 0)
      return s._replace(vog_flagged=int(rank > 0), review_rank=rank)

    return placed | 'Mark' >> ApplyGlobalValue(ranks, mark, self._file_keys, ScoredExample)


@beam.typehints.with_input_types(List[InputRecord])
class ScoreExamples(beam.PTransform):
  """[InputRecord...] -> {'scored', 'quarantined', 'class_stats'}: the VoG computation.

  `scored` holds one final ScoredExample per scorable record (score, percentile,
  bucket, flag and review rank); `quarantined` every record that could not be scored;
  `class_stats` ((split, class), (count, mean, std)) of vog_raw.
  """

  def __init__(self, settings, scorer_factory, parser_factory,
               file_keys: Sequence[FileKey], progress=None):
    super().__init__()
    self._settings = settings
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._file_keys = list(file_keys)
    self._progress = progress

  def expand(self, batches):
    s, files = self._settings, self._file_keys
    parsed = batches | 'ParseAndScore' >> ParseAndScore(
        self._scorer_factory, self._parser_factory, self._progress)
    normalized, class_stats = parsed['scored'] | 'NormalizePerClass' >> NormalizePerClass(
        s.normalize, files)
    flagged = (normalized
               | 'AssignPercentiles' >> AssignPercentiles(s.bucket_percentiles, files)
               | 'FlagForReview' >> FlagForReview(s.inspection_budget, files))
    return {'scored': flagged, 'quarantined': parsed['quarantined'],
            'class_stats': class_stats}
