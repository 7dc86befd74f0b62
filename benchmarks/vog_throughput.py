"""Throughput, memory, shuffle bytes and output bytes of VoG scoring, in one run.

  (a) limit: the scorer's tf.function gradients in a tight loop over pre-batched,
      in-memory tensors;
  (b) component: the VarianceOfGradients Beam path end to end (plan_audit +
      run_audit on the FnApiRunner, in a fresh process per run so peak RSS is its
      own), at N and 4N examples laid out as ExampleGen's Examples artifact:
      `Split-train/` (2/3 of the examples) and `Split-eval/` (1/3), each a gzip
      TFRecord file. Each size runs twice: with the default outputs (every split's
      score table, only `eval` copied in full into scored_examples) and with
      `copy_splits='all'` (every split copied);
  (c) per-example: eager gradients, one example per call, as a direct port of the
      paper's reference loop does, on a subset;
  (d) scale: the same component path on many small examples - 16x16x1 images, a
      small CNN, sharded gzip TFRecords in the same two splits (scale_data.write_splits:
      train the first 2/3, eval the last 1/3, the shards shared alike) - at 200,000
      and 800,000 by default, default outputs: wall time, examples/s and the scoring
      process's peak RSS, beside its own limit (the loop of (a) with the scale model
      and data).

Throughput is examples x checkpoints per second for (a)-(c), examples per second for
(d). Every audit runs on the FnApiRunner, and each of its processes also measures:

  * shuffle bytes: what crosses every grouping of the run (benchmarks/shuffle_bytes.py,
    from the runner's element counts and sampled sizes), in total, per example and per
    grouping; and per example added between the smallest and the largest size, which
    leaves out what does not grow with N (the flagged examples' bytes, the Ranking).
    With the default outputs the audit then runs again on the same data with the first
    run's report as its baseline, and the same is measured with the drift's match by
    example_id (`*_with_baseline`);
  * bytes written per split: its score table shards, its share of the history shards
    (by row count), its scored_examples copy, and its input files. The headline is a
    split that is not copied (train): (score table + history) / its examples, beside
    the copied split's (eval) scored examples per example.

Peak RSS and wall time are those of the first audit of each process; the per-grouping
figures of (b) are at N. Writes bench_output/results.json, bench_output/shuffle_bytes.txt (the per-grouping
tables) and prints a table.

    python -m benchmarks.vog_throughput --output bench_output [--examples 10000]
        [--scale-sizes 200000,800000] [--scale-shards 8] [--no-baseline]
"""

import argparse
import collections
import glob
import gzip
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any, Dict, Optional, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import scale_data  # pylint: disable=g-import-not-at-top
from benchmarks import shuffle_bytes as shuffle_lib  # pylint: disable=g-import-not-at-top
from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
CHECKPOINTS = 5
BATCH_SIZE = 256
# Each target is a floor, except those named in AT_MOST, which are ceilings.
TARGETS = {'ratio_component_vs_limit': 0.75, 'speedup_vs_per_example': 50.0,
           'rss_growth_4x': 1.2, 'rss_growth_4x_large': 1.2,
           'shuffle_bytes_per_example': 64.0,
           'shuffle_bytes_per_example_with_baseline': 96.0,
           'bytes_written_per_example_not_copied': 64.0,
           'ratio_scale_vs_limit': 0.6,
           'scale_examples_per_s_large': 2 * 2908.0}
AT_MOST = ('rss_growth_4x', 'rss_growth_4x_large', 'shuffle_bytes_per_example',
           'shuffle_bytes_per_example_with_baseline',
           'bytes_written_per_example_not_copied')
SCALE_SIZES = (200000, 800000)
SCALE_SHARDS = 8
SCALE_CHECKPOINTS = 4
SCALE_TRAIN_EXAMPLES = 4096
SCALE_LIMIT_EXAMPLES = 65536  # at most, in memory, for the scale run's limit
SPLIT_DIR_PREFIX = scale_data.SPLIT_DIR_PREFIX
NOT_COPIED_SPLIT = 'train'  # not in the default copy_splits
COPIED_SPLIT = 'eval'


