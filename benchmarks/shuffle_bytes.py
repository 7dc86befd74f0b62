"""Bytes that cross the groupings of a Beam pipeline, as its runner counted them.

    result = pipeline.run()
    result.wait_until_finish()
    found = shuffle_bytes(result, pipeline)   # {grouping step name: bytes}
    print(found.table(examples=n))

What is counted: every grouping that the FnApiRunner (the runner behind Beam
2.74's Python DirectRunner in batch) executes - each GroupByKey, whether written
as one or made by CoGroupByKey, Reshuffle, Create's reshuffle, or the GroupByKey
inside CombinePerKey, CombineGlobally, ApproximateQuantiles, Top and the like.
The runner turns each of them into a write to a grouping buffer followed by a
read; what is written there is what crosses. Its input is found in the
runner's own execution graph (rebuilt from `pipeline` with the runner's
translation phases: combiner lifting, GroupByKey expansion, flatten sinking,
fusion), so for a lifted combiner it is the (key, accumulator) pairs that the
per-bundle pre-combine emits, not the inputs of the combine. Bytes are those
of the runner's coder for that PCollection as the SDK encodes it on the data
plane: the windowed value (13 bytes of timestamp, window and pane in the
global window) around the key and value, with the length prefixes the runner
adds to coders it does not know.

How: the FnApiRunner reports, per PCollection, an element count and a sampled
byte size (`beam:metric:element_count:v1`, `beam:metric:sampled_byte_size:v1`:
the count, sum, min and max of the sizes of the elements it sampled). A
grouping's bytes are its input's element count times the mean sampled size.
Where a grouping's input is a Flatten (CoGroupByKey's is), each input of the
Flatten is estimated on its own and the estimates added, so that a few large
elements among many small ones (a copy of a summary per key, say) are not
averaged away.

Limits:
  * Sampling: each operation sizes the first 10 elements it emits, then about
    10 x ln 2 of each doubling of its count, so a PCollection of more than a
    few dozen elements is estimated, not measured. The estimate is exact where
    every element was sized (`GroupingBytes.exact`) and always lies in
    [`low`, `high`] (count x the smallest and the largest sampled size). The
    samples lean to the first elements, so where sizes drift over the run (ids
    that grow longer, say) the estimate leans to the early sizes, and where a
    few elements are much larger than the rest it can be far off.
  * Nesting: the runner sizes an element as a top-level value, the data plane
    writes it nested, so where the value's last part is bytes or a string under
    a standard coder each element is written with a length prefix (1 or 2
    bytes) more than is counted.
  * Lifting: the pre-combine runs per bundle (and flushes when its table grows
    large), so what crosses a lifted combiner depends on how the runner cut
    the input into bundles, and on another runner (Dataflow, Flink, Prism) the
    same combiner may move more or fewer accumulators.
  * Runner: only a result of the FnApiRunner is understood. For any other (the
    Prism runner that the DirectRunner tries first where it can download it,
    the BundleBasedDirectRunner it uses in streaming, Dataflow, ...), or
    without `pipeline`, the result is empty and its `note` says why.
  * Not counted: the materialisation of a Flatten's inputs or of a side input,
    and the data-plane framing of each bundle: only the grouping writes.
"""

import collections
import dataclasses
from typing import Any, Dict, Iterable, List, Optional, Tuple

DATA_OUTPUT_URN = 'beam:runner:sink:v1'
DATA_INPUT_URN = 'beam:runner:source:v1'
ELEMENT_COUNT_URN = 'beam:metric:element_count:v1'
SAMPLED_BYTE_SIZE_URN = 'beam:metric:sampled_byte_size:v1'
_WRITE_SUFFIX = '/Write'


@dataclasses.dataclass(frozen=True)
class PCollectionSize:
  """What the runner reported for one PCollection in one fused stage."""
  elements: int
  sampled: int  # how many of them were sized
  sampled_bytes: int  # their total size
  smallest: int
  largest: int

  @property
  def bytes(self) -> int:
    """The estimate: element count x the mean sampled size."""
    if not self.elements or not self.sampled:
      return 0
    return int(round(self.elements * self.sampled_bytes / self.sampled))


