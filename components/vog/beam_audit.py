"""The VoG audit's computation as Beam transforms.

    files | ReadRecordBatches -> {batches, files}
    batches | ScoreExamples -> {scored, quarantined, ranking, class_stats}

ScoreExamples is ParseAndScore | SummarizeScores.
Checkpoints load once per worker (shared across threads); a batch goes through all K
checkpoints before the next. The global numbers (class statistics, quantiles, the flagged
set) are combined per class of the raw scores into one bounded Ranking
(SummarizeScores); no side input is used. An example is identified by its position
(split, file, record index), so copies of one record are different examples. The
writers (beam_writers.py) join the raw scores and the Ranking back to the records by
input file, in the one shuffle the scores go through.

Only primitives that every runner executes alike are used: each DoFn has one output
(a transform that yields two kinds of things tags them and `split_by_tag` separates
them), nothing is emitted from `finish_bundle` (records are batched per file by the
reader), and writing is done by DoFns that write whole files under their final names.
Beam 2.74's Dask runner, for one, drops tagged outputs, `finish_bundle` output and
every leaf of a pipeline but the last, and computes side inputs built by a combine
from part of the data.
"""

import re
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.utils import shared
import numpy as np

from components.vog import examples_io
from components.vog import percentiles
from components.vog import progress as progress_lib
from components.vog import record_files
from components.vog import signals as signals_lib
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
  # 1 when vog_raw is above the hard cut among the split's raw scores (the hard bucket as
  # it would be without class normalisation): what the drift's per-class hard share counts.
  raw_hard: int = 0
  # The label-error signals of signals.SIGNALS, in that order, from the same checkpoints'
  # logits; empty with label_mode='predicted', where they carry no information.
  signals: Tuple[float, ...] = ()
  # What `rank_by` ranks: vog_raw, or the chosen signal's suspicion (higher = more likely
  # mislabeled). The percentile, bucket, flag and review rank are of this value.
  rank_value: float = 0.0
  # For a flagged example: the names (AGREEMENT_NAMES) whose own split-wide rank puts it
  # in the hard bucket too.
  agreeing: Tuple[str, ...] = ()
  # The sources of its gradient whose sigma was largest, largest first: (name, mean sigma)
  # of a float input, an element `name[j]` of a vector input, or an Embedding layer
  # (scoring.BatchScore.input_sigma); empty for a model with one source.
  top_sigma: Tuple[Tuple[str, float], ...] = ()

  @property
  def position(self) -> Tuple[str, int, int]:
    return self.split, self.file_index, self.record_index


TOP_SIGMA = 5  # how many of an example's gradient sources its flagged row names
ClassKey = Tuple[str, int]
ClassStats = Tuple[int, float, float]  # count, mean, population std
SignalKey = Tuple[str, str]  # (split, name in AGREEMENT_NAMES)

VOG = 'vog'
# What `rank_by` may name besides VoG: each signal by its field name less `audit_`.
SIGNAL_NAMES = tuple(name[len('audit_'):] for name in signals_lib.SIGNALS)
# What a flagged example's `agreeing` may list: each signal, and VoG (vog_raw).
AGREEMENT_NAMES = SIGNAL_NAMES + (VOG,)


def suspicions(vog_raw: float, values: Sequence[float]) -> Dict[str, float]:
  """{name: suspicion} of one example for AGREEMENT_NAMES, higher = more likely
  mislabeled; `values` are its signals in signals.SIGNALS order ({} without them)."""
  if not values:
    return {}
  out = {short: float(signals_lib.ORIENTATION[field] * value)
         for short, field, value in zip(SIGNAL_NAMES, signals_lib.SIGNALS, values)}
  out[VOG] = float(vog_raw)
  return out


