"""Variance of Gradients: the TFX component, its executor and settings, and the audit.

The rooms, each importing only from the rooms listed before it (and NumPy, TensorFlow):

    compute/    the VoG and label-error math: gradients over checkpoints (scoring.py),
                the signals and their registry (signals.py), percentiles and the ranking
                (percentiles.py), checkpoint stages, device set-up, flag kinds, auto's
                rule, slice statistics. NumPy and TensorFlow only.
    vocabulary.py
                the names every room shares: files of a report, fields added to the
                examples, buckets, headline counts. Imports compute/ (the signal names).
    inputs/     reading what the audit is given: TFRecord files with their framing
                checked, tf.Examples into model inputs, Transform graphs, checkpoints and
                their manifest, folders on any file system (storage.py).
    report/     the DifficultyReport: its types (summary_model.py, drift_model.py,
                report_rows.py, on the checks of json_checks.py), its one reader
                (report_format.py), the Parquet score table, the review page, writing
                the folder, the baseline.
    dataflow/   the Beam pipeline: reading work units, scoring, the scored batch's
                columns, writing, drift against the baseline, the summary's tallies, the
                slices (with TFDV), and progress.
    (here)      the component (component.py, spec_keys.py, artifacts.py), its executor
                and settings, the audit: audit_plan.py (checks before Beam),
                user_module.py, factories.py (what each worker builds), memorisation.py
                (the sample auto reads), audit.py (run and publish), report_page.py (rebuilding the page), audit_errors.py;
                and the Beam arguments.
"""
