"""The DifficultyReport's format: its files, summary keys and the fields added to examples.

This module is the one owner of these names. The audit writes through them, and everything
that reads a report (the review gate, the demo summary, `vog-audit runs` and `vog-audit
report`) reads through them.

A DifficultyReport folder holds:

    summary.json               settings, checkpoints, counts per split and class, drift
    flagged.jsonl              at most `inspection_budget` rows, highest score first
    flagged_examples.tfrecord  the flagged examples' bytes, in the same order
    quarantine-SSSSS-of-NNNNN.jsonl
                               every example that could not be scored, with the reason
                               (sharded: its size grows with the data)
    report.html, flagged.png   the review page (the montage only for image inputs)

Every example of `scored_examples` carries its original features plus the VoG fields
below, and `example_id` when it had none (a fingerprint of its bytes).
"""

FORMAT_VERSION = 2

SUMMARY_FILE = 'summary.json'
FLAGGED_FILE = 'flagged.jsonl'
FLAGGED_EXAMPLES_FILE = 'flagged_examples.tfrecord'
QUARANTINE_PREFIX = 'quarantine'
QUARANTINE_SUFFIX = '.jsonl'
QUARANTINE_GLOB = QUARANTINE_PREFIX + '-*-of-*' + QUARANTINE_SUFFIX
REPORT_FILE = 'report.html'
MONTAGE_FILE = 'flagged.png'

# summary.json: `counts` (totals) and `splits[<split>]` hold these headline counts.
SEEN = 'seen'
SCORED = 'scored'
QUARANTINED = 'quarantined'
FLAGGED = 'flagged'
HEADLINE = (SEEN, SCORED, QUARANTINED, FLAGGED)

# Features VarianceOfGradients adds to every scored example.
VOG_SCORE = 'vog_score'
VOG_RAW = 'vog_raw'
VOG_PERCENTILE = 'vog_percentile'
VOG_DECILE = 'vog_decile'
VOG_BUCKET = 'vog_bucket'
VOG_FLAGGED = 'vog_flagged'
VOG_TARGET_CLASS = 'vog_target_class'
FLOAT_FIELDS = (VOG_SCORE, VOG_RAW, VOG_PERCENTILE)
INT_FIELDS = (VOG_DECILE, VOG_FLAGGED, VOG_TARGET_CLASS)
BYTES_FIELDS = (VOG_BUCKET,)
VOG_FIELDS = FLOAT_FIELDS + INT_FIELDS + BYTES_FIELDS
BUCKETS = ('easy', 'medium', 'hard')
