"""Which saved checkpoints a VoG run uses: the stage, then at most `num_checkpoints`."""

from typing import List, Sequence, TypeVar, Union

import numpy as np

STAGES = ('early', 'middle', 'late', 'complete')

T = TypeVar('T')


def evenly_spaced(items: Sequence[T], count: int) -> List[T]:
  """At most `count` items spread evenly over `items`, keeping the first and last."""
  if count >= len(items):
    return list(items)
  positions = np.round(np.linspace(0, len(items) - 1, count)).astype(int)
  return [items[p] for p in positions]


def checkpoints_for_stage(steps: Sequence[int], stage: Union[str, Sequence[int]],
                          num_checkpoints: int) -> List[int]:
  """Returns the training steps of the checkpoints a VoG run uses, in step order.

  `steps` are the saved checkpoints' steps. `stage` is `early`, `middle` or `late` (the
  first, second or last third of the saved checkpoints, split as evenly as possible with
  the earlier thirds taking the remainder), `complete` (all), or an explicit list of
  steps. At most `num_checkpoints` are kept, evenly spaced, first and last included.
  Refuses an unknown stage, a step that was not saved, `num_checkpoints` < 2, and any
  selection of fewer than 2 checkpoints.
  """
  if num_checkpoints < 2:
    raise ValueError(f'num_checkpoints={num_checkpoints}; VoG needs at least 2')
  ordered = sorted(steps)
  if isinstance(stage, str):
    if stage not in STAGES:
      raise ValueError(f'stage={stage!r} is not supported; choose one of '
                       f'{", ".join(STAGES)} or give a list of saved steps')
    if stage == 'complete':
      chosen = ordered
    else:
      thirds = np.array_split(np.arange(len(ordered)), 3)
      part = thirds[STAGES.index(stage)]
      chosen = [ordered[i] for i in part]
  else:
    wanted = sorted(set(int(s) for s in stage))
    unknown = [s for s in wanted if s not in set(ordered)]
    if unknown:
      raise ValueError(f'stage names steps {unknown} that were not saved; saved steps '
                       f'are {ordered}')
    chosen = wanted
  if len(chosen) < 2:
    raise ValueError(
        f'stage {stage!r} holds {len(chosen)} of the {len(ordered)} saved checkpoints; '
        "VoG needs at least 2 - use stage='complete' or save more checkpoints with "
        'VogCheckpointCallback(max_checkpoints=...)')
  return evenly_spaced(chosen, num_checkpoints)
