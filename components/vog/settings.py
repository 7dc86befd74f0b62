"""The parameters of a VoG audit, validated once for the component and the CLI alike."""

import dataclasses
import json
from typing import Any, Dict, List, Optional, Sequence, Union

from components.vog import scoring
from components.vog import stages

Stage = Union[str, List[int]]


@dataclasses.dataclass(frozen=True)
class VogSettings:
  """What a VoG audit computes. `validate()` refuses every bad value with a clear line."""
  label_key: Optional[str] = 'label'
  target: str = 'loss'
  label_mode: str = 'label'
  normalize: str = 'class'
  stage: Stage = 'complete'
  num_checkpoints: int = 10
  splits: Optional[List[str]] = None
  batch_size: int = 256
  inspection_budget: int = 200
  bucket_percentiles: Sequence[float] = (50.0, 90.0)
  example_id_key: str = 'example_id'

  def validate(self) -> 'VogSettings':
    scoring.check_choice('target', self.target, scoring.TARGETS)
    scoring.check_choice('label_mode', self.label_mode, scoring.LABEL_MODES)
    scoring.check_choice('normalize', self.normalize, scoring.NORMALIZATIONS)
    if isinstance(self.stage, str):
      scoring.check_choice('stage', self.stage, stages.STAGES)
    elif not self.stage or not all(isinstance(s, int) for s in self.stage):
      raise ValueError(f'stage={self.stage!r}: give a stage name '
                       f'({", ".join(stages.STAGES)}) or a non-empty list of steps')
    if self.label_mode == 'label' and not self.label_key:
      raise ValueError("label_mode='label' needs label_key; use label_mode='predicted' "
                       'for unlabeled data')
    if self.num_checkpoints < 2:
      raise ValueError(f'num_checkpoints={self.num_checkpoints}; VoG needs at least 2')
    if self.batch_size < 1:
      raise ValueError(f'batch_size={self.batch_size}; give a positive batch size')
    if self.inspection_budget < 0:
      raise ValueError(f'inspection_budget={self.inspection_budget}; give 0 or more '
                       'examples to surface for review')
    cuts = list(self.bucket_percentiles)
    if len(cuts) != 2 or not 0 < cuts[0] < cuts[1] < 100:
      raise ValueError(f'bucket_percentiles={cuts}; give two increasing percentiles '
                       'strictly between 0 and 100, e.g. [50, 90]')
    if self.splits is not None and not self.splits:
      raise ValueError('splits=[] names no split; leave it unset to score every split')
    return self

  def to_json(self) -> Dict[str, Any]:
    out = dataclasses.asdict(self)
    out['bucket_percentiles'] = [float(c) for c in self.bucket_percentiles]
    return out


def stage_from_text(text: str) -> Stage:
  """A stage name, or a JSON list / comma-separated list of steps."""
  text = text.strip()
  if text in stages.STAGES:
    return text
  try:
    steps = json.loads(text) if text.startswith('[') else [int(s) for s in text.split(',')]
  except ValueError as e:
    raise ValueError(f'stage={text!r}: give {", ".join(stages.STAGES)} or a list of '
                     'saved steps such as "120,240,360"') from e
  return [int(s) for s in steps]
