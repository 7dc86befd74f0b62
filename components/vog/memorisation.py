"""Whether the model memorised its training labels, from a sample scored before Beam starts.

`measure` reads up to SAMPLE_SIZE examples of the `train` split (or, when the audit does
not score one, of its first split, and says so), spread over the split's files: the
first records of evenly spaced files, then of the others while the sample is short, at
most SAMPLE_MAX_FILES files opened. It parses them with the audit's own parser, runs
them through the last selected checkpoint (one forward pass, no gradients), and hands
the logits to compute/auto_rank.py, whose Evidence is the share of their labels that
checkpoint fits. `rank_by='auto'` ranks by what auto_rank.choose makes of it, and the
flag kinds (compute/flag_kinds.py) read `memorised` from it.

A record that cannot be parsed, or that the model refuses, is left out of the sample
(the audit quarantines it later); a damaged file ends its part of the sample where the
damage starts (the audit names it later). A sample with no example left gives no
evidence (None), and the reason says why.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from components.vog.compute import auto_rank
from components.vog.dataflow import beam_audit
from components.vog.inputs import examples_io
from components.vog.inputs import record_files

SAMPLE_SIZE = 1000  # examples scored for the evidence, at most
SAMPLE_MAX_FILES = 64  # files opened for them, at most
SAMPLE_SPREAD_FILES = 16  # files the sample is first spread over
TRAIN_SPLIT = 'train'


@dataclasses.dataclass(frozen=True)
class MemorisationSample:
  """What the sample showed.

  split: the split sampled (TRAIN_SPLIT unless the audit does not score it).
  records: records read for the sample.
  files: files they came from.
  evidence: auto_rank.Evidence of the examples scored; None when none could be.
  note: how the sample was drawn, and why it is not of `train` or gave no evidence.
  """
  split: str
  records: int
  files: int
  evidence: Optional[auto_rank.Evidence]
  note: str

  @property
  def memorised(self) -> Optional[bool]:
    """Evidence.memorised; None when no example could be scored."""
    return None if self.evidence is None else self.evidence.memorised

  def to_json(self) -> Dict[str, Any]:
    """summary.json's `memorisation` (summary_model.Memorisation)."""
    ev = self.evidence
    return {'split': self.split, 'sampled': int(self.records), 'files': int(self.files),
            'evidence': None if ev is None else ev.as_dict(), 'memorised': self.memorised,
            'note': self.note}

  def auto_rank(self) -> Tuple[str, Dict[str, Any]]:
    """(signal, summary.json's `auto_rank`): auto_rank.choose's signal and reason, with
    where the evidence came from."""
    signal, reason = auto_rank.choose(self.evidence)
    ev = self.evidence
    reason.update(
        chosen=signal, split=self.split, sampled=int(self.records),
        examples=0 if ev is None else int(ev.examples),
        fitted_share=None if ev is None or ev.fitted_share is None
        else round(float(ev.fitted_share), 6),
        reason=f'{reason["rule"]}; {self.note}')
    return signal, reason


def spread_order(count: int, spread: int = SAMPLE_SPREAD_FILES) -> List[int]:
  """0..count-1 with `spread` evenly spaced indices first (the first and last among
  them), then the others in order."""
  if count <= 0:
    return []
  first = sorted({round(i * (count - 1) / (spread - 1)) for i in range(spread)}
                 if count > spread and spread > 1 else set(range(min(count, spread))))
  chosen = set(first)
  return first + [i for i in range(count) if i not in chosen]