def synthetic_images(n: int, seed: int):
  """Class-dependent colour blobs plus noise: learnable, but not trivially."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, n)
  yy, xx = np.mgrid[0:32, 0:32] / 31.0
  centres = rng.uniform(0.2, 0.8, size=(NUM_CLASSES, 2))
  colours = rng.uniform(0, 1, size=(NUM_CLASSES, 3))
  images = np.empty((n,) + IMAGE_SHAPE, np.float32)
  for start in range(0, n, 4096):
    lab = labels[start:start + 4096]
    d2 = (yy[None] - centres[lab, 0, None, None]) ** 2 + (xx[None] - centres[lab, 1, None, None]) ** 2
    blob = np.exp(-d2 / 0.02)[..., None] * colours[lab, None, None, :]
    noise = rng.normal(0, 0.25, size=blob.shape)
    images[start:start + len(lab)] = (blob + noise).astype(np.float32)
  return images, labels


def _cnn(shape, num_classes: int, filters=(16, 32), dense: int = 64) -> tf.keras.Model:
  """Two conv-pool blocks and a dense layer, seeded: the benchmarks' models."""
  tf.keras.utils.set_random_seed(0)
  inp = tf.keras.Input(shape, name='image')
  x = inp
  for n in filters:
    x = tf.keras.layers.Conv2D(n, 3, padding='same', activation='relu')(x)
    x = tf.keras.layers.MaxPooling2D()(x)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(dense, activation='relu')(x)
  model = tf.keras.Model(inp, tf.keras.layers.Dense(num_classes, activation='softmax')(x))
  model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])
  return model


def small_cnn() -> tf.keras.Model:
  """The CNN for the 32x32x3 images of (a)-(c)."""
  return _cnn(IMAGE_SHAPE, NUM_CLASSES)


def scale_cnn() -> tf.keras.Model:
  """A small CNN for the 16x16x1 images of the scale run (d)."""
  return _cnn(scale_data.IMAGE_SHAPE, scale_data.NUM_CLASSES, filters=(8, 16), dense=32)


