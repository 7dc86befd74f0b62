"""Pickled size of what each input file's writer receives of the Ranking, by budget.

    python -m benchmarks.ranking_size [--output bench_output]

A Ranking of 10 classes (1,001 quantiles each) in one split of 100 input files, with the
`budget` flagged examples spread over the files, is cut with `Ranking.for_file` for one
file; its pickled size (what crosses the grouping by file) is measured with the eight
suspicions per flagged example that label mode carries, and without them. Writes
ranking_size.json: {budget: {whole, part_with_signals, part_without_signals}} in bytes.
"""

import argparse
import json
import os
import pickle

import numpy as np

from components.vog.compute import percentiles

CLASSES = 10
FILES = 100
BUDGETS = (200, 10_000, 100_000)


def sizes(budget: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  classes = {('eval', c): percentiles.ClassScores(
      1000, 0.1, 0.2, tuple(np.sort(rng.random(1001)).tolist())) for c in range(CLASSES)}
  files = rng.integers(0, FILES, budget)
  ranks = {('eval', int(f), i): i + 1 for i, f in enumerate(files.tolist())}
  suspicions = {p: tuple(rng.random(8).astype(np.float32).astype(float).tolist())
                for p in ranks}
  whole = percentiles.Ranking('class', (50, 90), classes, ranks,
                              flagged_suspicions=suspicions)
  bare = percentiles.Ranking('class', (50, 90), classes, ranks)
  return {'whole': len(pickle.dumps(whole)),
          'part_with_signals': len(pickle.dumps(whole.for_file('eval', 0))),
          'part_without_signals': len(pickle.dumps(bare.for_file('eval', 0)))}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--output', default='bench_output')
  args = parser.parse_args(argv)
  found = {budget: sizes(budget) for budget in BUDGETS}
  print(f'{"budget":>8} {"whole MB":>9} {"part MB":>8} {"part, no signals MB":>20}')
  for budget, s in found.items():
    print(f'{budget:>8,} {s["whole"] / 1e6:>9.3f} {s["part_with_signals"] / 1e6:>8.3f} '
          f'{s["part_without_signals"] / 1e6:>20.3f}')
  os.makedirs(args.output, exist_ok=True)
  with open(os.path.join(args.output, 'ranking_size.json'), 'w') as f:
    json.dump({str(k): v for k, v in found.items()}, f, indent=2)


if __name__ == '__main__':
  main()
