"""Reading what an audit is given: TFRecord files (framing and checksums checked),
tf.Examples into model inputs, Transform graphs, checkpoints and their manifest, and
folders on any file system TensorFlow knows (storage.py).

Imports compute/ and vocabulary.py, never the report, the dataflow or the component.
"""
