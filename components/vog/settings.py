"""The parameters of a VoG audit, validated once for the component and the CLI alike.

`VogSettings` travels as one JSON object, the way TFX's StatisticsGen carries its
StatsOptions: the VarianceOfGradients component stores `to_json_string()` in a single
execution property, the executor reads it back with `from_json()`, and summary.json
records `to_json()`.
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from components.vog import stages

Stage = Union[str, List[int]]

# The settings people look for first; the executor also records them as ML Metadata
# custom properties of the difficulty report.
HEADLINE = ('target', 'label_mode', 'normalize', 'stage', 'num_checkpoints',
            'inspection_budget', 'rank_by')

_TEXT_FIELDS = ('target', 'label_mode', 'normalize', 'example_id_key', 'rank_by')

# What ranks the examples (`rank_by`): VoG, or one of the label-error signals of
# signals.py by its short name. `auto` is `confidence` with labels (the most dependable
# signal in `make quality`, see the README) and `vog` in `predicted` label mode, where
# the signals carry no information.
AUTO = 'auto'
VOG = 'vog'
SIGNAL_CHOICES = ('confidence', 'margin_mean', 'margin_last', 'final_loss', 'el2n',
                  'variability', 'forgetting')
RANK_BY = (AUTO, VOG) + SIGNAL_CHOICES
_COUNT_FIELDS = ('num_checkpoints', 'batch_size', 'inspection_budget', 'max_record_bytes')
# Which splits `scored_examples` holds in full (every example with its VoG fields):
# by default the split the Evaluator reads; `all` copies every scored split. Every
# split gets its score table either way.
ALL = 'all'
DEFAULT_COPY_SPLITS = ('eval',)
# How the outputs are compressed: `gzip` (scored copies gzip level 1, score tables
# zstd) or `none`.
COMPRESSIONS = ('gzip', 'none')
# The design keeps the flagged set and its ranks in one bounded object that every
# writer receives; past this budget that object, and the page that shows the flagged
# examples, stop being small.
MAX_INSPECTION_BUDGET = 100_000
# An input record longer than `max_record_bytes` is quarantined without being read into
# memory (a small gzip file can hold one record of hundreds of MB). The default is far
# above any example a model scores; the setting cannot go past the reader's own bound
# on a record's length (record_files.MAX_RECORD_BYTES), beyond which a length is damage.
DEFAULT_MAX_RECORD_BYTES = 64 << 20
RECORD_BYTES_BOUND = 1 << 31


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class VogSettings:
  """What a VoG audit computes. `validate()` refuses every bad value with a clear line.

  Lists are kept in one canonical form (stage and splits as lists, bucket_percentiles
  as a tuple of floats), so equal settings compare equal and survive a JSON round trip.
  """
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
  rank_by: str = AUTO
  # Layers whose outputs stand in for the inputs where those are not differentiable
  # (token or category ids into an Embedding); None finds the Embedding layers that
  # read an integer or text input.
  gradient_layers: Optional[List[str]] = None
  # The token id that marks padding in integer inputs feeding an Embedding, when the
  # layer has no mask (`mask_zero=False`); None: every position counts.
  pad_id: Optional[int] = None
  # The splits copied in full into scored_examples (see DEFAULT_COPY_SPLITS): None for
  # the default, `all`, or a list of split names.
  copy_splits: Union[None, str, List[str]] = None
  output_compression: str = 'gzip'
  # Input records longer than this many bytes are quarantined unread.
  max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

  def __post_init__(self):
    # Only the container changes here; validate() judges the values.
    if isinstance(self.stage, tuple):
      object.__setattr__(self, 'stage', list(self.stage))
    if isinstance(self.splits, tuple):
      object.__setattr__(self, 'splits', list(self.splits))
    if isinstance(self.copy_splits, tuple):
      object.__setattr__(self, 'copy_splits', list(self.copy_splits))
    if isinstance(self.gradient_layers, tuple):
      object.__setattr__(self, 'gradient_layers', list(self.gradient_layers))
    cuts = self.bucket_percentiles
    if isinstance(cuts, (list, tuple)) and all(_is_number(c) for c in cuts):
      object.__setattr__(self, 'bucket_percentiles', tuple(float(c) for c in cuts))

  @classmethod
  def field_names(cls) -> List[str]:
    return [f.name for f in dataclasses.fields(cls)]

  def _check_types(self) -> None:
    """Refuses a value of the wrong type, naming the setting and an example value."""
    if self.label_key is not None and not isinstance(self.label_key, str):
      raise ValueError(f'label_key={self.label_key!r} must be a feature name (text), '
                       'or null for unlabeled data')
    for name in _TEXT_FIELDS:
      value = getattr(self, name)
      if not isinstance(value, str):
        raise ValueError(f'{name}={value!r} must be text, e.g. '
                         f'{getattr(VogSettings, name)!r}')
    for name in _COUNT_FIELDS:
      value = getattr(self, name)
      if not _is_int(value):
        raise ValueError(f'{name}={value!r} must be a whole number, e.g. '
                         f'{getattr(VogSettings, name)}')
    if not isinstance(self.stage, str) and not (
        isinstance(self.stage, list) and self.stage and all(_is_int(s) for s in self.stage)):
      raise ValueError(f'stage={self.stage!r}: give a stage name '
                       f'({", ".join(stages.STAGES)}) or a non-empty list of steps')
    if self.splits is not None and not (
        isinstance(self.splits, list) and all(isinstance(s, str) for s in self.splits)):
      raise ValueError(f'splits={self.splits!r} must be a list of split names, or null '
                       'to score every split')
    if self.gradient_layers is not None and not (
        isinstance(self.gradient_layers, list) and self.gradient_layers and
        all(isinstance(g, str) and g for g in self.gradient_layers)):
      raise ValueError(f'gradient_layers={self.gradient_layers!r} must be a non-empty list '
                       'of layer names, or null to find the Embedding layers')
    if self.copy_splits is not None and self.copy_splits != ALL and not (
        isinstance(self.copy_splits, list) and
        all(isinstance(s, str) and s for s in self.copy_splits)):
      raise ValueError(f'copy_splits={self.copy_splits!r} must be a list of split names, '
                       f'{ALL!r}, or null for the default {list(DEFAULT_COPY_SPLITS)}')
    if not isinstance(self.output_compression, str):
      raise ValueError(f'output_compression={self.output_compression!r} must be text, '
                       f'one of {", ".join(COMPRESSIONS)}')
    if self.pad_id is not None and not _is_int(self.pad_id):
      raise ValueError(f'pad_id={self.pad_id!r} must be a whole number (the padding '
                       'token id), or null')
    cuts = self.bucket_percentiles
    if not (isinstance(cuts, (list, tuple)) and all(_is_number(c) for c in cuts)):
      raise ValueError(f'bucket_percentiles={cuts!r} must be two numbers, e.g. [50, 90]')

  def validate(self) -> 'VogSettings':
    """Returns these settings, or raises ValueError naming the first bad setting."""
    from components.vog import scoring  # pylint: disable=g-import-not-at-top
    self._check_types()
    scoring.check_choice('target', self.target, scoring.TARGETS)
    scoring.check_choice('label_mode', self.label_mode, scoring.LABEL_MODES)
    scoring.check_choice('normalize', self.normalize, scoring.NORMALIZATIONS)
    if isinstance(self.stage, str):
      scoring.check_choice('stage', self.stage, stages.STAGES)
    scoring.check_choice('rank_by', self.rank_by, RANK_BY)
    if self.label_mode == 'predicted' and self.rank_by in SIGNAL_CHOICES:
      raise ValueError(f"rank_by={self.rank_by!r} compares the model with the label; with "
                       "label_mode='predicted' use rank_by='vog' (or 'auto')")
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
    if self.inspection_budget > MAX_INSPECTION_BUDGET:
      raise ValueError(
          f'inspection_budget={self.inspection_budget} is above {MAX_INSPECTION_BUDGET:,}: '
          'every writer of a split receives its flagged examples\' suspicions (to say '
          'which signals agree), the report holds every flagged record and the review '
          'page shows them all, so a larger budget stops being bounded - query the '
          'score table (score_table/ in the report) for more than that')
    scoring.check_choice('output_compression', self.output_compression, COMPRESSIONS)
    if not 1 <= self.max_record_bytes <= RECORD_BYTES_BOUND:
      raise ValueError(
          f'max_record_bytes={self.max_record_bytes}; give a record size in bytes from 1 '
          f'to {RECORD_BYTES_BOUND:,} (the default {DEFAULT_MAX_RECORD_BYTES:,} is 64 MiB)')
    cuts = list(self.bucket_percentiles)
    if len(cuts) != 2 or not 0 < cuts[0] < cuts[1] < 100:
      raise ValueError(f'bucket_percentiles={cuts}; give two increasing percentiles '
                       'strictly between 0 and 100, e.g. [50, 90]')
    if self.splits is not None and not self.splits:
      raise ValueError('splits=[] names no split; leave it unset to score every split')
    return self

  @property
  def ranked_by(self) -> str:
    """What ranks the examples: `rank_by` with `auto` resolved (see RANK_BY)."""
    if self.rank_by != AUTO:
      return self.rank_by
    return 'confidence' if self.label_mode == 'label' else VOG

  def copied_splits(self, scored: Sequence[str]) -> List[str]:
    """The splits of `scored` whose examples are copied in full (`copy_splits`)."""
    if self.copy_splits == ALL:
      return list(scored)
    wanted = DEFAULT_COPY_SPLITS if self.copy_splits is None else self.copy_splits
    return [s for s in scored if s in wanted]

  @property
  def rank_normalize(self) -> str:
    """How the ranked value is normalised: `normalize` for VoG; a signal is ranked
    across its whole split (`raw`), which `make quality` found better than within class
    wherever wrong labels crowd into a few classes."""
    return self.normalize if self.ranked_by == VOG else 'raw'

  def to_json(self) -> Dict[str, Any]:
    """Every setting as a JSON-ready dict (lists for stage steps, splits and cut points)."""
    out = dataclasses.asdict(self)
    out['bucket_percentiles'] = [float(c) for c in self.bucket_percentiles]
    return out

  def to_json_string(self) -> str:
    """`to_json()` as compact JSON text with sorted keys: equal settings, equal text."""
    return json.dumps(self.to_json(), sort_keys=True, separators=(',', ':'))

  @classmethod
  def from_json(cls, data: Union[str, bytes, Mapping[str, Any]]) -> 'VogSettings':
    """Reads settings written by `to_json()` or `to_json_string()`, and validates them.

    `data` is JSON text or an already parsed dict. Keys that are absent take their
    defaults. Raises ValueError for text that is not a JSON object, an unknown key
    (named, with the known ones), a value of the wrong type, or an invalid value
    (named as `validate()` does).
    """
    if isinstance(data, (str, bytes)):
      try:
        data = json.loads(data)
      except ValueError as e:
        raise ValueError(f'VoG settings are not valid JSON ({e}); give a JSON object '
                         'such as VogSettings().to_json_string() writes') from None
    if not isinstance(data, Mapping):
      raise ValueError(f'VoG settings must be a JSON object of settings, not '
                       f'{type(data).__name__}; e.g. {VogSettings().to_json_string()}')
    known = cls.field_names()
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
      raise ValueError(f'VoG settings key(s) {", ".join(unknown)} are unknown; the known '
                       f'keys are {", ".join(known)}')
    return cls(**dict(data)).validate()

  def headline(self) -> Dict[str, Union[int, str]]:
    """HEADLINE settings as ML Metadata property values (a list of steps as JSON text)."""
    out: Dict[str, Union[int, str]] = {}
    for name in HEADLINE:
      value = self.ranked_by if name == 'rank_by' else getattr(self, name)
      out[name] = value if isinstance(value, (int, str)) else json.dumps(value)
    return out


def stage_from_text(text: str) -> Stage:
  """A stage name, or a JSON list / comma-separated list of steps."""
  text = text.strip()
  if text in stages.STAGES:
    return text
  try:
    steps = json.loads(text) if text.startswith('[') else [int(s) for s in text.split(',')]
    if not isinstance(steps, list) or not all(float(s).is_integer() for s in steps):
      raise ValueError(text)
    return [int(s) for s in steps]
  except (TypeError, ValueError) as e:
    raise ValueError(f'stage={text!r}: give {", ".join(stages.STAGES)} or a list of '
                     'saved steps such as "120,240,360"') from e