@dataclasses.dataclass(frozen=True)
class GroupingBytes:
  """One grouping of the runner's graph and the bytes written to it.

  Attributes:
    name: The grouping's step name, e.g. `Sum/Group` for a lifted
      `'Sum' >> beam.CombinePerKey(...)` or `CoG/CoGroupByKeyImpl/GroupByKey`.
    bytes: The estimated bytes written to the grouping (sum over `parts`).
    elements: How many elements were written (after any pre-combine).
    sampled: How many of them the runner sized.
    low: `bytes` if every element were as small as the smallest one sampled.
    high: `bytes` if every element were as large as the largest one sampled.
    keys: How many groups came out (None where the runner did not report it).
    parts: The PCollection ids estimated (the grouping's input, or the inputs
      of the Flatten that feeds it).
    lifted: True for the GroupByKey of a combiner lifted by the runner, whose
      input is the pre-combined accumulators.
  """
  name: str
  bytes: int
  elements: int
  sampled: int
  low: int
  high: int
  keys: Optional[int]
  parts: Tuple[str, ...]
  lifted: bool

  @property
  def exact(self) -> bool:
    """True where every element written was sized (no sampling error)."""
    return self.sampled >= self.elements


class ShuffleBytes(dict):
  """{grouping step name: bytes}, with the detail of each and a note.

  Attributes:
    groupings: {name: GroupingBytes}, in the order the runner executes them.
    note: Why the result is empty or partial; '' when every grouping was
      measured.
  """

  def __init__(self, groupings: Iterable[GroupingBytes] = (), note: str = ''):
    groupings = list(groupings)
    super().__init__((g.name, g.bytes) for g in groupings)
    self.groupings: Dict[str, GroupingBytes] = {g.name: g for g in groupings}
    self.note = note

  @property
  def total(self) -> int:
    return sum(self.values())

  def per_example(self, examples: int) -> float:
    """The total divided by `examples`; 0.0 for no examples."""
    return self.total / examples if examples else 0.0

  def table(self, examples: Optional[int] = None) -> str:
    """A text table: one row per grouping, largest first, and the total."""
    if not self.groupings:
      return f'no shuffle bytes measured: {self.note}'
    per = f' {"B/example":>10s}' if examples else ''
    lines = [f'{"grouping":72s} {"elements":>9s} {"sampled":>8s} {"bytes":>11s}{per}'
             f' {"bounds (min..max size)":>25s}']
    for g in sorted(self.groupings.values(), key=lambda g: -g.bytes):
      name = g.name if len(g.name) <= 72 else '...' + g.name[-69:]
      name += ' *' if g.lifted else ''
      share = f' {g.bytes / examples:10.1f}' if examples else ''
      bounds = 'exact' if g.exact else f'{g.low}..{g.high}'
      lines.append(f'{name:72s} {g.elements:9d} {g.sampled:8d} {g.bytes:11d}{share}'
                   f' {bounds:>25s}')
    share = f' {self.per_example(examples):10.1f}' if examples else ''
    lines.append(f'{"total":72s} {"":9s} {"":8s} {self.total:11d}{share}')
    if any(g.lifted for g in self.groupings.values()):
      lines.append('(* a lifted combiner: the accumulators after the per-bundle '
                   'pre-combine)')
    if self.note:
      lines.append(self.note)
    return '\n'.join(lines)


def shuffle_bytes(result: Any, pipeline: Any = None) -> ShuffleBytes:
  """The bytes written to each grouping of a finished FnApiRunner run.

  Args:
    result: What `pipeline.run()` returned, after `wait_until_finish()`.
    pipeline: The `beam.Pipeline` that was run (needed to find which
      PCollections feed the groupings in the runner's graph).

  Returns:
    A ShuffleBytes: {grouping step name: estimated bytes} summed over the
    run, with each grouping's detail in `.groupings`. Empty, with `.note`
    saying why, for a result of another runner or without `pipeline`. See the
    module docstring for what is counted and the limits of the estimate.
  """
  runner_name = type(result).__module__ + '.' + type(result).__qualname__
  if not runner_name.startswith('apache_beam.runners.portability.fn_api_runner.'):
    return ShuffleBytes(note=(
        f'the result ({runner_name}) is not from the FnApiRunner; only its '
        'per-PCollection monitoring infos and execution graph are understood'))
  if pipeline is None:
    return ShuffleBytes(note=(
        'no pipeline given: it is needed to find the PCollections that feed '
        'each grouping in the runner\'s graph'))
  sizes = _sizes_by_pcollection(result)
  if not sizes:
    return ShuffleBytes(note=('the run reported no per-PCollection element counts '
                              'or sampled byte sizes'))
  stages = _runner_stages(pipeline)
  return _measure(stages, sizes)


def _monitoring_infos_by_stage(result) -> Dict[str, List[Any]]:
  by_stage = getattr(result, '_monitoring_infos_by_stage', None)
  if isinstance(by_stage, dict):
    return {name: list(infos) for name, infos in by_stage.items()}
  return {'': list(result.monitoring_infos())}