def write_tfrecords(path: str, images, labels, ids: Optional[Sequence[int]] = None) -> None:
  """Writes one gzip TFRecord file of the images; example i's id is img-<ids[i]>."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ids = range(len(labels)) if ids is None else ids
  temp = path + '.tmp'
  with tf.io.TFRecordWriter(temp, tf.io.TFRecordOptions(compression_type='GZIP')) as w:
    for i, image, label in zip(ids, images, labels):
      w.write(tf.train.Example(features=tf.train.Features(feature={
          'image': tf.train.Feature(float_list=tf.train.FloatList(value=image.reshape(-1))),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
          'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[f'img-{i}'.encode()])),
      })).SerializeToString())
  os.replace(temp, path)


def write_splits(folder: str, images, labels) -> Dict[str, str]:
  """The images as ExampleGen's default Examples layout; returns {split: glob pattern}.

  Every third example (index % 3 == 2) goes to Split-eval/, the others to
  Split-train/, each one gzip file; an example's id is its index. Files already
  written are reused.
  """
  index = np.arange(len(labels))
  patterns = {}
  for split, members in (('train', index % 3 != 2), ('eval', index % 3 == 2)):
    split_dir = os.path.join(folder, SPLIT_DIR_PREFIX + split)
    path = os.path.join(split_dir, 'data_tfrecord-00000-of-00001.gz')
    if not os.path.exists(path):
      write_tfrecords(path, images[members], labels[members], index[members].tolist())
    patterns[split] = os.path.join(split_dir, '*.gz')
  return patterns


def load_scorer(model_run: str):
  from components.vog.inputs import checkpoints  # pylint: disable=g-import-not-at-top
  from components.vog.compute.scoring import VogScorer  # pylint: disable=g-import-not-at-top
  entries = checkpoints.load_manifest(model_run)
  return VogScorer(checkpoints.load_checkpoint_models(entries), target='loss')


def measure_limit(scorer, images, labels) -> float:
  """(a): the same compiled gradients, tensors already batched in memory."""
  batches = [(scorer.checkpoints[0].as_tensors({'image': images[i:i + BATCH_SIZE]}),
              labels[i:i + BATCH_SIZE].astype(np.int32))
             for i in range(0, len(images), BATCH_SIZE)]
  for ckpt in scorer.checkpoints:  # warm-up: trace once per checkpoint
    ckpt(*batches[0])
  start = time.perf_counter()
  for tensors, target in batches:
    for ckpt in scorer.checkpoints:
      ckpt(tensors, target)
  return len(images) * len(scorer.checkpoints) / (time.perf_counter() - start)


def measure_per_example(scorer, images, labels) -> float:
  """(c): the reference script's way: eager GradientTape, one example per call.

  Checkpoint by checkpoint, each example's input gradient of the loss is taken on
  its own, as a direct port of the per-example loop does (no tf.function, no
  batching).
  """
  models = [ckpt.model for ckpt in scorer.checkpoints]
  start = time.perf_counter()
  for model in models:
    for i in range(len(images)):
      x = tf.convert_to_tensor(images[i:i + 1])
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels[i:i + 1], logits=model(x, training=False))
      tape.gradient(loss, x).numpy()
  return len(images) * len(models) / (time.perf_counter() - start)


def fn_api_pipeline():
  """(pipeline, results): a Beam pipeline pinned to the FnApiRunner whose `run` keeps
  what it returned in `results`, for shuffle_bytes after run_audit has run it."""
  # pylint: disable=g-import-not-at-top
  import apache_beam as beam
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  # pylint: enable=g-import-not-at-top
  pipeline = beam.Pipeline(runner=fn_runner.FnApiRunner())
  results = []
  run = pipeline.run

  def run_and_keep(*args, **kwargs):
    result = run(*args, **kwargs)
    results.append(result)
    return result

  pipeline.run = run_and_keep
  return pipeline, results


def shuffle_figures(result, pipeline, examples: int) -> Dict[str, Any]:
  """The bytes that crossed each grouping of a finished run, and per example."""
  found = shuffle_lib.shuffle_bytes(result, pipeline)
  return {
      'total': found.total, 'examples': examples,
      'per_example': found.per_example(examples),
      'by_grouping': {name: {'bytes': g.bytes, 'per_example': g.bytes / examples,
                             'elements': g.elements, 'sampled': g.sampled, 'low': g.low,
                             'high': g.high, 'lifted': g.lifted}
                      for name, g in found.groupings.items()},
      'note': found.note, 'table': found.table(examples)}


def history_bytes_by_split(report_dir: str) -> Dict[str, float]:
  """Each split's share of the report's history shards, in bytes on disk: a shard's
  size shared among the splits of its rows, by row count."""
  from components.vog.report import report_format as fmt  # pylint: disable=g-import-not-at-top
  shares = collections.Counter()
  for path in fmt.history_files(report_dir):
    rows = collections.Counter()
    with gzip.open(path, 'rt') as f:
      for line in f:
        if line.strip():
          rows[json.loads(line)['split']] += 1
    total = sum(rows.values())
    for split, count in rows.items():
      shares[split] += os.path.getsize(path) * count / total
  return dict(shares)


def _size(paths: Sequence[str]) -> int:
  return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def output_bytes(report_dir: str, scored_dir: str, summary: Dict[str, Any],
                 split_patterns: Dict[str, str]) -> Dict[str, Dict[str, float]]:
  """Per split: examples scored, and the bytes of its input files, its score table
  shards, its share of the history shards and its scored_examples copy (0 when the
  split is not copied)."""
  from components.vog.report import score_table  # pylint: disable=g-import-not-at-top
  history = history_bytes_by_split(report_dir)
  out = {}
  for split, counts in summary['splits'].items():
    out[split] = {
        'examples': counts['scored'],
        'input_bytes': _size(glob.glob(split_patterns[split])),
        'score_table_bytes': _size(score_table.shard_files(report_dir, split)),
        'history_bytes': history.get(split, 0.0),
        'copy_bytes': _size(glob.glob(os.path.join(scored_dir, SPLIT_DIR_PREFIX + split,
                                                   '*'))),
    }
  return out


def _audit(settings, model_run: str, split_patterns: Dict[str, str], folder: str,
           baseline: Optional[Dict[str, Any]] = None):
  """One audit on the FnApiRunner: (seconds, summary, pipeline, result, checkpoints)."""
  from components.vog import audit  # pylint: disable=g-import-not-at-top
  from components.vog import audit_plan  # pylint: disable=g-import-not-at-top
  pipeline, results = fn_api_pipeline()
  start = time.perf_counter()
  plan = audit_plan.plan_audit(settings, model_run, split_patterns, baseline=baseline)
  summary = audit.run_audit(plan, pipeline, os.path.join(folder, 'scored'),
                            os.path.join(folder, 'report'))
  seconds = time.perf_counter() - start
  return seconds, summary, pipeline, results[-1], len(plan.entries)


def component_run(spec: Dict[str, Any]) -> Dict[str, Any]:
  """(b) or (d), run in its own process: seconds, peak RSS and what was scored.

  `spec`: model_run, splits ({split: pattern}), output (a folder), copy_splits and
  baseline. Measures the run's shuffle bytes and the bytes it wrote per split; with
  `baseline`, runs the audit again with the first one's report as its baseline and
  measures that run's shuffle bytes too. Peak RSS is the first run's.
  """
  from components.vog.settings import VogSettings  # pylint: disable=g-import-not-at-top
  settings = VogSettings(batch_size=BATCH_SIZE, copy_splits=spec['copy_splits'])
  first = os.path.join(spec['output'], 'first')
  seconds, summary, pipeline, result, checkpoints = _audit(
      settings, spec['model_run'], spec['splits'], first)
  scored = summary['counts']['scored']
  out = {'seconds': seconds, 'peak_rss_mb': peak_rss_mb(), 'scored': scored,
         'scored_by_split': {s: c['scored'] for s, c in summary['splits'].items()},
         'copied_splits': summary['copied_splits'], 'checkpoints': checkpoints}
  out['shuffle'] = shuffle_figures(result, pipeline, scored)
  report = os.path.join(first, 'report')
  out['bytes'] = output_bytes(report, os.path.join(first, 'scored'), summary,
                              spec['splits'])
  if spec.get('baseline'):
    seconds, again, pipeline, result, _ = _audit(
        settings, spec['model_run'], spec['splits'], os.path.join(spec['output'], 'again'),
        baseline={'uri': report})
    drift = again['drift']
    if drift is None or drift['unavailable'] is not None:
      raise RuntimeError(f'the second audit could not compare with {report}: '
                         f'{None if drift is None else drift["unavailable"]}')
    out['baseline'] = {
        'seconds': seconds,
        'matched': sum(c['matched'] for c in again['drift_counts'].values()),
        'shuffle': shuffle_figures(result, pipeline, again['counts']['scored'])}
  return out


def peak_rss_mb() -> float:
  """This process's own peak RSS.

  Linux carries the parent's high-water mark into ru_maxrss across fork and exec, so
  a child of a big parent would report the parent's; VmHWM belongs to this image alone.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_component_in_subprocess(spec: Dict[str, Any]) -> Dict[str, Any]:
  """component_run(spec) in a fresh process; its output folder is removed after."""
  try:
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.vog_throughput', '--component-run',
         json.dumps(spec)], capture_output=True, text=True, check=False)
  finally:
    subprocess.run(['rm', '-rf', spec['output']], check=True)
  if out.returncode != 0:
    raise RuntimeError(f'the component run on {spec["splits"]} failed (exit code '
                       f'{out.returncode}); its last output:\n{out.stderr[-4000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def scale_sizes(text: str):
  """'200000,800000' -> (200000, 800000); '' or 'none' -> () (no scale run)."""
  if text.strip().lower() in ('', 'none'):
    return ()
  try:
    sizes = tuple(int(part) for part in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'--scale-sizes {text!r}: give example counts separated by commas, '
        'e.g. 200000,800000, or none') from None
  if len(sizes) < 2 or any(n < 3 for n in sizes):
    raise argparse.ArgumentTypeError(
        f'--scale-sizes {text!r}: give at least two example counts of 3 or more, '
        'e.g. 200000,800000 (or none to skip the scale run)')
  return tuple(sorted(sizes))


def per_added_example(runs: Dict[int, Dict[str, Any]], key: str = '') -> Optional[float]:
  """(total at the largest size - total at the smallest) / the examples added: the
  shuffle bytes that grow with N. `key` picks the baseline run's shuffle."""
  if len(runs) < 2:
    return None
  small, large = min(runs), max(runs)

  def total(size):
    run = runs[size][key] if key else runs[size]
    return run['shuffle']['total']

  return (total(large) - total(small)) / (large - small)


def run_scale(work: str, sizes, shards: int, baseline: bool):
  """(d): the scale limit, then each size through the component path in its own
  process; (limit in examples x checkpoints / s, checkpoints, per-size figures)."""
  if not sizes:
    return None, None, {}
  model_run = os.path.join(work, 'model_run')
  if not os.path.exists(os.path.join(model_run, 'vog_checkpoints', 'manifest.json')):
    images, labels = scale_data.training_set(SCALE_TRAIN_EXAMPLES)
    scale_cnn().fit(images, labels, epochs=SCALE_CHECKPOINTS, batch_size=64, verbose=0,
                    callbacks=[VogCheckpointCallback(model_run, SCALE_CHECKPOINTS)])
  print('(d) scale: limit, in-memory tf.function loop', flush=True)
  scorer = load_scorer(model_run)
  images, labels = scale_data.training_set(min(min(sizes), SCALE_LIMIT_EXAMPLES))
  limit = measure_limit(scorer, images, labels)
  checkpoints = len(scorer.checkpoints)
  del scorer, images, labels
  runs = {}
  for size in sizes:
    print(f'(d) scale: writing {size} {scale_data.IMAGE_SHAPE} examples in '
          f'{shards} gzip shards (train and eval)', flush=True)
    start = time.perf_counter()
    patterns = scale_data.write_splits(os.path.join(work, f'examples-{size}'), size, shards)
    written_s = time.perf_counter() - start
    print(f'(d) scale: component path on {size} examples'
          + (', then again with a baseline' if baseline else ''), flush=True)
    run = run_component_in_subprocess({
        'model_run': model_run, 'splits': patterns, 'copy_splits': None,
        'baseline': baseline, 'output': os.path.join(work, f'out-{size}-{int(time.time())}')})
    if run['scored'] != size:
      raise RuntimeError(f'the scale run on {size} examples scored {run["scored"]}')
    run['examples_per_s'] = run['scored'] / run['seconds']
    run['data_generation_seconds'] = written_s
    runs[size] = run
  return limit, checkpoints, runs


def not_copied_bytes(run: Dict[str, Any]) -> Dict[str, float]:
  """Bytes written per example: of the split not copied (its score table and history
  share), of the copied split's scored examples, and of their inputs."""
  kept, copied = run['bytes'][NOT_COPIED_SPLIT], run['bytes'][COPIED_SPLIT]
  n = kept['examples']
  return {
      'not_copied': (kept['score_table_bytes'] + kept['history_bytes']) / n,
      'not_copied_score_table': kept['score_table_bytes'] / n,
      'not_copied_history': kept['history_bytes'] / n,
      'copied': copied['copy_bytes'] / copied['examples'],
      'copied_all_outputs': (copied['copy_bytes'] + copied['score_table_bytes']
                             + copied['history_bytes']) / copied['examples'],
      'input': (kept['input_bytes'] + copied['input_bytes']) / (n + copied['examples']),
  }


def _target(key: str) -> str:
  if key not in TARGETS:
    return ''
  return f'{"<=" if key in AT_MOST else ">="} {TARGETS[key]:g}'


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default='bench_output')
  parser.add_argument('--examples', type=int, default=10000, help='N; (b) also runs 4N')
  parser.add_argument('--per-example-subset', type=int, default=300)
  parser.add_argument('--scale-sizes', type=scale_sizes,
                      default=','.join(str(n) for n in SCALE_SIZES),
                      help='example counts of the scale run (d), comma-separated; '
                      'rss_growth_4x_large is peak RSS at the largest over the smallest; '
                      '"none" skips it')
  parser.add_argument('--scale-shards', type=int, default=SCALE_SHARDS,
                      help='gzip TFRecord files per scale-run size, over both splits')
  parser.add_argument('--no-baseline', dest='baseline', action='store_false',
                      help='skip the second audit of each size with a baseline (the '
                      '*_with_baseline figures)')
  parser.add_argument('--component-run', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.component_run:
    print(json.dumps(component_run(json.loads(args.component_run))))
    return

  n = args.examples
  if n < 3:
    parser.error('--examples: give at least 3 (a third of them is the eval split)')
  os.makedirs(args.output, exist_ok=True)
  work = os.path.join(args.output, 'work')
  print(f'preparing {4 * n} synthetic {IMAGE_SHAPE} images and {CHECKPOINTS} checkpoints',
        flush=True)
  images, labels = synthetic_images(4 * n, seed=0)
  model_run = os.path.join(work, 'model_run')
  if not os.path.exists(os.path.join(model_run, 'vog_checkpoints', 'manifest.json')):
    small_cnn().fit(images[:3000], labels[:3000], epochs=CHECKPOINTS, batch_size=64,
                    verbose=0, callbacks=[VogCheckpointCallback(model_run, CHECKPOINTS)])
  patterns = {size: write_splits(os.path.join(work, f'examples-{size}'), images[:size],
                                 labels[:size])
              for size in (n, 4 * n)}

  scorer = load_scorer(model_run)
  print('(a) limit: in-memory tf.function loop', flush=True)
  limit = measure_limit(scorer, images[:n], labels[:n])
  print('(c) per-example calls', flush=True)
  per_example = measure_per_example(scorer, images[:args.per_example_subset],
                                    labels[:args.per_example_subset])
  del scorer, images, labels
  runs, copy_all = {}, {}
  for size in (n, 4 * n):
    print(f'(b) component Beam path on {size} examples, default outputs'
          + (', then again with a baseline' if args.baseline else ''), flush=True)
    runs[size] = run_component_in_subprocess({
        'model_run': model_run, 'splits': patterns[size], 'copy_splits': None,
        'baseline': args.baseline,
        'output': os.path.join(work, f'out-{size}-{int(time.time())}')})
    print(f'(b) component Beam path on {size} examples, copy_splits=all', flush=True)
    copy_all[size] = run_component_in_subprocess({
        'model_run': model_run, 'splits': patterns[size], 'copy_splits': 'all',
        'baseline': False, 'output': os.path.join(work, f'out-{size}-{int(time.time())}')})
  scale_limit, scale_checkpoints, scale = run_scale(
      os.path.join(work, 'scale'), args.scale_sizes, args.scale_shards, args.baseline)

  def rate(run):
    return run['scored'] * run['checkpoints'] / run['seconds']

  component, component_all = rate(runs[4 * n]), rate(copy_all[4 * n])
  written = not_copied_bytes(runs[4 * n])
  written_all = copy_all[4 * n]['bytes'][NOT_COPIED_SPLIT]
  results = {
      'device': 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU',
      'cpu_count': os.cpu_count(),
      'image_shape': list(IMAGE_SHAPE), 'checkpoints': CHECKPOINTS,
      'batch_size': BATCH_SIZE, 'examples_n': n, 'examples_4n': 4 * n,
      'examples_by_split': {str(k): v['scored_by_split'] for k, v in runs.items()},
      'runner': 'FnApiRunner',
      'throughput_limit': limit,
      'throughput_component': component,
      'throughput_component_copy_all': component_all,
      'throughput_per_example': per_example,
      'ratio_component_vs_limit': component / limit,
      'ratio_component_vs_limit_copy_all': component_all / limit,
      'speedup_vs_per_example': component / per_example,
      'component_seconds': {str(k): v['seconds'] for k, v in runs.items()},
      'component_seconds_copy_all': {str(k): v['seconds'] for k, v in copy_all.items()},
      'peak_rss_mb': {str(k): v['peak_rss_mb'] for k, v in runs.items()},
      'peak_rss_mb_copy_all': {str(k): v['peak_rss_mb'] for k, v in copy_all.items()},
      'rss_growth_4x': runs[4 * n]['peak_rss_mb'] / runs[n]['peak_rss_mb'],
      'rss_growth_4x_copy_all': copy_all[4 * n]['peak_rss_mb'] / copy_all[n]['peak_rss_mb'],
      'shuffle_bytes_per_example': runs[n]['shuffle']['per_example'],
      'shuffle_bytes_by_grouping': runs[n]['shuffle']['by_grouping'],
      'shuffle_bytes_total': {str(k): v['shuffle']['total'] for k, v in runs.items()},
      'shuffle_bytes_per_added_example': per_added_example(runs),
      'shuffle_bytes_per_example_copy_all': copy_all[n]['shuffle']['per_example'],
      'bytes_written_per_example_not_copied': written['not_copied'],
      'bytes_written_per_example_not_copied_score_table': written['not_copied_score_table'],
      'bytes_written_per_example_not_copied_history': written['not_copied_history'],
      'bytes_written_per_example_copied': written['copied'],
      'bytes_written_per_example_copied_all_outputs': written['copied_all_outputs'],
      'bytes_written_per_example_copy_all_train': (
          written_all['copy_bytes'] / written_all['examples']),
      'input_bytes_per_example': written['input'],
      'output_bytes': {str(k): v['bytes'] for k, v in runs.items()},
      'output_bytes_copy_all': {str(k): v['bytes'] for k, v in copy_all.items()},
      'targets': TARGETS,
      'target_directions': {k: 'at most' if k in AT_MOST else 'at least' for k in TARGETS},
  }
  notes = {f'(b) {k}': v['shuffle']['note'] for k, v in runs.items() if v['shuffle']['note']}
  if args.baseline:
    results.update({
        'shuffle_bytes_per_example_with_baseline':
            runs[n]['baseline']['shuffle']['per_example'],
        'shuffle_bytes_by_grouping_with_baseline':
            runs[n]['baseline']['shuffle']['by_grouping'],
        'shuffle_bytes_total_with_baseline': {
            str(k): v['baseline']['shuffle']['total'] for k, v in runs.items()},
        'shuffle_bytes_per_added_example_with_baseline': per_added_example(runs, 'baseline'),
        'component_seconds_with_baseline': {
            str(k): v['baseline']['seconds'] for k, v in runs.items()},
        'baseline_matched': {str(k): v['baseline']['matched'] for k, v in runs.items()},
    })
    notes.update({f'(b) {k} with baseline': v['baseline']['shuffle']['note']
                  for k, v in runs.items() if v['baseline']['shuffle']['note']})
  if scale:
    small, large = min(scale), max(scale)
    scale_written = not_copied_bytes(scale[large])
    results.update({
        'scale_image_shape': list(scale_data.IMAGE_SHAPE),
        'scale_checkpoints': scale[large]['checkpoints'],
        'scale_shards': args.scale_shards,
        'scale_sizes': sorted(scale),
        'scale_examples_by_split': {str(k): v['scored_by_split'] for k, v in scale.items()},
        'scale_limit': scale_limit / scale_checkpoints,
        'scale_limit_examples_x_checkpoints_per_s': scale_limit,
        'scale_seconds': {str(k): v['seconds'] for k, v in scale.items()},
        'scale_examples_per_s': {str(k): v['examples_per_s'] for k, v in scale.items()},
        'scale_examples_per_s_large': scale[large]['examples_per_s'],
        'ratio_scale_vs_limit': scale[large]['examples_per_s'] * scale_checkpoints
                                / scale_limit,
        'scale_peak_rss_mb': {str(k): v['peak_rss_mb'] for k, v in scale.items()},
        'scale_data_generation_seconds': {
            str(k): v['data_generation_seconds'] for k, v in scale.items()},
        'rss_growth_4x_large': scale[large]['peak_rss_mb'] / scale[small]['peak_rss_mb'],
        'scale_shuffle_bytes_per_example': {
            str(k): v['shuffle']['per_example'] for k, v in scale.items()},
        'scale_shuffle_bytes_by_grouping': {
            str(k): v['shuffle']['by_grouping'] for k, v in scale.items()},
        'scale_shuffle_bytes_per_added_example': per_added_example(scale),
        'scale_bytes_written_per_example_not_copied': scale_written['not_copied'],
        'scale_bytes_written_per_example_copied': scale_written['copied'],
        'scale_output_bytes': {str(k): v['bytes'] for k, v in scale.items()},
    })
    notes.update({f'(d) {k}': v['shuffle']['note'] for k, v in scale.items()
                  if v['shuffle']['note']})
    if args.baseline:
      results.update({
          'scale_shuffle_bytes_per_example_with_baseline': {
              str(k): v['baseline']['shuffle']['per_example'] for k, v in scale.items()},
          'scale_shuffle_bytes_by_grouping_with_baseline': {
              str(k): v['baseline']['shuffle']['by_grouping'] for k, v in scale.items()},
          'scale_shuffle_bytes_per_added_example_with_baseline':
              per_added_example(scale, 'baseline'),
          'scale_seconds_with_baseline': {
              str(k): v['baseline']['seconds'] for k, v in scale.items()},
      })
      notes.update({f'(d) {k} with baseline': v['baseline']['shuffle']['note']
                    for k, v in scale.items() if v['baseline']['shuffle']['note']})
  results['shuffle_bytes_notes'] = notes
  with open(os.path.join(args.output, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(args.output, 'shuffle_bytes.txt'), 'w') as f:
    for label, run in ([(f'(b) {k} examples, default outputs', v) for k, v in runs.items()]
                       + [(f'(d) scale {k} examples', v) for k, v in scale.items()]):
      f.write(f'== {label}\n{run["shuffle"]["table"]}\n\n')
      if 'baseline' in run:
        f.write(f'== {label}, with a baseline\n{run["baseline"]["shuffle"]["table"]}\n\n')

  print()
  print(f'{"measure":52s} {"value":>12s}  target')
  rows = [('(a) limit, examples x ckpts / s', limit, ''),
          ('(b) component, examples x ckpts / s', component, ''),
          ('(b) copy_splits=all, examples x ckpts / s', component_all, ''),
          ('(c) per-example, examples x ckpts / s', per_example, ''),
          ('ratio (b)/(a)', results['ratio_component_vs_limit'],
           _target('ratio_component_vs_limit')),
          ('ratio (b) copy_splits=all / (a)', results['ratio_component_vs_limit_copy_all'], ''),
          ('speedup (b)/(c)', results['speedup_vs_per_example'],
           _target('speedup_vs_per_example'))]
  for size in (n, 4 * n):
    rows += [(f'peak RSS (b) at {size}, MB', runs[size]['peak_rss_mb'], ''),
             (f'peak RSS (b) copy all at {size}, MB', copy_all[size]['peak_rss_mb'], '')]
  rows += [('rss_growth_4x', results['rss_growth_4x'], _target('rss_growth_4x')),
           (f'shuffle bytes / example (b) at {n}', results['shuffle_bytes_per_example'],
            _target('shuffle_bytes_per_example')),
           (f'shuffle bytes / added example ({4 * n} - {n})',
            results['shuffle_bytes_per_added_example'], '')]
  if args.baseline:
    rows += [(f'  with a baseline, at {n}',
              results['shuffle_bytes_per_example_with_baseline'],
              _target('shuffle_bytes_per_example_with_baseline')),
             ('  with a baseline, per added example',
              results['shuffle_bytes_per_added_example_with_baseline'], '')]
  rows += [(f'bytes written / {NOT_COPIED_SPLIT} example, not copied',
            results['bytes_written_per_example_not_copied'],
            _target('bytes_written_per_example_not_copied')),
           ('  of which the score table', written['not_copied_score_table'], ''),
           ('  of which the history', written['not_copied_history'], ''),
           (f'bytes written / {COPIED_SPLIT} example, copied',
            results['bytes_written_per_example_copied'], ''),
           ('input bytes / example', results['input_bytes_per_example'], '')]
  if scale:
    rows += [('(d) scale limit, examples / s', results['scale_limit'], ''),
             ('(d) scale limit, examples x ckpts / s', scale_limit, '')]
    for size in sorted(scale):
      rows += [(f'(d) scale {size}: wall s', scale[size]['seconds'], ''),
               (f'(d) scale {size}: examples / s', scale[size]['examples_per_s'], ''),
               (f'(d) scale {size}: peak RSS, MB', scale[size]['peak_rss_mb'], ''),
               (f'(d) scale {size}: shuffle bytes / example',
                scale[size]['shuffle']['per_example'], '')]
      if args.baseline:
        rows.append((f'(d) scale {size}:   with a baseline',
                     scale[size]['baseline']['shuffle']['per_example'], ''))
    rows += [(f'(d) scale examples / s at {max(scale)}', results['scale_examples_per_s_large'],
              _target('scale_examples_per_s_large')),
             ('ratio (d)/(d) limit', results['ratio_scale_vs_limit'],
              _target('ratio_scale_vs_limit')),
             (f'rss_growth_4x_large ({max(scale)}/{min(scale)})',
              results['rss_growth_4x_large'], _target('rss_growth_4x_large')),
             ('(d) shuffle bytes / added example',
              results['scale_shuffle_bytes_per_added_example'], '')]
    if args.baseline:
      rows.append(('(d)   with a baseline, per added example',
                   results['scale_shuffle_bytes_per_added_example_with_baseline'], ''))
    rows.append((f'(d) bytes written / {NOT_COPIED_SPLIT} example, not copied',
                 results['scale_bytes_written_per_example_not_copied'], ''))
  for name, value, target in rows:
    shown = f'{value:12.2f}' if value is not None else f'{"n/a":>12s}'
    print(f'{name:52s} {shown}  {target}')
  for where, note in notes.items():
    print(f'shuffle bytes note, {where}: {note}')
  print(f'\nwrote {os.path.join(args.output, "results.json")} and '
        f'{os.path.join(args.output, "shuffle_bytes.txt")}')


if __name__ == '__main__':
  main()
