"""Where the audit's TensorFlow work may take an accelerator's memory.

TensorFlow takes nearly all of a GPU's memory the first time it runs an op there,
unless memory growth is on. The launcher of an audit loads every checkpoint to plan it
(input signature, classes, layers); without growth that alone would hold the GPU of the
machine it runs on before any worker starts, and every worker process sharing a GPU
(one SDK process per GPU is the setting the README gives, but a runner may start more)
would hold it whole. `grow_gpu_memory` turns growth on for this process: for the GPUs
TensorFlow has not started yet through `tf.config`, and for any it starts later through
TF_FORCE_GPU_ALLOW_GROWTH (kept when the user set it).
"""

import os
from typing import List

from absl import logging
import tensorflow as tf

GROWTH_VARIABLE = 'TF_FORCE_GPU_ALLOW_GROWTH'


def grow_gpu_memory() -> List[str]:
  """Turns on memory growth for this process's GPUs; returns the names of those whose
  growth is on (none on a machine without a GPU). A GPU that TensorFlow already started
  keeps what it took, which is logged. A user who set TF_FORCE_GPU_ALLOW_GROWTH to
  anything but `true` keeps TensorFlow's whole-GPU allocation."""
  if os.environ.setdefault(GROWTH_VARIABLE, 'true').strip().lower() != 'true':
    return []
  growing = []
  for gpu in tf.config.list_physical_devices('GPU'):
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError as e:  # already initialised in this process
      logging.warning('GPU %s was started before the audit could turn on memory growth '
                      '(%s); it keeps the memory it took', gpu.name, e)
    if tf.config.experimental.get_memory_growth(gpu):
      growing.append(gpu.name)
  return growing