def sample_records(files: Sequence[beam_audit.InputFile], size: int = SAMPLE_SIZE,
                   max_files: int = SAMPLE_MAX_FILES) -> Tuple[List[bytes], int]:
  """(up to `size` records, files read) from `files`, spread over them (spread_order).

  Each file gives at most its share of what is still missing (the missing records over
  the spread files not yet read), so the sample spreads over the first
  SAMPLE_SPREAD_FILES files of the order; files after those are read only while the
  sample is short, up to `max_files` files in all. Records above max_record_bytes are
  passed over; a damaged file gives the records before the damage.
  """
  out: List[bytes] = []
  order = spread_order(len(files))[:max_files]
  spread = min(len(order), SAMPLE_SPREAD_FILES)
  opened = 0
  for position, i in enumerate(order):
    missing = size - len(out)
    if missing <= 0:
      break
    share = -(-missing // max(1, spread - position)) if position < spread else missing
    opened += 1
    taken = 0
    try:
      for _, record in beam_audit.read_records(files[i]):
        if taken >= share:
          break
        if isinstance(record, record_files.OversizedRecord):
          continue
        out.append(record)
        taken += 1
    except record_files.DamagedRecordFile as e:
      logging.warning('The memorisation sample stops reading %s at its damage: %s',
                      files[i].path, e)
  return out, opened


def _logits(scorer, batch: examples_io.ScorableBatch) -> Tuple[np.ndarray, np.ndarray]:
  """(the last checkpoint's logits [n, C], taken [n]) of the batch's examples: the whole
  batch at once, or when the model refuses it, each example alone; a row the model
  refused is left out of the logits, and False in `taken`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  latest = scorer.checkpoints[-1]
  n = len(batch.records)
  try:
    return latest.logits(latest.as_tensors(batch.inputs)), np.ones(n, dtype=bool)
  except (tf.errors.InvalidArgumentError, ValueError):
    pass
  rows, taken = [], np.zeros(n, dtype=bool)
  for i in range(n):
    try:
      rows.append(latest.logits(latest.as_tensors(
          {k: v[i:i + 1] for k, v in batch.inputs.items()})))
      taken[i] = True
    except (tf.errors.InvalidArgumentError, ValueError):
      continue
  return (np.concatenate(rows, axis=0) if rows
          else np.zeros((0, scorer.num_classes))), taken


def evidence_of(scorer, parser, split: str, records: Sequence[bytes], batch_size: int
                ) -> Tuple[Optional[auto_rank.Evidence], int]:
  """(Evidence of the records the parser and the model take, how many they refused).

  The Evidence is None when no record could be scored. An example whose logits are not
  finite counts as `non_finite`, as auto_rank.memorisation_evidence counts it.
  """
  logits: List[np.ndarray] = []
  labels: List[int] = []
  refused = 0
  for start in range(0, len(records), batch_size):
    chunk = [examples_io.InputRecord(split, 0, start + j, r)
             for j, r in enumerate(records[start:start + batch_size])]
    batch, bad = parser.parse_batch(chunk)
    refused += len(bad)
    if not batch.records:
      continue
    found, taken = _logits(scorer, batch)
    refused += int((~taken).sum())
    logits.append(np.asarray(found, dtype=np.float64))
    labels.extend(label for label, t in zip(batch.labels, taken.tolist()) if t)
  if not labels:
    return None, refused
  every = np.concatenate(logits, axis=0)
  target = np.asarray(labels, dtype=np.int64)
  finite = np.isfinite(every).all(axis=1)
  non_finite = int((~finite).sum())
  if not finite.any():
    return auto_rank.Evidence(0, 0, non_finite), refused
  found = auto_rank.evidence_from_logits(every[finite][np.newaxis], target[finite])
  return auto_rank.Evidence(found.examples, found.fitted,
                            found.non_finite + non_finite), refused


def measure(scorer, parser, split_files: Dict[str, Sequence[beam_audit.InputFile]],
            batch_size: int, size: int = SAMPLE_SIZE) -> MemorisationSample:
  """The MemorisationSample of the audit's splits (`split_files`, in the audit's order)
  with its scorer and parser (label mode)."""
  split = TRAIN_SPLIT if TRAIN_SPLIT in split_files else next(iter(split_files))
  records, opened = sample_records(split_files[split], size)
  evidence, refused = evidence_of(scorer, parser, split, records, batch_size)
  notes = [f'{len(records)} examples sampled from {opened} of the '
           f'{len(split_files[split])} files of split {split!r}']
  if split != TRAIN_SPLIT:
    notes.append(f'the audit scores no {TRAIN_SPLIT!r} split, so its first split '
                 f'{split!r} stands in for the training data')
  if refused:
    notes.append(f'{refused} could not be scored (the audit quarantines them)')
  if evidence is None:
    notes.append('no sampled example could be scored, so there is no evidence of '
                 'memorisation' if records else
                 'the split gave no record to sample, so there is no evidence of memorisation')
  sample = MemorisationSample(split, len(records), opened, evidence, '; '.join(notes))
  logging.info('VoG memorisation evidence: %s (%s)',
               None if evidence is None else evidence.as_dict(), sample.note)
  return sample
