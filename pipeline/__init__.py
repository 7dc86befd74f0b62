"""The reference VoG audit pipeline, its runners and the `vog-audit` command line."""

import os

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf-keras); this must precede any TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
