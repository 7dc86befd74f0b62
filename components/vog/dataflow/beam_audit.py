"""The VoG audit's computation as Beam transforms.

    units | ReadRecordBatches -> {batches, files}
    batches | ScoreExamples -> {scored, quarantined, ranking, class_stats}

ScoreExamples is ParseAndScore | SummarizeScores.
Checkpoints load once per worker (shared across threads); a batch goes through all K
checkpoints before the next. From there a batch stays one columnar record
(score_batch.ScoredBatch), never one Python object per example. Each batch also emits
its partials of the global numbers (BatchPartials: per class the moments, the values
for a quantile sketch and its candidates for review; per signal its suspicions), which
combiners merge per key into one bounded Ranking (SummarizeScores): no key groups more
than one partial per batch, on runners that lift combiners and on those that do not,
and no side input is used. An example is identified by its position (split, work unit,
index in the unit's stream of records; see WorkUnit), so copies of one record are
different examples. The writers (beam_writers.py) join the scored batches and the
Ranking back to the records by work unit, in the one shuffle the scores go through.

Only primitives that every runner executes alike are used: each DoFn has one output
(a transform that yields two kinds of things tags them and `split_by_tag` separates
them), nothing is emitted from `finish_bundle` (records are batched per unit by the
reader), and writing is done by DoFns that write whole files under their final names.
Beam 2.74's Dask runner, for one, drops tagged outputs, `finish_bundle` output and
every leaf of a pipeline but the last, and computes side inputs built by a combine
from part of the data.
"""