def _sizes_by_pcollection(result) -> Dict[str, Dict[str, PCollectionSize]]:
  """{PCollection id: {fused stage name: PCollectionSize}} from the run."""
  from apache_beam.metrics import monitoring_infos  # pylint: disable=g-import-not-at-top
  counts: Dict[Tuple[str, str], int] = {}
  samples: Dict[Tuple[str, str], Tuple[int, int, int, int]] = {}
  for stage, infos in _monitoring_infos_by_stage(result).items():
    for info in infos:
      pcoll = info.labels.get('PCOLLECTION')
      if pcoll is None:
        continue
      if info.urn == ELEMENT_COUNT_URN:
        counts[(pcoll, stage)] = monitoring_infos.extract_counter_value(info)
      elif info.urn == SAMPLED_BYTE_SIZE_URN:
        samples[(pcoll, stage)] = monitoring_infos.extract_distribution(info)
  out: Dict[str, Dict[str, PCollectionSize]] = collections.defaultdict(dict)
  for (pcoll, stage), elements in counts.items():
    sampled, total, smallest, largest = samples.get((pcoll, stage), (0, 0, 0, 0))
    out[pcoll][stage] = PCollectionSize(int(elements), int(sampled), int(total),
                                        int(smallest), int(largest))
  return dict(out)


def _runner_stages(pipeline) -> list:
  """The fused stages the FnApiRunner makes of `pipeline`, as it made them to run it.

  The pipeline keeps the ids it gave its PCollections and transforms, so its
  proto, put through the runner's own preparation, names them as in the run.
  """
  # pylint: disable=g-import-not-at-top
  from apache_beam.runners import pipeline_utils
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  # pylint: enable=g-import-not-at-top
  runner = fn_runner.FnApiRunner()
  proto = pipeline.to_runner_api(default_environment=runner._default_environment)  # pylint: disable=protected-access
  proto = pipeline_utils.merge_common_environments(runner.resolve_any_environments(
      pipeline_utils.merge_superset_dep_environments(proto)))
  _, stages = runner.create_stages(proto)
  return stages


def _buffer_kind(payload: bytes) -> str:
  return payload.decode('utf-8', 'replace').split(':', 1)[0]


def _measure(stages, sizes: Dict[str, Dict[str, PCollectionSize]]) -> ShuffleBytes:
  """Finds each grouping write in `stages` and estimates what was written."""
  # buffer id -> [(write step, PCollection written)], and the PCollection read.
  writes: Dict[bytes, List[Tuple[str, str]]] = collections.defaultdict(list)
  reads: Dict[bytes, str] = {}
  for stage in stages:
    for transform in stage.transforms:
      if transform.spec.urn == DATA_OUTPUT_URN:
        for pcoll in transform.inputs.values():
          writes[transform.spec.payload].append((transform.unique_name, pcoll))
      elif transform.spec.urn == DATA_INPUT_URN:
        for pcoll in transform.outputs.values():
          reads[transform.spec.payload] = pcoll
  # A PCollection read from a materialised Flatten -> that Flatten's writes.
  flattened: Dict[str, List[Tuple[str, str]]] = {}
  for buffer_id, read_pcoll in reads.items():
    if _buffer_kind(buffer_id) != 'materialize':
      continue
    inputs = writes.get(buffer_id, [])
    if inputs and any(pcoll != read_pcoll for _, pcoll in inputs):
      flattened[read_pcoll] = inputs
  # The run's fused stages are named after the steps they hold, in an order that
  # may differ from one translation to the next; a write step names its stage.
  run_stages = sorted({stage for reported in sizes.values() for stage in reported})
  ambiguous = []

  def size_at(write: str, pcoll: str) -> Optional[PCollectionSize]:
    reported = sizes.get(pcoll)
    if not reported:
      return None
    if len(reported) == 1:
      return next(iter(reported.values()))
    # Reported by more than one stage (one wrote it, another read it back).
    marker = f'({write})'
    for stage in run_stages:
      if stage in reported and (stage == write or marker in stage):
        return reported[stage]
    ambiguous.append(write)
    return max(reported.values(), key=lambda s: (s.elements, s.sampled))

  def parts_of(write: str, pcoll: str, depth: int = 0
               ) -> List[Tuple[str, PCollectionSize]]:
    if pcoll in flattened and depth < 16:
      found = [parts_of(w, p, depth + 1) for w, p in flattened[pcoll]]
      if all(found):
        return [part for parts in found for part in parts]
    size = size_at(write, pcoll)
    return [] if size is None else [(pcoll, size)]

  groupings, missing = [], []
  for buffer_id, written in writes.items():
    if _buffer_kind(buffer_id) != 'group':
      continue
    for write, pcoll in written:
      name = write[:-len(_WRITE_SUFFIX)] if write.endswith(_WRITE_SUFFIX) else write
      parts = parts_of(write, pcoll)
      if not parts:
        missing.append(name)
        continue
      keys = None
      if buffer_id in reads and reads[buffer_id] in sizes:
        keys = max(s.elements for s in sizes[reads[buffer_id]].values())
      groupings.append(GroupingBytes(
          name=name,
          bytes=sum(s.bytes for _, s in parts),
          elements=sum(s.elements for _, s in parts),
          sampled=sum(min(s.sampled, s.elements) for _, s in parts),
          low=sum(s.elements * s.smallest for _, s in parts),
          high=sum(s.elements * s.largest for _, s in parts),
          keys=keys,
          parts=tuple(p for p, _ in parts),
          lifted=_is_lifted(stages, pcoll)))
  notes = []
  if missing:
    notes.append(f'{len(missing)} grouping(s) without a reported size, left out: '
                 + ', '.join(sorted(missing)))
  if ambiguous:
    notes.append(f'{len(ambiguous)} write(s) whose input more than one stage reported, '
                 'none of them named after the write; the largest count was taken: '
                 + ', '.join(sorted(set(ambiguous))))
  return ShuffleBytes(groupings, '; '.join(notes))


