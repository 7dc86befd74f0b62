"""Variance of Gradients: the TFX component, its executor and settings, and the audit.

The rooms, each importing only from the rooms listed before it (and NumPy, TensorFlow):

    compute/    the VoG and label-error math: gradients over checkpoints (scoring.py),
                the signals and their registry (signals.py), percentiles and the ranking
                (percentiles.py), checkpoint stages, device set-up. NumPy and TensorFlow
                only.
    vocabulary.py
                the names every room shares: files of a report, fields added to the
                examples, buckets, headline counts. Imports compute/ (the signal names).
    inputs/     reading what the audit is given: TFRecord files with their framing
                checked, tf.Examples into model inputs, Transform graphs, checkpoints and
                their manifest, folders on any file system (storage.py).
    report/     the DifficultyReport: its format and reader (report_format.py), the
                Parquet score table, the review page, writing the folder, the baseline.
    dataflow/   the Beam pipeline: reading work units, scoring, the scored batch's
                columns, writing, drift against the baseline, the summary's tallies, and
                progress.
    (here)      the component (component.py, spec_keys.py, artifacts.py), its executor
                and settings, audit.py (plan, run, publish) and the Beam arguments.
"""