import re
from typing import (Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

from absl import logging
import apache_beam as beam
from apache_beam.utils import shared
import numpy as np

from components.vog.inputs import examples_io
from components.vog.compute import percentiles
from components.vog.dataflow import progress as progress_lib
from components.vog.inputs import record_files
from components.vog import vocabulary as vocab
from components.vog.dataflow import score_batch
from components.vog.inputs.examples_io import InputRecord, Quarantined

NAMESPACE = 'vog_audit'
NUM_QUANTILES = percentiles.NUM_QUANTILES


class InputFile(NamedTuple):
  """One input file of a split; `file_index` is its place in the split's sorted list.

  A record longer than `max_record_bytes` (VogSettings.max_record_bytes; None: no
  limit of its own) is quarantined by the reader without being read into memory.
  `compression` None is found from the file's first bytes when it is read; `size` is
  its length in bytes as listed (None: not listed).
  """
  split: str
  file_index: int
  path: str
  compression: Optional[str]  # GZIP, UNCOMPRESSED, or None: found when read
  max_record_bytes: Optional[int] = None
  size: Optional[int] = None


class WorkUnit(NamedTuple):
  """A run of a split's input files, next to each other in its sorted list, that one
  worker reads one after another as one stream of records and writes as one output
  shard (a score table part, a scored copy, a quarantine and a history shard).

  Inside the dataflow a record's position is (split, `unit_index`, its index in that
  stream): `InputRecord.file_index` holds the unit, `record_index` the running index.
  The order of those positions is the order of (file, record), since the units follow
  the sorted files, so ranks and ties do not depend on how the files were grouped. The
  writers turn a position back into the input file and its record (FileRead's
  `first_record`) for the score table.
  """
  split: str
  unit_index: int
  files: Tuple[InputFile, ...]


# A split's files are grouped into work units of about UNIT_BYTES, or of its size over
# UNIT_TARGET where that is smaller (so a split of many small files still gives that
# many units to spread over workers), and of at most UNIT_MAX_FILES files. A file above
# the size is a unit of its own: a TFRecord file is read from its start (gzip streams do
# not seek, and an uncompressed one has no marker to find a record from the middle, nor
# the record's index there), so one file is always one reader.
UNIT_BYTES = 64 << 20
UNIT_TARGET = 64
UNIT_MAX_FILES = 1000


def work_units(files: Sequence[InputFile], max_bytes: Optional[int] = None,
               target: Optional[int] = None, max_files: Optional[int] = None
               ) -> List[WorkUnit]:
  """A split's `files` (sorted, with sizes; one split) grouped into WorkUnits in order.

  With the files laid end to end and cut into slots of min(max_bytes, total / target)
  bytes, a unit holds the files whose middle byte falls in one slot, at most
  `max_files` of them: so there are at most `target` units (more only for `max_files`),
  a unit holds at most a slot and one file, and a file larger than a slot is a unit of
  its own. A file of unknown size counts as `max_bytes`. None: UNIT_BYTES, UNIT_TARGET,
  UNIT_MAX_FILES.
  """
  if not files:
    return []
  max_bytes = UNIT_BYTES if max_bytes is None else max_bytes
  target = UNIT_TARGET if target is None else target
  max_files = UNIT_MAX_FILES if max_files is None else max_files
  sizes = [max_bytes if f.size is None else f.size for f in files]
  cap = max(1, min(max_bytes, -(-sum(sizes) // max(1, target))))
  units: List[List[InputFile]] = []
  start, slot = 0, None
  for input_file, size in zip(files, sizes):
    middle = (start + size // 2) // cap
    start += size
    if middle != slot or len(units[-1]) >= max_files:
      units.append([])
      slot = middle
    units[-1].append(input_file)
  return [WorkUnit(files[0].split, i, tuple(unit)) for i, unit in enumerate(units)]


class FileRead(NamedTuple):
  """What reading one file gave: its record count, and the damage that stopped it early.

  `unit_index` is its work unit, and `first_record` the running index of its first
  record in that unit's stream (-1 and 0 outside a unit).
  """
  split: str
  file_index: int
  path: str
  records: int
  damage: Optional[str] = None
  unit_index: int = -1
  first_record: int = 0


ClassKey = Tuple[str, int]
ClassStats = Tuple[int, float, float]  # count, mean, population std

VOG = vocab.VOG


class BatchPartials(NamedTuple):
  """What one scored batch contributes to the audit's global numbers, per (split,
  class) of its examples: the ranked value's moments, its values (for the class's
  quantile sketch) and candidates for review (with their suspicions, in label mode),
  vog_raw's moments when VoG is not what is ranked. One of each per key and batch, so
  no runner groups more than one per batch."""
  moments: List[Tuple[ClassKey, percentiles.MeanStd]]
  vog_moments: List[Tuple[ClassKey, percentiles.MeanStd]]
  values: List[Tuple[ClassKey, List[float]]]
  candidates: List[Tuple[ClassKey, percentiles.Candidates]]


def batch_partials(batch: score_batch.ScoredBatch, rank_by: str, budget: int,
                   two_sided: bool) -> BatchPartials:
  """The BatchPartials of one scored batch (see ScoreExamples)."""
  ranked = score_batch.rank_values(batch, rank_by)
  suspicions = score_batch.suspicion_matrix(batch)
  out = BatchPartials([], [], [], [])
  k = max(budget, 1)
  for c in np.unique(batch.target_class).tolist():
    members = batch.target_class == c
    key = (batch.split, int(c))
    values = ranked[members]
    out.moments.append((key, percentiles.MeanStd.of(values)))
    if rank_by != VOG:
      out.vog_moments.append((key, percentiles.MeanStd.of(batch.vog_raw[members])))
    out.values.append((key, values.tolist()))
    out.candidates.append((key, percentiles.batch_candidates(
        values, batch.split, batch.file_index, batch.record_index[members], k, two_sided,
        suspicions[members])))
  return out


def _counter(name: str):
  return beam.metrics.Metrics.counter(NAMESPACE, name)


Tagged = Tuple[str, Any]  # (tag, value): one DoFn output that holds several kinds of things


def split_by_tag(tagged, types: Dict[str, Any], label: str = ''
                 ) -> Dict[str, beam.PCollection]:
  """(tag, value) pairs -> {tag: PCollection of values typed types[tag]}.

  Refuses (ValueError, failing the pipeline) a tag that is not in `types`. `label`
  prefixes the step names, for a second split inside one transform.
  """
  known = set(types)

  def check(pair: Tagged) -> Tagged:
    if pair[0] not in known:
      raise ValueError(f'unexpected output tag {pair[0]!r}; expected one of {sorted(known)}')
    return pair

  checked = tagged | f'{label}CheckTags' >> beam.Map(check)
  return {tag: (checked
                | f'{label}Keep[{tag}]' >> beam.Filter(lambda pair, t=tag: pair[0] == t)
                | f'{label}Value[{tag}]' >> beam.Map(lambda pair: pair[1]
                                                    ).with_output_types(kind))
          for tag, kind in types.items()}


def read_records(input_file: InputFile
                 ) -> Iterable[Tuple[int, Union[bytes, record_files.OversizedRecord]]]:
  """(record index, bytes) of one input file, in order; DamagedRecordFile where broken.

  A record above the file's `max_record_bytes` comes as a record_files.OversizedRecord
  instead of its bytes (it was never scored, so a second read passes over it too).
  """
  return record_files.read_records(input_file.path, input_file.compression,
                                   input_file.max_record_bytes)


UnitRecord = Tuple[int, InputFile, int, Union[bytes, record_files.OversizedRecord]]


def read_unit(unit: WorkUnit, on_file_read: Optional[Callable[[FileRead], None]] = None
              ) -> Iterator[UnitRecord]:
  """(running index, input file, index in that file, bytes or OversizedRecord) of every
  record of a unit: its files one after another, in order.

  A damaged file ends where its damage starts and the next file follows; `on_file_read`
  gets each file's FileRead (its count, its damage) once the file is done.
  """
  first = 0
  for input_file in unit.files:
    count, damage = 0, None
    try:
      for index, record in read_records(input_file):
        count = index + 1
        yield first + index, input_file, index, record
    except record_files.DamagedRecordFile as e:
      damage = str(e)
    if on_file_read is not None:
      on_file_read(FileRead(unit.split, input_file.file_index, input_file.path, count,
                            damage, unit.unit_index, first))
    elif damage is not None:
      logging.error('VoG audit could not read %s again in full: %s', input_file.path,
                    damage)
    first += count


OVERSIZED = 'record too large'  # the quarantine kind of a record above max_record_bytes


def oversized(unit: WorkUnit, position: int, input_file: InputFile, index: int,
              record: record_files.OversizedRecord) -> Quarantined:
  """The quarantine entry of a record the reader did not keep: named by its file and
  place in it (its bytes, and so its id, were never held), with its size and the limit."""
  return Quarantined(input_file.split, f'{input_file.path}#{index}', OVERSIZED,
                     f'record {index} of {input_file.path}: {record.detail}', b'',
                     unit.unit_index, position)


class _ReadUnit(beam.DoFn):
  """Reads one work unit in order: ('batch', [InputRecord...]) of up to batch_size
  records (a batch may span the unit's files), ('quarantined', Quarantined) for each
  record above max_record_bytes, and ('file', FileRead) for each of its files."""

  def __init__(self, batch_size: int, progress=None):
    self._batch_size = batch_size
    self._progress = progress
    self._seen = _counter('seen')
    self._quarantined = _counter('quarantined')

  def process(self, unit: WorkUnit) -> Iterable[Tagged]:
    batch: List[InputRecord] = []
    done: List[FileRead] = []
    for position, input_file, index, serialized in read_unit(unit, done.append):
      while done:
        yield self._file_read(done.pop(0))
      if isinstance(serialized, record_files.OversizedRecord):
        logging.warning('VoG audit quarantines record %d of %s unread: %s', index,
                        input_file.path, serialized.detail)
        self._seen.inc()
        self._quarantined.inc()
        if self._progress is not None:
          self._progress.add(progress_lib.SCORED, 1)
        yield 'quarantined', oversized(unit, position, input_file, index, serialized)
        continue
      batch.append(InputRecord(unit.split, unit.unit_index, position, serialized))
      if len(batch) == self._batch_size:
        self._seen.inc(len(batch))
        yield 'batch', batch
        batch = []
    if batch:
      self._seen.inc(len(batch))
      yield 'batch', batch
    for read in done:
      yield self._file_read(read)
    if self._progress is not None:
      self._progress.flush()

  def _file_read(self, read: FileRead) -> Tagged:
    if read.damage is not None:
      logging.error('VoG audit cannot read past record %d: %s', read.records, read.damage)
    if self._progress is not None:
      self._progress.add(progress_lib.READ, read.records)
      self._progress.add(progress_lib.FILES, 1)
    return 'file', read


@beam.typehints.with_input_types(WorkUnit)
class ReadRecordBatches(beam.PTransform):
  """WorkUnit -> {'batches': [InputRecord...], 'files': FileRead, 'quarantined':
  Quarantined}.

  Each unit is read whole, in order, by one worker, so positions are stable across
  reads, and cut into batches of `batch_size` records; the input is spread over
  workers by unit. A record above its file's `max_record_bytes` is quarantined here,
  unread (OVERSIZED), and never reaches a batch.
  """

  def __init__(self, batch_size: int, progress=None):
    super().__init__()
    self._batch_size = batch_size
    self._progress = progress

  def expand(self, units):
    tagged = (units
              | 'Spread' >> beam.Reshuffle()
              | 'Read' >> beam.ParDo(_ReadUnit(self._batch_size, self._progress)))
    parts = split_by_tag(tagged, {'batch': List[InputRecord], 'file': FileRead,
                                  'quarantined': Quarantined})
    return {'batches': parts['batch'], 'files': parts['file'],
            'quarantined': parts['quarantined']}


class _ParseAndScoreBatch(beam.DoFn):
  """Parses and scores a batch: ('quarantined', Quarantined) for each record that
  cannot be scored, and for the others one ('scored', ScoredBatch) and one
  ('partials', BatchPartials).

  Checkpoints are loaded once per worker process and shared across its threads.
  """

  def __init__(self, shared_handle: shared.Shared, scorer_factory, parser_factory,
               progress=None, rank_by: str = VOG, inspection_budget: int = 0,
               two_sided: bool = False):
    self._rank_by = rank_by
    self._budget = inspection_budget
    self._two_sided = two_sided
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
      self._progress.add(progress_lib.SCORED, len(records))
    if self._done >= self._next_log:
      logging.info('VoG scored %d examples in this worker', self._done)
      self._next_log = self._done * 2

  def _score(self, batch: examples_io.ScorableBatch):
    for part, result, refused in self._score_or_split(batch):
      if refused is not None:
        record = part.records[0]
        self._quarantined.inc()
        yield 'quarantined', Quarantined(
            record.split, part.example_ids[0], 'model refused input', refused,
            record.serialized, record.file_index, record.record_index)
      else:
        yield from self._emit(part, result)

  def _score_or_split(self, batch: examples_io.ScorableBatch):
    """(part, BatchScore, None) for the whole batch; when the model refuses it (an id
    beyond an Embedding's vocabulary, say), each record alone, and (record, None, why)
    for each one it refuses, so that one bad record costs only itself."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
      yield batch, self._scorer.score(batch.inputs, self._labels(batch)), None
      return
    except tf.errors.InvalidArgumentError as e:
      logging.warning('The model refused a batch of %d examples (%s); scoring them one '
                      'by one', len(batch.records), _first_line(e.message))
    for i in range(len(batch.records)):
      single = examples_io.ScorableBatch(
          batch.records[i:i + 1], batch.example_ids[i:i + 1], batch.has_example_ids[i:i + 1],
          {k: v[i:i + 1] for k, v in batch.inputs.items()}, batch.labels[i:i + 1])
      try:
        yield single, self._scorer.score(single.inputs, self._labels(single)), None
      except tf.errors.InvalidArgumentError as e:
        yield single, None, f'the model cannot take this example: {_first_line(e.message)}'

  def _labels(self, batch: examples_io.ScorableBatch) -> Optional[np.ndarray]:
    if self._scorer.label_mode == 'label':
      return np.asarray(batch.labels, dtype=np.int64)
    return None

  def _emit(self, batch: examples_io.ScorableBatch, result):
    n = len(batch.records)
    if self._scorer.label_mode == 'label':
      signals = score_batch.signal_matrix(result.logits, result.target_class)
    else:
      signals = np.zeros((n, 0), dtype=np.float32)
    # As stored (float32): the score and percentile follow from the written vog_raw,
    # and copies of a record scored in different batches do not differ by batch noise.
    raw = np.asarray(result.vog_raw, dtype=np.float32)
    bad_gradient = ~np.isfinite(raw)
    bad_output = ~bad_gradient & ~np.isfinite(signals).all(axis=1)
    for i in np.flatnonzero(bad_gradient | bad_output).tolist():
      record = batch.records[i]
      kind, what = (('non-finite gradient', 'gradients') if bad_gradient[i] else
                    ('non-finite output', 'outputs'))
      self._quarantined.inc()
      yield 'quarantined', Quarantined(
          record.split, batch.example_ids[i], kind,
          f'the model produced NaN or infinite {what} for this example',
          record.serialized, record.file_index, record.record_index)
    keep = ~(bad_gradient | bad_output)
    if not keep.any():
      return
    first = batch.records[0]
    scored = score_batch.ScoredBatch(
        first.split, first.file_index, [r.record_index for r in batch.records],
        batch.example_ids, batch.has_example_ids,
        [-1 if label is None else label for label in batch.labels],
        result.target_class, result.predicted_class, raw, signals,
        score_batch.top_sigma(result.input_sigma, n))
    if not keep.all():
      scored = scored.take(keep)
    self._scored.inc(len(scored))
    yield 'scored', scored
    yield 'partials', batch_partials(scored, self._rank_by, self._budget, self._two_sided)

  def teardown(self):
    if self._progress is not None:
      self._progress.flush()


def _first_line(message: str) -> str:
  """What TensorFlow's error says went wrong (e.g. `indices[0,0] = 3 is not in [0, 3)`),
  without its stack of graph nodes and source lines, bounded."""
  message = re.sub(r'\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]', '', message)
  lines = [line.strip() for line in message.splitlines()]
  useful = [line for line in lines if line and not line.startswith(
      ('Graph execution error', 'Detected at node', 'File ', 'Traceback'))]
  return (useful[-1] if useful else lines[0] if lines else 'no detail')[:300]


@beam.typehints.with_input_types(List[InputRecord])
class ParseAndScore(beam.PTransform):
  """[InputRecord...] -> {'scored': ScoredBatch, 'quarantined': Quarantined,
  'partials': BatchPartials}, one ScoredBatch and one BatchPartials per batch.

  `scorer_factory()` builds a VogScorer (its `cache_key()` names what it loads) and
  `parser_factory()` an ExampleParser; both run inside the workers. `rank_by` is VOG
  or one of vocab.SIGNAL_NAMES (VogSettings.ranked_by); `inspection_budget` and `two_sided`
  (abs-class normalisation) say how many candidates for review each batch keeps.
  """

  def __init__(self, scorer_factory, parser_factory, progress=None, rank_by: str = VOG,
               inspection_budget: int = 0, two_sided: bool = False):
    super().__init__()
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress
    self._rank_by = rank_by
    self._budget = inspection_budget
    self._two_sided = two_sided

  def expand(self, batches):
    tagged = batches | 'Score' >> beam.ParDo(_ParseAndScoreBatch(
        shared.Shared(), self._scorer_factory, self._parser_factory, self._progress,
        self._rank_by, self._budget, self._two_sided))
    return split_by_tag(tagged, {'scored': score_batch.ScoredBatch,
                                 'quarantined': Quarantined, 'partials': BatchPartials})


class MeanStdCombineFn(beam.CombineFn):
  """MeanStd partials -> (count, mean, population std) in float64, merged with Chan's
  parallel formula."""

  def create_accumulator(self):
    return percentiles.MeanStd()

  def add_input(self, acc, value: percentiles.MeanStd):
    return percentiles.MeanStd.merge([acc, value])

  def merge_accumulators(self, accumulators):
    return percentiles.MeanStd.merge(accumulators)

  def extract_output(self, acc):
    return acc.result()


class CandidatesCombineFn(beam.CombineFn):
  """Candidates for review -> the `k` highest, earliest and (`two_sided`) lowest of
  them all (percentiles.select_candidates, on columns): bounded by 3k."""

  def __init__(self, k: int, two_sided: bool):
    super().__init__()
    self._k = k
    self._two_sided = two_sided

  def create_accumulator(self):
    return None

  def add_input(self, acc, candidates):
    return percentiles.select_candidates([acc, candidates], self._k, self._two_sided)

  def merge_accumulators(self, accumulators):
    found = [acc for acc in accumulators if acc is not None]
    return (percentiles.select_candidates(found, self._k, self._two_sided)
            if found else None)

  def extract_output(self, acc):
    return [] if acc is None else acc.rows()


def _flat(field: str):
  return lambda partials: getattr(partials, field)


class SummarizeScores(beam.PTransform):
  """BatchPartials -> {'ranking': one percentiles.Ranking, 'class_stats'}.

  Each batch's partials are combined per (split, class) of the ranked values, by
  combiners that runners lift ahead of their shuffle: count, mean and std; approximate
  quantiles (from whole batches); and the candidates for review (each class's
  `inspection_budget` highest values, for `abs-class` its lowest too, and its earliest
  positions, which rank first among equal values). When VoG is not what is ranked,
  vog_raw's count, mean and std per class are kept too (for vog_score). The Ranking
  built from them places any example of the audit and holds the flagged set with its
  suspicions (for `agreeing`, which the writers count exactly): bounded by splits x
  classes x (1,001 + 3 x budget x (1 + names)) numbers, whatever N is.
  `class_stats` is ((split, class), (count, mean, std)) of vog_raw.
  """

  def __init__(self, normalize: str, bucket_percentiles: Sequence[float],
               inspection_budget: int, rank_by: str = VOG, vog_normalize: str = ''):
    super().__init__()
    self._normalize = normalize
    self._cuts = tuple(bucket_percentiles)
    self._budget = inspection_budget
    self._rank_by = rank_by
    self._vog_normalize = vog_normalize or normalize

  def expand(self, partials):
    normalize, cuts, budget = self._normalize, self._cuts, self._budget
    rank_by, vog_normalize = self._rank_by, self._vog_normalize
    ranked_stats = (partials
                    | 'Moments' >> beam.FlatMap(_flat('moments'))
                    | 'ClassMeanStd' >> beam.CombinePerKey(MeanStdCombineFn()))
    if rank_by == VOG:
      vog_stats = ranked_stats
    else:
      vog_stats = (partials
                   | 'VogMoments' >> beam.FlatMap(_flat('vog_moments'))
                   | 'VogMeanStd' >> beam.CombinePerKey(MeanStdCombineFn()))
    parts = {
        'stats': ranked_stats,
        'quantiles': (partials
                      | 'Values' >> beam.FlatMap(_flat('values'))
                      | 'ClassQuantiles' >> beam.ApproximateQuantiles.PerKey(
                          NUM_QUANTILES, input_batched=True)),
        'candidates': (partials
                       | 'Candidates' >> beam.FlatMap(_flat('candidates'))
                       | 'TopCandidates' >> beam.CombinePerKey(CandidatesCombineFn(
                           max(budget, 1), normalize == 'abs-class'))),
    }
    if rank_by != VOG:
      parts['vog_stats'] = vog_stats

    def per_class(kv):
      key, grouped = kv
      (count, mean, std), = grouped['stats']
      (quantiles,) = grouped['quantiles']
      (rows,) = grouped['candidates']
      vog = tuple(grouped['vog_stats'])[0] if 'vog_stats' in grouped else None
      return 'class', key, (percentiles.ClassScores(count, mean, std, tuple(quantiles)),
                            rows, vog)

    def ranking(parts_list) -> percentiles.Ranking:
      per_class_values = {key: value for _, key, value in parts_list}
      classes = {key: stats for key, (stats, _, _) in per_class_values.items()}
      rows = {key: rows for key, (_, rows, _) in per_class_values.items()}
      vog = None if rank_by == VOG else {key: v for key, (_, _, v)
                                         in per_class_values.items()}
      ranks = percentiles.rank_for_review(classes, rows, normalize, budget)
      flagged = {tuple(c[1]): c[2] for candidates in rows.values() for c in candidates
                 if tuple(c[1]) in ranks}
      return percentiles.Ranking(normalize, cuts, classes, ranks, vog_stats=vog,
                                 vog_normalize=vog_normalize, flagged_suspicions=flagged)

    result = (parts
              | 'GroupByClass' >> beam.CoGroupByKey()
              | 'PerClass' >> beam.Map(per_class)
              | 'AllParts' >> beam.CombineGlobally(
                  beam.combiners.ToListCombineFn()).without_defaults()
              | 'Ranking' >> beam.Map(ranking).with_output_types(percentiles.Ranking))
    return {'ranking': result, 'class_stats': vog_stats}


@beam.typehints.with_input_types(List[InputRecord])
class ScoreExamples(beam.PTransform):
  """[InputRecord...] -> {'scored', 'quarantined', 'ranking', 'class_stats'}: the VoG audit.

  `scored` holds one ScoredBatch (vog_raw, signals, classes, positions) per batch;
  `ranking` the one percentiles.Ranking that gives each of its examples its vog_score,
  percentile, decile, bucket, review rank and agreeing signals (the writer applies it
  to a whole input file at once); `quarantined` every record that could not be scored;
  `class_stats` ((split, class), (count, mean, std)) of vog_raw.
  """

  def __init__(self, settings, scorer_factory, parser_factory, progress=None):
    super().__init__()
    self._settings = settings
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress

  def expand(self, batches):
    s = self._settings
    parsed = batches | 'ParseAndScore' >> ParseAndScore(
        self._scorer_factory, self._parser_factory, self._progress, s.ranked_by,
        s.inspection_budget, s.rank_normalize == 'abs-class')
    summary = parsed['partials'] | 'SummarizeScores' >> SummarizeScores(
        s.rank_normalize, s.bucket_percentiles, s.inspection_budget, s.ranked_by,
        s.normalize)
    return {'scored': parsed['scored'], 'quarantined': parsed['quarantined'],
            'ranking': summary['ranking'], 'class_stats': summary['class_stats']}
