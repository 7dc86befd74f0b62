"""The VoG and label-error math: gradients over checkpoints, the signals and their
registry, percentiles and the ranking, checkpoint stages and device set-up; the kind of
each flag (flag_kinds.py), what `rank_by='auto'` makes of memorisation (auto_rank.py), and
the statistics of slices that over-index among the flagged (slice_stats.py).

Imports NumPy and TensorFlow only (and absl's logging, which comes with TensorFlow),
never another room: this is what a change to the formula touches, and what the
benchmarks time.
"""