def rank_value_of(rank_by: str, vog_raw: float, values: Sequence[float]) -> float:
  """The value `rank_by` ranks for one example (see ScoredExample.rank_value)."""
  if rank_by == VOG:
    return vog_raw
  if not values:
    raise ValueError(f'rank_by={rank_by!r} needs the label-error signals, which are left '
                     "out with label_mode='predicted'; use rank_by='vog'")
  return suspicions(vog_raw, values)[rank_by]

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
      self._progress.add(progress_lib.READ, count)
      self._progress.add(progress_lib.FILES, 1)
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
  """Parses and scores a batch: ('scored', ScoredExample) or ('quarantined', Quarantined),
  and per scored batch ('suspicions', ((split, name), [value...])) for each of
  AGREEMENT_NAMES (label mode only).

  Checkpoints are loaded once per worker process and shared across its threads.
  """

  def __init__(self, shared_handle: shared.Shared, scorer_factory, parser_factory,
               progress=None, rank_by: str = VOG):
    self._rank_by = rank_by
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
    values = batch_signals(result) if self._scorer.label_mode == 'label' else None
    collected: Dict[SignalKey, List[float]] = {}
    tops = top_sigma(result.input_sigma, len(batch.records))
    for i, record in enumerate(batch.records):
      # As stored (float32): the score and percentile follow from the written vog_raw,
      # and copies of a record scored in different batches do not differ by batch noise.
      raw = float(np.float32(result.vog_raw[i]))
      if not np.isfinite(raw):
        kind, what = 'non-finite gradient', 'gradients'
      elif values is not None and not np.isfinite(values[i]).all():
        kind, what = 'non-finite output', 'outputs'
      else:
        kind = None
      if kind:
        self._quarantined.inc()
        yield 'quarantined', Quarantined(
            record.split, batch.example_ids[i], kind,
            f'the model produced NaN or infinite {what} for this example',
            record.serialized, record.file_index, record.record_index)
        continue
      self._scored.inc()
      found = () if values is None else tuple(float(v) for v in values[i])
      for name, value in suspicions(raw, found).items():
        collected.setdefault((record.split, name), []).append(value)
      yield 'scored', ScoredExample(
          record.split, record.file_index, record.record_index, batch.example_ids[i],
          batch.has_example_ids[i], batch.labels[i], int(result.target_class[i]),
          int(result.predicted_class[i]), raw, signals=found,
          rank_value=rank_value_of(self._rank_by, raw, found), top_sigma=tops[i])
    for key, batch_values in collected.items():
      yield 'suspicions', (key, batch_values)

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


def top_sigma(input_sigma: Dict[str, np.ndarray], n: int
              ) -> List[Tuple[Tuple[str, float], ...]]:
  """Per example, its TOP_SIGMA sources with the largest mean sigma, largest first (ties
  by name); nothing for every example when the model has one source. A vector input
  counts by its elements (`name[j]`), not as a whole, when it has them."""
  names = sorted(input_sigma)
  elements = {n.split('[', 1)[0] for n in names if n.endswith(']')}
  names = [n for n in names if n not in elements]
  if len(names) < 2:
    return [()] * n
  table = np.stack([np.asarray(input_sigma[k], dtype=np.float64) for k in names], axis=1)
  out = []
  for row in table:
    order = sorted(range(len(names)), key=lambda j: (-row[j] if np.isfinite(row[j])
                                                     else np.inf, names[j]))[:TOP_SIGMA]
    out.append(tuple((names[j], float(np.float32(row[j]))) for j in order
                     if np.isfinite(row[j])))
  return out


def batch_signals(result) -> np.ndarray:
  """[N, len(SIGNALS)] signal values of a scored batch (signals.py, from every
  checkpoint's logits and the label); a row of NaN where an example's logits are not
  finite, so that it is quarantined rather than the batch failing."""
  logits = result.logits
  n = logits.shape[1]
  out = np.full((n, len(signals_lib.SIGNALS)), np.nan)
  finite = np.isfinite(logits).all(axis=(0, 2))
  if finite.any():
    found = signals_lib.compute_signals(logits[:, finite], result.target_class[finite])
    for j, name in enumerate(signals_lib.SIGNALS):
      out[finite, j] = found[name]
  return out


