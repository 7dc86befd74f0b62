"""The audit's Beam pipeline: work units read in batches and scored (beam_audit.py), a
scored batch's columns (score_batch.py), the writers (beam_writers.py), drift against
the baseline's history (drift.py), the summary's tallies (audit_summary.py), what the
flagged examples have in common (slices.py, which also runs TFDV's statistics), and the
progress a run shows.

Imports compute/, vocabulary.py, inputs/ and report/, never the component.
"""
