"""TFX components for Variance of Gradients data audits.

`VogCheckpointCallback` goes into the Trainer's module file; `VarianceOfGradients`
scores every example; `HumanReviewGate` asks a person before the Pusher ships.
Names load on first use, so importing the package does not import TensorFlow.
"""

import importlib
import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf-keras); this must precede any TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

_PUBLIC = {
    'HumanReviewGate': 'components.review_gate.component',
    'VogCheckpointCallback': 'components.vog.inputs.checkpoints',
    'VarianceOfGradients': 'components.vog.component',
    'DifficultyReport': 'components.vog.artifacts',
    'ShippedAudit': 'components.vog.artifacts',
}


def __getattr__(name):
  if name in _PUBLIC:
    return getattr(importlib.import_module(_PUBLIC[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = sorted(_PUBLIC)
