"""Throughput and memory of VoG scoring, measured three ways in one run.

  (a) limit: the scorer's tf.function gradients in a tight loop over pre-batched,
      in-memory tensors;
  (b) component: the VarianceOfGradients Beam path end to end, TFRecords in, scored
      examples and report out (DirectRunner, in a fresh process per size so peak RSS
      is its own), at N and 4N examples;
  (c) per-example: eager gradients, one example per call, as a direct port of the
      paper's reference loop does, on a subset;
  (d) scale: the same component path (plan_audit + run_audit, in-process
      DirectRunner, a fresh process per size) on many small examples - 16x16x1
      images, a small CNN, sharded gzip TFRecords - at 200,000 and 800,000 by
      default: wall time, examples/s and the scoring process's peak RSS.

Throughput is examples x checkpoints per second for (a)-(c), examples per second for
(d). Writes bench_output/results.json and prints a table.

    python -m benchmarks.vog_throughput --output bench_output [--examples 10000]
        [--scale-sizes 200000,800000] [--scale-shards 8]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import scale_data  # pylint: disable=g-import-not-at-top
from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
CHECKPOINTS = 5
BATCH_SIZE = 256
TARGETS = {'ratio_component_vs_limit': 0.75, 'speedup_vs_per_example': 50.0,
           'rss_growth_4x': 1.2, 'rss_growth_4x_large': 1.2}
SCALE_SIZES = (200000, 800000)
SCALE_SHARDS = 8
SCALE_CHECKPOINTS = 4
SCALE_TRAIN_EXAMPLES = 4096


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


def write_tfrecords(path: str, images, labels) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type='GZIP')) as w:
    for i, (image, label) in enumerate(zip(images, labels)):
      w.write(tf.train.Example(features=tf.train.Features(feature={
          'image': tf.train.Feature(float_list=tf.train.FloatList(value=image.reshape(-1))),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
          'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[f'img-{i}'.encode()])),
      })).SerializeToString())


def load_scorer(model_run: str):
  from components.vog import checkpoints  # pylint: disable=g-import-not-at-top
  from components.vog.scoring import VogScorer  # pylint: disable=g-import-not-at-top
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


def component_run(model_run: str, examples_glob: str, output: str) -> None:
  """(b), run in its own process: prints one JSON line with seconds and peak RSS."""
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from components.vog import audit  # pylint: disable=g-import-not-at-top
  from components.vog.settings import VogSettings  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  plan = audit.plan_audit(VogSettings(batch_size=BATCH_SIZE), model_run,
                          {'data': examples_glob})
  summary = audit.run_audit(plan, beam.Pipeline(), os.path.join(output, 'scored'),
                            os.path.join(output, 'report'))
  seconds = time.perf_counter() - start
  rss_mb = peak_rss_mb()
  print(json.dumps({'seconds': seconds, 'peak_rss_mb': rss_mb,
                    'scored': summary['counts']['scored'],
                    'checkpoints': len(plan.entries)}))


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


def run_component_in_subprocess(model_run, examples_glob, output):
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.vog_throughput', '--component-run', model_run,
       examples_glob, output], capture_output=True, text=True, check=False)
  if out.returncode != 0:
    raise RuntimeError(f'the component run on {examples_glob} failed (exit code '
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
  if len(sizes) < 2 or any(n <= 0 for n in sizes):
    raise argparse.ArgumentTypeError(
        f'--scale-sizes {text!r}: give at least two positive example counts, '
        'e.g. 200000,800000 (or none to skip the scale run)')
  return tuple(sorted(sizes))


def run_scale(work: str, sizes, shards: int):
  """(d): each size through the component path in its own process; per-size figures."""
  if not sizes:
    return {}
  model_run = os.path.join(work, 'model_run')
  if not os.path.exists(os.path.join(model_run, 'vog_checkpoints', 'manifest.json')):
    images, labels = scale_data.training_set(SCALE_TRAIN_EXAMPLES)
    scale_cnn().fit(images, labels, epochs=SCALE_CHECKPOINTS, batch_size=64, verbose=0,
                    callbacks=[VogCheckpointCallback(model_run, SCALE_CHECKPOINTS)])
  runs = {}
  for size in sizes:
    print(f'(d) scale: writing {size} {scale_data.IMAGE_SHAPE} examples in {shards} '
          'gzip shards', flush=True)
    start = time.perf_counter()
    pattern = scale_data.write_examples(os.path.join(work, f'examples-{size}'), size,
                                        min(shards, size))
    written_s = time.perf_counter() - start
    print(f'(d) scale: component path on {size} examples', flush=True)
    out_dir = os.path.join(work, f'out-{size}-{int(time.time())}')
    try:
      run = run_component_in_subprocess(model_run, pattern, out_dir)
    finally:
      subprocess.run(['rm', '-rf', out_dir], check=True)
    if run['scored'] != size:
      raise RuntimeError(f'the scale run on {size} examples scored {run["scored"]}')
    run['examples_per_s'] = run['scored'] / run['seconds']
    run['data_generation_seconds'] = written_s
    runs[size] = run
  return runs


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
                      help='gzip TFRecord files per scale-run size')
  parser.add_argument('--component-run', nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.component_run:
    component_run(*args.component_run)
    return

  n = args.examples
  os.makedirs(args.output, exist_ok=True)
  work = os.path.join(args.output, 'work')
  print(f'preparing {4 * n} synthetic {IMAGE_SHAPE} images and {CHECKPOINTS} checkpoints',
        flush=True)
  images, labels = synthetic_images(4 * n, seed=0)
  model_run = os.path.join(work, 'model_run')
  if not os.path.exists(os.path.join(model_run, 'vog_checkpoints', 'manifest.json')):
    small_cnn().fit(images[:3000], labels[:3000], epochs=CHECKPOINTS, batch_size=64,
                    verbose=0, callbacks=[VogCheckpointCallback(model_run, CHECKPOINTS)])
  for size in (n, 4 * n):
    path = os.path.join(work, f'examples-{size}', 'data.gz')
    if not os.path.exists(path):
      write_tfrecords(path, images[:size], labels[:size])

  scorer = load_scorer(model_run)
  print('(a) limit: in-memory tf.function loop', flush=True)
  limit = measure_limit(scorer, images[:n], labels[:n])
  print('(c) per-example calls', flush=True)
  per_example = measure_per_example(scorer, images[:args.per_example_subset],
                                    labels[:args.per_example_subset])
  runs = {}
  for size in (n, 4 * n):
    print(f'(b) component Beam path on {size} examples', flush=True)
    out_dir = os.path.join(work, f'out-{size}-{int(time.time())}')
    runs[size] = run_component_in_subprocess(
        model_run, os.path.join(work, f'examples-{size}', '*.gz'), out_dir)
    subprocess.run(['rm', '-rf', out_dir], check=True)
  scale = run_scale(os.path.join(work, 'scale'), args.scale_sizes, args.scale_shards)
  big = runs[4 * n]
  component = big['scored'] * big['checkpoints'] / big['seconds']
  results = {
      'device': 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU',
      'cpu_count': os.cpu_count(),
      'image_shape': list(IMAGE_SHAPE), 'checkpoints': CHECKPOINTS,
      'batch_size': BATCH_SIZE, 'examples_n': n, 'examples_4n': 4 * n,
      'throughput_limit': limit,
      'throughput_component': component,
      'throughput_per_example': per_example,
      'ratio_component_vs_limit': component / limit,
      'speedup_vs_per_example': component / per_example,
      'component_seconds': {str(k): v['seconds'] for k, v in runs.items()},
      'peak_rss_mb': {str(k): v['peak_rss_mb'] for k, v in runs.items()},
      'rss_growth_4x': runs[4 * n]['peak_rss_mb'] / runs[n]['peak_rss_mb'],
      'targets': TARGETS,
  }
  if scale:
    small, large = min(scale), max(scale)
    results.update({
        'scale_image_shape': list(scale_data.IMAGE_SHAPE),
        'scale_checkpoints': scale[large]['checkpoints'],
        'scale_shards': args.scale_shards,
        'scale_sizes': sorted(scale),
        'scale_seconds': {str(k): v['seconds'] for k, v in scale.items()},
        'scale_examples_per_s': {str(k): v['examples_per_s'] for k, v in scale.items()},
        'scale_peak_rss_mb': {str(k): v['peak_rss_mb'] for k, v in scale.items()},
        'scale_data_generation_seconds': {
            str(k): v['data_generation_seconds'] for k, v in scale.items()},
        'rss_growth_4x_large': scale[large]['peak_rss_mb'] / scale[small]['peak_rss_mb'],
    })
  with open(os.path.join(args.output, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  print()
  print(f'{"measure":40s} {"value":>12s}  target')
  rows = [('(a) limit, examples x ckpts / s', limit, ''),
          ('(b) component, examples x ckpts / s', component, ''),
          ('(c) per-example, examples x ckpts / s', per_example, ''),
          ('ratio (b)/(a)', results['ratio_component_vs_limit'], '>= 0.75'),
          ('speedup (b)/(c)', results['speedup_vs_per_example'], '>= 50'),
          (f'peak RSS (b) at {n}, MB', runs[n]['peak_rss_mb'], ''),
          (f'peak RSS (b) at {4 * n}, MB', runs[4 * n]['peak_rss_mb'], ''),
          ('rss_growth_4x', results['rss_growth_4x'], '<= 1.2')]
  for size in sorted(scale):
    rows += [(f'(d) scale {size}: wall s', scale[size]['seconds'], ''),
             (f'(d) scale {size}: examples / s', scale[size]['examples_per_s'], ''),
             (f'(d) scale {size}: peak RSS, MB', scale[size]['peak_rss_mb'], '')]
  if scale:
    rows.append((f'rss_growth_4x_large ({max(scale)}/{min(scale)})',
                 results['rss_growth_4x_large'], '<= 1.2'))
  for name, value, target in rows:
    print(f'{name:40s} {value:12.2f}  {target}')
  print(f'\nwrote {os.path.join(args.output, "results.json")}')


if __name__ == '__main__':
  main()