@beam.typehints.with_input_types(List[InputRecord])
class ParseAndScore(beam.PTransform):
  """[InputRecord...] -> {'scored': ScoredExample with vog_raw and rank_value,
  'quarantined': Quarantined, 'suspicions': ((split, name), [suspicion...]) per batch}.

  `scorer_factory()` builds a VogScorer (its `cache_key()` names what it loads) and
  `parser_factory()` an ExampleParser; both run inside the workers. `rank_by` is VOG
  or one of SIGNAL_NAMES (VogSettings.ranked_by).
  """

  def __init__(self, scorer_factory, parser_factory, progress=None, rank_by: str = VOG):
    super().__init__()
    self._scorer_factory = scorer_factory
    self._parser_factory = parser_factory
    self._progress = progress
    self._rank_by = rank_by

  def expand(self, batches):
    tagged = batches | 'Score' >> beam.ParDo(_ParseAndScoreBatch(
        shared.Shared(), self._scorer_factory, self._parser_factory, self._progress,
        self._rank_by))
    return split_by_tag(tagged, {'scored': ScoredExample, 'quarantined': Quarantined,
                                 'suspicions': Tuple[SignalKey, List[float]]})


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


def _raw(kv: Tuple[ClassKey, ScoredExample]) -> Tuple[ClassKey, float]:
  return kv[0], kv[1].vog_raw


def _ranked(kv: Tuple[ClassKey, ScoredExample]) -> Tuple[ClassKey, float]:
  return kv[0], kv[1].rank_value


def _candidate(kv: Tuple[ClassKey, ScoredExample]
               ) -> Tuple[ClassKey, percentiles.Candidate]:
  return kv[0], (kv[1].rank_value, kv[1].position)


def _highest(c: percentiles.Candidate):
  return percentiles.review_key(c[0], c[1])


def _lowest(c: percentiles.Candidate):
  return percentiles.review_key(-c[0], c[1])


def _earliest(c: percentiles.Candidate):
  return percentiles.review_key(0.0, c[1])


