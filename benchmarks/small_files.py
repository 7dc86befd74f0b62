"""Many small input files against one large one: peak RSS, time and output files.

    python -m benchmarks.small_files --output bench_output [--examples 10000]

The same N 16x16x1 examples (the scale run's images and model, benchmarks/scale_data.py)
are written once as one gzip TFRecord file and once as N one-record files, in one split
that is copied in full (so every output kind is written: scored copies, score table,
history). Each layout goes through the component path (plan_audit + run_audit on the
FnApiRunner) in a fresh process, which reports its own peak RSS (VmHWM), wall time, the
work units it read and the files it wrote. The headline is `rss_ratio_small_files`: peak
RSS with N files over peak RSS with one file (target <= 1.5). Writes small_files.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import scale_data  # pylint: disable=g-import-not-at-top
from benchmarks import vog_throughput  # pylint: disable=g-import-not-at-top
from components import VogCheckpointCallback  # pylint: disable=g-import-not-at-top

SPLIT = 'eval'
CHECKPOINTS = 4
TRAIN_EXAMPLES = 2048
TARGET = 1.5


def _example(image, label, index: int) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(float_list=tf.train.FloatList(value=image.reshape(-1))),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
      'example_id': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[f'img-{index}'.encode()])),
  })).SerializeToString()


def write_layouts(folder: str, n: int) -> Dict[str, str]:
  """{layout: file pattern}: the n examples as one file ('one') and as n files ('many')."""
  images, labels = scale_data.training_set(n, seed=1)
  records = [_example(im, lab, i) for i, (im, lab) in enumerate(zip(images, labels))]
  options = tf.io.TFRecordOptions(compression_type='GZIP')
  patterns = {}
  for layout, shards in (('one', [records]), ('many', [[r] for r in records])):
    split_dir = os.path.join(folder, layout, f'Split-{SPLIT}')
    os.makedirs(split_dir, exist_ok=True)
    for i, shard in enumerate(shards):
      path = os.path.join(split_dir, f'data_tfrecord-{i:05d}-of-{len(shards):05d}.gz')
      with tf.io.TFRecordWriter(path, options) as writer:
        for record in shard:
          writer.write(record)
    patterns[layout] = os.path.join(split_dir, '*.gz')
  return patterns


def _count_files(folder: str) -> int:
  return sum(len(files) for _, _, files in os.walk(folder))


def layout_run(spec: Dict[str, Any]) -> Dict[str, Any]:
  """One layout through the component path, in this process (a fresh one)."""
  # pylint: disable=g-import-not-at-top
  from components.vog import audit
  from components.vog import audit_plan
  from components.vog.settings import VogSettings
  # pylint: enable=g-import-not-at-top
  pipeline, _ = vog_throughput.fn_api_pipeline()
  settings = VogSettings(batch_size=vog_throughput.BATCH_SIZE, copy_splits='all')
  start = time.perf_counter()
  plan = audit_plan.plan_audit(settings, spec['model_run'], {SPLIT: spec['pattern']})
  summary = audit.run_audit(plan, pipeline, os.path.join(spec['output'], 'scored'),
                            os.path.join(spec['output'], 'report'))
  return {'seconds': time.perf_counter() - start,
          'peak_rss_mb': vog_throughput.peak_rss_mb(),
          'scored': summary['counts']['scored'],
          'input_files': len(plan.split_files[SPLIT]),
          'work_units': len(plan.split_units[SPLIT]),
          'scored_files': _count_files(os.path.join(spec['output'], 'scored')),
          'report_files': _count_files(os.path.join(spec['output'], 'report'))}


def _in_subprocess(spec: Dict[str, Any]) -> Dict[str, Any]:
  try:
    out = subprocess.run([sys.executable, '-m', 'benchmarks.small_files', '--layout-run',
                          json.dumps(spec)], capture_output=True, text=True, check=False)
  finally:
    shutil.rmtree(spec['output'], ignore_errors=True)
  if out.returncode != 0:
    raise RuntimeError(f'the run on {spec["pattern"]} failed (exit code {out.returncode}):'
                       f'\n{out.stderr[-4000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default='bench_output')
  parser.add_argument('--examples', type=int, default=10_000)
  parser.add_argument('--layout-run', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.layout_run:
    print(json.dumps(layout_run(json.loads(args.layout_run))))
    return
  os.makedirs(args.output, exist_ok=True)
  work = os.path.join(args.output, 'small_files_work')
  shutil.rmtree(work, ignore_errors=True)
  model_run = os.path.join(work, 'model_run')
  images, labels = scale_data.training_set(TRAIN_EXAMPLES)
  vog_throughput.scale_cnn().fit(
      images, labels, epochs=CHECKPOINTS, batch_size=64, verbose=0,
      callbacks=[VogCheckpointCallback(model_run, CHECKPOINTS)])
  print(f'writing {args.examples} examples as one file and as {args.examples} files',
        flush=True)
  patterns = write_layouts(os.path.join(work, 'examples'), args.examples)
  runs = {}
  for layout, pattern in patterns.items():
    print(f'component path on the {layout!r} layout', flush=True)
    runs[layout] = _in_subprocess({'model_run': model_run, 'pattern': pattern,
                                   'output': os.path.join(work, f'out-{layout}')})
    if runs[layout]['scored'] != args.examples:
      raise RuntimeError(f'the {layout!r} layout scored {runs[layout]["scored"]} of '
                         f'{args.examples}')
  shutil.rmtree(work, ignore_errors=True)
  ratio = runs['many']['peak_rss_mb'] / runs['one']['peak_rss_mb']
  results = {'examples': args.examples, 'runs': runs, 'rss_ratio_small_files': ratio,
             'target': TARGET}
  with open(os.path.join(args.output, 'small_files.json'), 'w') as f:
    json.dump(results, f, indent=2)
  print(f'\n{"":28}{"one file":>12}{f"{args.examples} files":>14}')
  for key, label in (('input_files', 'input files'), ('work_units', 'work units'),
                     ('seconds', 'seconds'), ('peak_rss_mb', 'peak RSS, MB'),
                     ('scored_files', 'scored_examples files'),
                     ('report_files', 'difficulty_report files')):
    one, many = runs['one'][key], runs['many'][key]
    fmt = '{:>12.1f}{:>14.1f}' if isinstance(one, float) else '{:>12}{:>14}'
    print(f'{label:28}' + fmt.format(one, many))
  print(f'{"rss_ratio_small_files":28}{ratio:>26.2f}  (target <= {TARGET})')


if __name__ == '__main__':
  main()
