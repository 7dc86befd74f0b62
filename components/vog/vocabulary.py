"""The names every room of the audit shares: the files of a DifficultyReport, the keys of
its summary.json, the fields the audit adds to every scored example, the buckets, the
drift properties of ML Metadata, and the shard names.

A DifficultyReport folder holds:

    summary.json               settings, checkpoints, counts per split and class, drift
    flagged.jsonl              at most `inspection_budget` rows, highest score first
    flagged_examples.tfrecord  the flagged examples' bytes, in the same order
    quarantine-SSSSS-of-NNNNN.jsonl
                               every example that could not be scored, with the reason
                               (sharded: its size grows with the data)
    history-SSSSS-of-NNNNN.jsonl.gz
                               one compact row per scored example, keyed by example_id:
                               whether it was flagged and for how many audits in a row;
                               the next audit that takes this report as its baseline reads
                               it instead of every older report (report_format.HistoryRow)
    score_table/split=<name>/part-SSSSS-of-NNNNN.parquet
                               one row per scored example of every split: its id,
                               position, label, classes, scores, signals, placement and
                               flag (owned by score_table.py; what analysts query)
    slices.json                per split, the feature values and label -> predicted pairs
                               the flagged or hard examples over-index on (dataflow/slices.py)
    report.html, flagged.png   the review page (the montage only for image inputs)

Every example of `scored_examples` (the splits in summary.json's `copied_splits`)
carries its original features plus the VoG fields below, `example_id` when it had none
(a fingerprint of its bytes), and in label_mode='label' the label-error signals of
SIGNAL_FIELDS (signals.REGISTRY).

Imports only the signal registry (compute/signals.py), for the signal fields, and the
flag kinds (compute/flag_kinds.py), for their properties.
"""

from typing import Tuple

from components.vog.compute import flag_kinds
from components.vog.compute import signals as signals_lib

FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
RANKED_BY_MIN_VERSION = 4  # reports before it were all ranked by VoG
DRIFT_MIN_VERSION = 3  # baselines before it lack hard counts, decile counts and history

SUMMARY_FILE = 'summary.json'
FLAGGED_FILE = 'flagged.jsonl'
FLAGGED_EXAMPLES_FILE = 'flagged_examples.tfrecord'
QUARANTINE_PREFIX = 'quarantine'
QUARANTINE_SUFFIX = '.jsonl'
QUARANTINE_GLOB = QUARANTINE_PREFIX + '-*-of-*' + QUARANTINE_SUFFIX
LEGACY_QUARANTINE_FILE = QUARANTINE_PREFIX + QUARANTINE_SUFFIX  # format_version 1: one file
HISTORY_PREFIX = 'history'
HISTORY_SUFFIX = '.jsonl.gz'
HISTORY_GLOB = HISTORY_PREFIX + '-*-of-*' + HISTORY_SUFFIX
REPORT_FILE = 'report.html'
# What the flagged examples have in common, per split (dataflow/slices.py writes it).
SLICES_FILE = 'slices.json'
MONTAGE_FILE = 'flagged.png'
RECORD_BASE64 = 'record_base64'  # an example's bytes inside a JSON line

# summary.json: `counts` (totals) and `splits[<split>]` hold these headline counts.
SEEN = 'seen'
SCORED = 'scored'
QUARANTINED = 'quarantined'
FLAGGED = 'flagged'
HEADLINE = (SEEN, SCORED, QUARANTINED, FLAGGED)
# The drift headline as ML Metadata custom properties of the DifficultyReport, set only
# when drift was computed: fractions change in points of share (0.05 = 5 points).
FLAGGED_SHARE_CHANGE = 'flagged_share_change'  # float
NEWLY_FLAGGED = 'newly_flagged'  # int
STILL_FLAGGED_COUNT = 'still_flagged'  # int
MAX_CLASS_HARD_SHARE_INCREASE = 'max_class_hard_share_increase'  # float, 0 when none rose
MAX_HARD_SHARE_CLASS = 'max_hard_share_class'  # string "<split>/<class>", '' when none rose
DRIFT_BASELINE_URI = 'drift_baseline_uri'  # string
# Set instead of the others when a baseline was given but could not be compared: why.
DRIFT_UNAVAILABLE = 'drift_unavailable'  # string
DRIFT_PROPERTIES = (FLAGGED_SHARE_CHANGE, NEWLY_FLAGGED, STILL_FLAGGED_COUNT,
                    MAX_CLASS_HARD_SHARE_INCREASE, MAX_HARD_SHARE_CLASS, DRIFT_BASELINE_URI,
                    DRIFT_UNAVAILABLE)