class SummarizeScores(beam.PTransform):
  """ScoredExample (rank_value, vog_raw) and the batches' suspicions ->
  {'ranking': one percentiles.Ranking, 'class_stats'}.

  Everything is combined per (split, class) of the ranked values, by combiners that
  runners lift ahead of their shuffle: count, mean and std; approximate quantiles; and
  the candidates for review (the class's `inspection_budget` highest values, for
  `abs-class` its lowest too, and its earliest positions, which rank first among equal
  values). When VoG is not what is ranked, vog_raw's count, mean and std per class are
  kept too (for vog_score). Each signal's suspicion gets split-wide quantiles from whole
  batches (for `agreeing`). The Ranking built from them places any example of the audit
  and holds the flagged set: bounded by splits x (classes x (1,001 + 3 x budget) +
  signals x 1,001), whatever N is. `class_stats` is ((split, class), (count, mean, std))
  of vog_raw.
  """

  def __init__(self, normalize: str, bucket_percentiles: Sequence[float],
               inspection_budget: int, rank_by: str = VOG, vog_normalize: str = ''):
    super().__init__()
    self._normalize = normalize
    self._cuts = tuple(bucket_percentiles)
    self._budget = inspection_budget
    self._rank_by = rank_by
    self._vog_normalize = vog_normalize or normalize

  def expand(self, inputs):
    scored, suspicions_pc = inputs['scored'], inputs['suspicions']
    normalize, cuts, budget = self._normalize, self._cuts, self._budget
    rank_by, vog_normalize = self._rank_by, self._vog_normalize
    k = max(budget, 1)
    by_class = scored | 'KeyByClass' >> beam.Map(
        lambda s: ((s.split, s.target_class), s)
    ).with_output_types(Tuple[ClassKey, ScoredExample])
    raw = by_class | 'Raw' >> beam.Map(_raw).with_output_types(Tuple[ClassKey, float])
    vog_stats = raw | 'ClassMeanStd' >> beam.CombinePerKey(
        MeanStdCombineFn()).with_output_types(Tuple[ClassKey, ClassStats])
    if rank_by == VOG:
      ranked, ranked_stats = raw, vog_stats
    else:
      ranked = by_class | 'Ranked' >> beam.Map(_ranked).with_output_types(
          Tuple[ClassKey, float])
      ranked_stats = ranked | 'RankedMeanStd' >> beam.CombinePerKey(
          MeanStdCombineFn()).with_output_types(Tuple[ClassKey, ClassStats])
    candidates = by_class | 'Candidates' >> beam.Map(_candidate)
    parts = {
        'stats': ranked_stats,
        'quantiles': ranked | 'ClassQuantiles' >> beam.ApproximateQuantiles.PerKey(
            NUM_QUANTILES),
        'highest': candidates | 'Highest' >> beam.CombinePerKey(
            beam.combiners.TopCombineFn(k, key=_highest)),
        'earliest': candidates | 'Earliest' >> beam.CombinePerKey(
            beam.combiners.TopCombineFn(k, key=_earliest)),
    }
    if rank_by != VOG:
      parts['vog_stats'] = vog_stats
    if normalize == 'abs-class':
      parts['lowest'] = candidates | 'Lowest' >> beam.CombinePerKey(
          beam.combiners.TopCombineFn(k, key=_lowest))

    def per_class(kv):
      key, grouped = kv
      (count, mean, std), = grouped['stats']
      (quantiles,) = grouped['quantiles']
      rows = [c for name in ('highest', 'lowest', 'earliest')
              for top in grouped.get(name, ()) for c in top]
      vog = tuple(grouped['vog_stats'])[0] if 'vog_stats' in grouped else None
      return 'class', key, (percentiles.ClassScores(count, mean, std, tuple(quantiles)),
                            rows, vog)

    def ranking(parts_list) -> percentiles.Ranking:
      per_class_values = {key: value for kind, key, value in parts_list if kind == 'class'}
      quantiles = {key: value for kind, key, value in parts_list if kind == 'signal'}
      classes = {key: stats for key, (stats, _, _) in per_class_values.items()}
      rows = {key: rows for key, (_, rows, _) in per_class_values.items()}
      vog = None if rank_by == VOG else {key: v for key, (_, _, v)
                                         in per_class_values.items()}
      return percentiles.Ranking(
          normalize, cuts, classes,
          percentiles.rank_for_review(classes, rows, normalize, budget),
          vog_stats=vog, vog_normalize=vog_normalize, signal_quantiles=quantiles)

    classes_pc = (parts
                  | 'GroupByClass' >> beam.CoGroupByKey()
                  | 'PerClass' >> beam.Map(per_class))
    signal_pc = (suspicions_pc
                 | 'SignalQuantiles' >> beam.ApproximateQuantiles.PerKey(
                     NUM_QUANTILES, input_batched=True)
                 | 'TagSignals' >> beam.Map(lambda kv: ('signal', kv[0], tuple(kv[1]))))
    result = ((classes_pc, signal_pc)
              | 'ClassesAndSignals' >> beam.Flatten()
              | 'AllParts' >> beam.CombineGlobally(
                  beam.combiners.ToListCombineFn()).without_defaults()
              | 'Ranking' >> beam.Map(ranking).with_output_types(percentiles.Ranking))
    return {'ranking': result, 'class_stats': vog_stats}


@beam.typehints.with_input_types(List[InputRecord])
class ScoreExamples(beam.PTransform):
  """[InputRecord...] -> {'scored', 'quarantined', 'ranking', 'class_stats'}: the VoG audit.

  `scored` holds a ScoredExample with vog_raw and rank_value per scorable record;
  `ranking` the one percentiles.Ranking that gives each of them its vog_score,
  percentile, decile, bucket, review rank and agreeing signals (the writer applies it,
  record by record, as it writes);
  `quarantined` every record that could not be scored; `class_stats` ((split, class),
  (count, mean, std)) of vog_raw.
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
        self._scorer_factory, self._parser_factory, self._progress, s.ranked_by)
    summary = parsed | 'SummarizeScores' >> SummarizeScores(
        s.rank_normalize, s.bucket_percentiles, s.inspection_budget, s.ranked_by,
        s.normalize)
    return {'scored': parsed['scored'], 'quarantined': parsed['quarantined'],
            'ranking': summary['ranking'], 'class_stats': summary['class_stats']}
