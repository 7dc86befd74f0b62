"""Where the component's time goes per example: each step of the record path, timed alone.

    python -m benchmarks.record_work [--examples 4000] [--output bench_output]

On synthetic 32x32x3 images and the benchmark's small CNN with 5 checkpoints (the same
as `make bench`), one input file goes through the steps the audit takes for it, each
timed alone, in microseconds per example of CPU time (time.process_time, every thread
of the process) and of wall time:

  read          reading and un-gzipping the records with verified framing
                (record_files.read_records);
  parse         parsing them a batch per call (ExampleParser.parse_batch);
  gradients     the compiled gradient function of every checkpoint over each batch,
                tensors already made (the loop of the limit in vog_throughput);
  vog moments   the rest of VogScorer.score: the batch's tensors, the running mean and
                variance of the gradients over the checkpoints, the sigma per source
                (VogScorer.score's time less the gradients');
  scored batch  the batch's signals and top sources, its ScoredBatch, and
                beam_audit.batch_partials;
  to the writer a ScoredBatch pickled and read back, as it crosses the grouping by file;
  place         the file's batches joined and placed at once (score_batch.concat,
                percentiles.Ranking.place_file through beam_writers._placed_columns);
  flagged rows  the file's flagged examples' report rows (beam_writers._flagged_rows);
  tally         the file's counts for the summary (audit_summary.file_counts);
  score table   its Parquet shard (score_table.write_shard);
  history       its history lines and shard (beam_writers.history_lines,
                drift.write_history_lines);
and, for a split that is copied into scored_examples (`copy_splits`):
  vog suffixes  the VoG fields' bytes of every example (examples_io.vog_feature_suffixes);
  copy read     the file read again;
  copy write    each record with its suffix framed and gzip-written (level 1).

The Ranking that places the file is combined here from the batches' partials outside
the timings (exact quantiles in place of Beam's approximate ones); Beam's own work (its
combiners, the shuffle's bookkeeping, bundles) is not in any step.
`record_work_us_per_example` is every step but the gradients, for a copied split;
`record_work_us_per_example_not_copied` leaves out the three copy steps, and
`record_work_us_per_example_default_outputs` weighs the two as vog_throughput's (b)
does with the default outputs (a third of the examples copied). Beside
`gradient_us_per_example` they show what share of the time a faster gradient device
could take (`gradient_share*`, of the wall time). The `_cpu_` figures are CPU time. Writes record_work.json under --output. Not a test.
"""

import argparse
import collections
import json
import os
import pickle
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Sequence, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import vog_throughput  # pylint: disable=g-import-not-at-top
from components.vog import audit_plan  # pylint: disable=g-import-not-at-top
from components.vog import factories  # pylint: disable=g-import-not-at-top
from components.vog.dataflow import audit_summary  # pylint: disable=g-import-not-at-top
from components.vog.dataflow import beam_audit  # pylint: disable=g-import-not-at-top
from components.vog.dataflow import beam_writers  # pylint: disable=g-import-not-at-top
from components.vog.dataflow import drift  # pylint: disable=g-import-not-at-top
from components.vog.inputs import examples_io  # pylint: disable=g-import-not-at-top
from components.vog.compute import percentiles  # pylint: disable=g-import-not-at-top
from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
from components.vog.dataflow import score_batch  # pylint: disable=g-import-not-at-top
from components.vog.report import score_table  # pylint: disable=g-import-not-at-top
from components.vog.inputs.checkpoints import VogCheckpointCallback  # pylint: disable=g-import-not-at-top
from components.vog.settings import VogSettings  # pylint: disable=g-import-not-at-top

# The writer's own helpers, so that each step runs the code the audit runs.
# pylint: disable=protected-access
placed_columns = beam_writers._placed_columns
vog_columns = beam_writers._vog_columns
flagged_rows = beam_writers._flagged_rows
score_table_columns = beam_writers._score_table_columns
# pylint: enable=protected-access

SPLIT = 'eval'
GRADIENTS = 'gradients'
VOG_MOMENTS = 'vog moments'
# The steps only a copied split takes.
COPY_STEPS = ('vog suffixes', 'copy read', 'copy write')
# The share of examples copied with the default outputs in vog_throughput's (b): its
# eval split, a third of the examples.
COPIED_SHARE = 1 / 3

Timing = Tuple[float, float]  # (wall seconds, CPU seconds)


def _timed(fn: Callable[[], object], repeat: int = 3) -> Timing:
  """(wall, CPU) seconds of the call with the shortest wall time of `repeat`."""
  best = (float('inf'), float('inf'))
  for _ in range(repeat):
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
  return best


def scored_batch(batch: examples_io.ScorableBatch, result) -> score_batch.ScoredBatch:
  """The ScoredBatch that beam_audit's scorer emits for a batch it scored whole."""
  first = batch.records[0]
  return score_batch.ScoredBatch(
      first.split, first.file_index, [r.record_index for r in batch.records],
      batch.example_ids, batch.has_example_ids,
      [-1 if label is None else label for label in batch.labels],
      result.target_class, result.predicted_class,
      np.asarray(result.vog_raw, dtype=np.float32),
      score_batch.signal_matrix(result.logits, result.target_class),
      score_batch.top_sigma(result.input_sigma, len(batch.records)))


