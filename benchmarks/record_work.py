"""Where the component's time goes per example: each step of the record path, timed alone.

    python -m benchmarks.record_work [--examples 4000] [--output bench_output]

On synthetic 32x32x3 images and the benchmark's small CNN with 5 checkpoints (the same
as `make bench`), it times, in microseconds per example: reading and un-gzipping the
records with verified framing, parsing them one by one and as a batch, the gradient
pass over all checkpoints, adding the VoG fields, and gzip-writing the result. Writes
record_work.json under --output. Not a test.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import vog_throughput  # pylint: disable=g-import-not-at-top
from components.vog import audit  # pylint: disable=g-import-not-at-top
from components.vog.checkpoints import VogCheckpointCallback  # pylint: disable=g-import-not-at-top
from components.vog import beam_writers  # pylint: disable=g-import-not-at-top
from components.vog import examples_io  # pylint: disable=g-import-not-at-top
from components.vog import record_files  # pylint: disable=g-import-not-at-top
from components.vog.beam_audit import ScoredExample  # pylint: disable=g-import-not-at-top
from components.vog.settings import VogSettings  # pylint: disable=g-import-not-at-top


def _timed(fn, repeat: int = 3) -> float:
  best = float('inf')
  for _ in range(repeat):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--examples', type=int, default=4000)
  parser.add_argument('--batch-size', type=int, default=256)
  parser.add_argument('--output', default='bench_output')
  args = parser.parse_args(argv)
  n, batch = args.examples, args.batch_size
  work = tempfile.mkdtemp(prefix='vog_record_work_')
  model_run = os.path.join(work, 'run')
  images, labels = vog_throughput.synthetic_images(max(n, 3000), seed=1)
  vog_throughput.small_cnn().fit(
      images[:3000], labels[:3000], epochs=vog_throughput.CHECKPOINTS, batch_size=64,
      verbose=0, callbacks=[VogCheckpointCallback(model_run, vog_throughput.CHECKPOINTS)])
  images, labels = images[:n], labels[:n]
  path = os.path.join(work, 'data.gz')
  vog_throughput.write_tfrecords(path, images, labels)
  plan = audit.plan_audit(VogSettings(batch_size=batch), model_run, {'train': path})
  example_parser = audit.ParserFactory(plan.input_specs, plan.settings, plan.num_classes,
                                       None)()
  scorer = audit.ScorerFactory(plan.entries, None, 'loss', 'label')()
  records = [r for _, r in record_files.read_records(path, 'GZIP')]
  positioned = [examples_io.InputRecord('train', 0, i, r) for i, r in enumerate(records)]
  chunks = [positioned[i:i + batch] for i in range(0, n, batch)]
  parsed = [example_parser.parse_batch(c)[0] for c in chunks]
  scorer.score(parsed[0].inputs, np.asarray(parsed[0].labels))  # trace once

  def score_all():
    for b in parsed:
      scorer.score(b.inputs, np.asarray(b.labels))

  fake = ScoredExample('train', 0, 0, 'id', True, 1, 1, 1, 0.5, 0.1, 50.0, 5, 'medium')
  fields = beam_writers.vog_fields(fake)
  out_path = os.path.join(work, 'out.gz')

  def write_all():
    options = tf.io.TFRecordOptions(compression_type='GZIP')
    with tf.io.TFRecordWriter(out_path, options) as writer:
      for r in records:
        writer.write(r)

  steps = {
      'read + un-gzip + verify framing': _timed(
          lambda: sum(1 for _ in record_files.read_records(path, 'GZIP'))),
      'parse, one record at a time': _timed(
          lambda: [example_parser.parse('train', r) for r in records]),
      'parse, a batch per call': _timed(
          lambda: [example_parser.parse_batch(c) for c in chunks]),
      f'gradients over {len(plan.entries)} checkpoints': _timed(score_all, repeat=1),
      'add the VoG fields': _timed(lambda: [examples_io.with_vog_features(
          r, 'example_id', 'id', fields, True) for r in records]),
      'gzip + write': _timed(write_all),
  }
  per_example = {k: 1e6 * v / n for k, v in steps.items()}
  print(f'{"step":<40} {"us / example":>14}')
  for name, us in per_example.items():
    print(f'{name:<40} {us:>14.1f}')
  os.makedirs(args.output, exist_ok=True)
  with open(os.path.join(args.output, 'record_work.json'), 'w') as f:
    json.dump({'examples': n, 'batch_size': batch, 'checkpoints': len(plan.entries),
               'us_per_example': per_example}, f, indent=2)


if __name__ == '__main__':
  main()