# What the flagged examples are, as ML Metadata custom properties of the DifficultyReport:
# how many of every split's flagged examples are of each kind (ints, set on every audit;
# compute/flag_kinds.py), whether the model memorised its labels (int 0/1, set only when
# measured: with labels, when a sample could be scored), and the slice that stands out
# most across splits, as one line (string, '' when none).
FLAGGED_KIND_PROPERTIES = {flag_kinds.WRONG_LABEL: 'flagged_wrong_label',
                           flag_kinds.ATYPICAL: 'flagged_atypical',
                           flag_kinds.UNCLEAR: 'flagged_unclear'}
MEMORISED = 'memorised'
TOP_SLICE = 'top_slice'
# summary.json keys every reader needs; the loader also needs `format_version` and splits.
SETTINGS = 'settings'
CHECKPOINTS = 'checkpoints'
COUNTS = 'counts'
REQUIRED_SUMMARY_KEYS = (SETTINGS, CHECKPOINTS, COUNTS)
# Per-class rows of summary.json: the mean and std of vog_raw within the class.
VOG_RAW_MEAN = 'vog_raw_mean'
VOG_RAW_STD = 'vog_raw_std'

# Features VarianceOfGradients adds to every scored example.
VOG_SCORE = 'vog_score'
VOG_RAW = 'vog_raw'
VOG_PERCENTILE = 'vog_percentile'
VOG_DECILE = 'vog_decile'
VOG_BUCKET = 'vog_bucket'
VOG_FLAGGED = 'vog_flagged'
VOG_TARGET_CLASS = 'vog_target_class'
# The label-error signals every scored example carries too in label_mode='label' are
# those of signals.REGISTRY, in its order. Read from it each time (see __getattr__ below):
#   SIGNAL_FIELDS    every signal's field (`audit_<name>`);
#   INT_SIGNALS      the fields of the counts (the others are floats);
#   SIGNAL_NAMES     every signal's short name: what `rank_by` may name besides VoG;
#   AGREEMENT_NAMES  SIGNAL_NAMES and VOG: what a flagged row's `agreeing` may list.
VOG = 'vog'
# summary.json: what ranked the examples (one of AGREEMENT_NAMES; `vog` before version 4).
RANKED_BY = 'ranked_by'
FLOAT_FIELDS = (VOG_SCORE, VOG_RAW, VOG_PERCENTILE)
INT_FIELDS = (VOG_DECILE, VOG_FLAGGED, VOG_TARGET_CLASS)
BYTES_FIELDS = (VOG_BUCKET,)
VOG_FIELDS = FLOAT_FIELDS + INT_FIELDS + BYTES_FIELDS
EASY, MEDIUM, HARD = 'easy', 'medium', 'hard'
BUCKETS = (EASY, MEDIUM, HARD)
# drift_status of a flagged example: not in the baseline's data at all; in it but not
# flagged then (NEWLY_FLAGGED, above: also the drift property counting them); flagged
# then too.
NEW_DATA, STILL_FLAGGED = 'new_data', 'still_flagged'
DRIFT_STATUSES = (NEW_DATA, NEWLY_FLAGGED, STILL_FLAGGED)

def _signal_fields() -> Tuple[str, ...]:
  """SIGNAL_FIELDS: the field of every registered signal, in registry order."""
  return signals_lib.fields()


def _int_signals() -> Tuple[str, ...]:
  """INT_SIGNALS: the fields of the registered counts, in registry order."""
  return tuple(s.field for s in signals_lib.REGISTRY if s.kind == signals_lib.COUNT)


def _signal_names() -> Tuple[str, ...]:
  """SIGNAL_NAMES: the short name of every registered signal, in registry order."""
  return signals_lib.names()


def _agreement_names() -> Tuple[str, ...]:
  """AGREEMENT_NAMES: every signal's short name, then VOG."""
  return _signal_names() + (VOG,)


_DERIVED = {'SIGNAL_FIELDS': _signal_fields, 'INT_SIGNALS': _int_signals,
            'SIGNAL_NAMES': _signal_names, 'AGREEMENT_NAMES': _agreement_names}


def __getattr__(name: str):
  # The names derived from signals.REGISTRY, computed when read.
  if name in _DERIVED:
    return _DERIVED[name]()
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def history_shard_name(index: int, count: int) -> str:
  """`history-00003-of-00008.jsonl.gz` for shard 3 of 8."""
  return f'{HISTORY_PREFIX}-{index:05d}-of-{count:05d}{HISTORY_SUFFIX}'


def quarantine_shard_name(index: int, count: int) -> str:
  """`quarantine-00003-of-00008.jsonl` for shard 3 of 8 (as Beam names shards)."""
  return f'{QUARANTINE_PREFIX}-{index:05d}-of-{count:05d}{QUARANTINE_SUFFIX}'