def ranking_of(partials: Sequence[beam_audit.BatchPartials],
               settings: VogSettings) -> percentiles.Ranking:
  """The Ranking that beam_audit.SummarizeScores combines from the batches' partials,
  combined here in memory (with exact quantiles)."""
  moments, vog_moments = collections.defaultdict(list), collections.defaultdict(list)
  values, candidates = collections.defaultdict(list), collections.defaultdict(list)
  for part in partials:
    for target, pairs in ((moments, part.moments), (vog_moments, part.vog_moments),
                          (candidates, part.candidates)):
      for key, value in pairs:
        target[key].append(value)
    for key, value in part.values:
      values[key].extend(value)
  levels = np.linspace(0.0, 1.0, percentiles.NUM_QUANTILES)
  classes = {}
  for key, parts in moments.items():
    count, mean, std = percentiles.MeanStd.merge(parts).result()
    classes[key] = percentiles.ClassScores(count, mean, std,
                                           tuple(np.quantile(values[key], levels).tolist()))
  normalize, budget = settings.rank_normalize, settings.inspection_budget
  rows = {key: percentiles.select_candidates(parts, max(budget, 1),
                                             normalize == 'abs-class').rows()
          for key, parts in candidates.items()}
  vog = None if settings.ranked_by == beam_audit.VOG else {
      key: percentiles.MeanStd.merge(parts).result() for key, parts in vog_moments.items()}
  ranks = percentiles.rank_for_review(classes, rows, normalize, budget)
  flagged = {tuple(c[1]): c[2] for found in rows.values() for c in found
             if tuple(c[1]) in ranks}
  return percentiles.Ranking(
      normalize, settings.bucket_percentiles, classes, ranks, vog_stats=vog,
      vog_normalize=settings.normalize, flagged_suspicions=flagged)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--examples', type=int, default=4000)
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--output', default='bench_output')
  args = parser.parse_args(argv)
  n, batch_size = args.examples, args.batch_size
  work = tempfile.mkdtemp(prefix='vog_record_work_')
  model_run = os.path.join(work, 'run')
  images, labels = vog_throughput.synthetic_images(max(n, 3000), seed=1)
  vog_throughput.small_cnn().fit(
      images[:3000], labels[:3000], epochs=vog_throughput.CHECKPOINTS, batch_size=64,
      verbose=0, callbacks=[VogCheckpointCallback(model_run, vog_throughput.CHECKPOINTS)])
  images, labels = images[:n], labels[:n]
  path = os.path.join(work, 'data.gz')
  vog_throughput.write_tfrecords(path, images, labels)
  settings = VogSettings(batch_size=batch_size)
  plan = audit_plan.plan_audit(settings, model_run, {SPLIT: path})
  rank_by = settings.ranked_by
  two_sided = settings.rank_normalize == 'abs-class'
  example_parser = factories.ParserFactory(plan.input_specs, settings, plan.num_classes,
                                           None)()
  scorer = factories.ScorerFactory(plan.entries, None, settings.target, settings.label_mode)()
  records = [r for _, r in record_files.read_records(path, 'GZIP')]
  positioned = [examples_io.InputRecord(SPLIT, 0, i, r) for i, r in enumerate(records)]
  chunks = [positioned[i:i + batch_size] for i in range(0, n, batch_size)]
  parsed = [example_parser.parse_batch(c)[0] for c in chunks]
  tensors = [(scorer.checkpoints[-1].as_tensors(b.inputs), np.asarray(b.labels, np.int64))
             for b in parsed]
  results = [scorer.score(b.inputs, np.asarray(b.labels)) for b in parsed]  # traced here

  def gradients():
    for inputs, target in tensors:
      for ckpt in scorer.checkpoints:
        ckpt.gradients_and_masks(inputs, target)

  def score_all():
    for b in parsed:
      scorer.score(b.inputs, np.asarray(b.labels))

  def build_batches() -> List[score_batch.ScoredBatch]:
    out = [scored_batch(b, r) for b, r in zip(parsed, results)]
    for b in out:
      beam_audit.batch_partials(b, rank_by, settings.inspection_budget, two_sided)
    return out

  batches = build_batches()
  ranking = ranking_of([beam_audit.batch_partials(b, rank_by, settings.inspection_budget,
                                                  two_sided) for b in batches], settings)
  pickled = [pickle.dumps(b, pickle.HIGHEST_PROTOCOL) for b in batches]
  joined = score_batch.concat(batches)
  placed = placed_columns(joined, ranking, rank_by)

  def vog_suffixes():
    return examples_io.vog_feature_suffixes(
        vog_columns(joined, placed), settings.example_id_key,
        example_ids=[None if has else i for i, has
                     in zip(joined.example_id, joined.has_example_id.tolist())],
        with_signals=joined.has_signals)

  suffixes = vog_suffixes()
  table_path = score_table.shard_path(work, SPLIT, 0, 1)
  copy_path = beam_writers.scored_file_path(work, SPLIT, 0, 1, 'gzip')

  def place():
    both = score_batch.concat([pickle.loads(p) for p in pickled])
    placed_columns(both, ranking, rank_by)

  def copy_write():
    with record_files.AtomicFile(copy_path, beam_writers.GZIP_LEVEL) as sink:
      for serialized, suffix in zip(records, suffixes):
        sink.write(record_files.frame(serialized + suffix))

  def read():
    return sum(1 for _ in record_files.read_records(path, 'GZIP'))

  steps: Dict[str, Timing] = {
      'read': _timed(read),
      'parse': _timed(lambda: [example_parser.parse_batch(c) for c in chunks]),
      GRADIENTS: _timed(gradients, repeat=2),
  }
  score = _timed(score_all, repeat=2)
  steps[VOG_MOMENTS] = (max(0.0, score[0] - steps[GRADIENTS][0]),
                        max(0.0, score[1] - steps[GRADIENTS][1]))
  steps.update({
      'scored batch': _timed(build_batches),
      'to the writer': _timed(lambda: [pickle.loads(pickle.dumps(
          b, pickle.HIGHEST_PROTOCOL)) for b in batches]),
      'place': _timed(place),
      'flagged rows': _timed(lambda: flagged_rows(joined, placed, ranking)),
      'tally': _timed(lambda: audit_summary.file_counts(
          SPLIT, joined.target_class, joined.label, joined.predicted_class,
          placed['vog_decile'], placed['vog_flagged'], placed['raw_hard'],
          score_batch.signal_columns(joined))),
      'score table': _timed(lambda: score_table.write_shard(
          table_path, score_table_columns(joined, placed))),
      'history': _timed(lambda: drift.write_history_lines(
          work, 0, 1, beam_writers.history_lines(joined, placed))),
      'vog suffixes': _timed(vog_suffixes),
      'copy read': _timed(read),
      'copy write': _timed(copy_write),
  })
  us = {name: {'wall': 1e6 * wall / n, 'cpu': 1e6 * cpu / n}
        for name, (wall, cpu) in steps.items()}

  def total(names) -> Dict[str, float]:
    return {kind: sum(us[name][kind] for name in names) for kind in ('wall', 'cpu')}

  record_steps = [name for name in us if name != GRADIENTS]
  work_all = total(record_steps)
  work_kept = total([name for name in record_steps if name not in COPY_STEPS])
  work_mix = {kind: COPIED_SHARE * work_all[kind] + (1 - COPIED_SHARE) * work_kept[kind]
              for kind in work_all}
  gradient = us[GRADIENTS]
  out = {
      'examples': n, 'batch_size': batch_size, 'checkpoints': len(plan.entries),
      'rank_by': rank_by, 'flagged_in_file': int(placed['vog_flagged'].sum()),
      'us_per_example': us,
      'record_work_us_per_example': work_all['wall'],
      'record_work_cpu_us_per_example': work_all['cpu'],
      'record_work_us_per_example_not_copied': work_kept['wall'],
      'record_work_cpu_us_per_example_not_copied': work_kept['cpu'],
      'record_work_us_per_example_default_outputs': work_mix['wall'],
      'record_work_cpu_us_per_example_default_outputs': work_mix['cpu'],
      'gradient_us_per_example': gradient['wall'],
      'gradient_cpu_us_per_example': gradient['cpu'],
      'gradient_share': gradient['wall'] / (gradient['wall'] + work_all['wall']),
      'gradient_share_not_copied': gradient['wall'] / (gradient['wall'] + work_kept['wall']),
      'gradient_share_default_outputs': (
          gradient['wall'] / (gradient['wall'] + work_mix['wall'])),
  }
  print(f'{"step (us / example)":<40} {"wall":>10} {"CPU":>10}')
  for name, value in us.items():
    copied = ' (copied split)' if name in COPY_STEPS else ''
    print(f'{name + copied:<40} {value["wall"]:>10.1f} {value["cpu"]:>10.1f}')
  for name, value in (('record work, copied split', work_all),
                      ('record work, split not copied', work_kept),
                      (f'record work, {COPIED_SHARE:.0%} copied', work_mix),
                      (f'gradients ({len(plan.entries)} checkpoints)', gradient)):
    print(f'{name:<40} {value["wall"]:>10.1f} {value["cpu"]:>10.1f}')
  print(f'gradients\' share of the wall time: {out["gradient_share"]:.2f} (copied split), '
        f'{out["gradient_share_not_copied"]:.2f} (not copied), '
        f'{out["gradient_share_default_outputs"]:.2f} ({COPIED_SHARE:.0%} copied)')
  shutil.rmtree(work, ignore_errors=True)
  os.makedirs(args.output, exist_ok=True)
  with open(os.path.join(args.output, 'record_work.json'), 'w') as f:
    json.dump(out, f, indent=2)


if __name__ == '__main__':
  main()