def _is_lifted(stages, pcoll: str) -> bool:
  """True when `pcoll` is the output of a combiner's pre-combine."""
  precombine = 'beam:transform:combine_per_key_precombine:v1'
  return any(t.spec.urn == precombine and pcoll in t.outputs.values()
             for stage in stages for t in stage.transforms)


def _toy_pipelines(examples: int = 10000):
  """Runs the toy pipelines; yields (title, expected bytes or None, ShuffleBytes)."""
  # pylint: disable=g-import-not-at-top
  import apache_beam as beam
  from apache_beam.coders import coders
  from apache_beam.options.pipeline_options import PipelineOptions
  from apache_beam.transforms import window
  # pylint: enable=g-import-not-at-top

  def run(build, runner='DirectRunner'):
    pipeline = beam.Pipeline(options=PipelineOptions([f'--runner={runner}']))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return shuffle_bytes(result, pipeline)

  def encoded(elements, coder) -> int:
    """Bytes of `elements` as the data plane writes them: windowed, nested."""
    impl = coders.WindowedValueCoder(coder, coders.GlobalWindowCoder()).get_impl()
    return sum(len(impl.encode_nested(window.GlobalWindows.windowed_value(e)))
               for e in elements)

  pairs = [(i % 3, b'x' * 50) for i in range(examples)]
  yield ('GroupByKey of %d (int key, 50 bytes) pairs' % examples,
         encoded(pairs, coders.TupleCoder([coders.VarIntCoder(), coders.BytesCoder()])),
         run(lambda p: (p | beam.Create(pairs, reshuffle=False)
                        | 'GBK' >> beam.GroupByKey())))
  ints = [(i % 3, i) for i in range(examples)]
  yield ('CombinePerKey(sum) of %d ints under 3 keys (lifted)' % examples, None,
         run(lambda p: (p | beam.Create(ints, reshuffle=False)
                        | 'Sum' >> beam.CombinePerKey(sum))))
  yield ('GroupByKey then sum of the same ints (not lifted)',
         encoded(ints, coders.TupleCoder([coders.VarIntCoder(), coders.VarIntCoder()])),
         run(lambda p: (p | beam.Create(ints, reshuffle=False)
                        | 'GBK' >> beam.GroupByKey()
                        | 'SumValues' >> beam.MapTuple(lambda k, v: (k, sum(v))))))
  small = [(i % 100, i) for i in range(examples)]
  big = [(0, b'y' * 100000)]
  yield ('CoGroupByKey of %d (key, int) pairs and one (key, 100 kB) pair' % examples,
         None,
         run(lambda p: {'small': p | 'Small' >> beam.Create(small, reshuffle=False),
                        'big': p | 'Big' >> beam.Create(big, reshuffle=False)}
             | 'CoG' >> beam.CoGroupByKey()))
  yield ('CombineGlobally(ToList) of %d ints (lifted)' % examples, None,
         run(lambda p: (p | beam.Create(list(range(examples)), reshuffle=False)
                        | 'ToList' >> beam.CombineGlobally(
                            beam.combiners.ToListCombineFn()).without_defaults())))
  yield ('GroupByKey on the BundleBasedDirectRunner (no such metrics)', None,
         run(lambda p: p | beam.Create(pairs[:100]) | 'GBK' >> beam.GroupByKey(),
             runner='BundleBasedDirectRunner'))


def main() -> None:
  for title, expected, found in _toy_pipelines():
    print(f'\n== {title}')
    print(found.table())
    if expected is not None:
      print(f'expected, encoding the input by hand with the same coders: {expected} '
            f'bytes; measured {found.total} ({found.total / expected:.3f}x)')


if __name__ == '__main__':
  main()
