"""The parameters of a VoG audit: declared once, validated once, for every surface.

`VogSettings` travels as one JSON object, the way TFX's StatisticsGen carries its
StatsOptions: the VarianceOfGradients component stores `to_json_string()` in a single
execution property, the executor reads it back with `from_json()`, and summary.json
records `to_json()`.

Settings are validated where they come in from outside, and only there: the component's
constructor and `vog-audit score` call `validate()`, and `from_json()` validates what the
executor reads back from ML Metadata or a compiled spec (and what `vog-audit report`
reads from a summary.json). Everything below (audit_plan.plan_audit, the Beam pipeline)
takes a validated VogSettings and does not check it again.

Each field of VogSettings is declared with `setting(...)`: its type and default, a
one-line help, its text form (how command lines, environment variables and text values
of PipelineConfig write it) and the surfaces that show it. `declared()` reads that back,
and every surface is derived from it:

  surface                      the setting's name there          e.g. `stage`
  VarianceOfGradients keyword  the field's name                  stage=[120, 240]
  `vog-audit score` option     `--` + the name, with dashes      --stage 120,240
  PipelineConfig field         `vog_` + the name                 vog_stage='120,240'
  environment (Airflow DAG)    VOG_AUDIT_ + the config field     VOG_AUDIT_VOG_STAGE=late
  `kubeflow.compile` flag      `--` + the config field, dashes   --vog-stage 120,240

A setting may name its option or config field otherwise (`--split`, `label_key`), or
leave a surface out. Adding a setting is one `setting(...)` field below, plus the code
that computes with it.
"""

import dataclasses
import functools
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from components.vog.compute import signals
from components.vog.compute import stages

Stage = Union[str, List[int]]

# What ranks the examples (`rank_by`): VoG, or one of the label-error signals of
# signals.py by its short name. `auto` is, with labels, `confidence` (the most dependable
# signal in `make quality`, see the README), or `el2n` once the model memorised its
# training labels (compute/auto_rank.py, measured when the audit is planned), and `vog`
# in `predicted` label mode, where the signals carry no information.
AUTO = 'auto'
VOG = 'vog'


# The order rank_by's choices are listed in: the most dependable in `make quality` first.
# A signal added to the registry is listed after these, with nothing to add here.
_LISTED_FIRST = ('confidence', 'margin_mean', 'margin_last', 'final_loss', 'el2n',
                 'variability', 'forgetting')


def signal_choices() -> Tuple[str, ...]:
  """The signals `rank_by` may name: every entry of signals.REGISTRY, read when asked."""
  names = signals.names()
  return (tuple(n for n in _LISTED_FIRST if n in names)
          + tuple(n for n in names if n not in _LISTED_FIRST))


def rank_by_choices() -> Tuple[str, ...]:
  """Every value `rank_by` takes."""
  return (AUTO, VOG) + signal_choices()

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
# The prefix of the environment variables PipelineConfig.from_env reads.
ENV_PREFIX = 'VOG_AUDIT_'


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scoring():
  # scoring.py imports TensorFlow: read only where its choices are needed.
  from components.vog.compute import scoring  # pylint: disable=g-import-not-at-top
  return scoring


def to_text(value: Any) -> str:
  """A value as the text forms write it: None as empty text, lists comma separated
  (numbers as %g), anything else as str()."""
  if value is None:
    return ''
  if isinstance(value, (list, tuple)):
    return ','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)
  return str(value)


def stage_from_text(text: str, label: str = 'stage') -> Stage:
  """A stage name, or a JSON list / comma-separated list of steps.

  Raises ValueError naming `label` and the text when it is neither.
  """
  text = text.strip()
  if text in stages.STAGES:
    return text
  try:
    steps = json.loads(text) if text.startswith('[') else [int(s) for s in text.split(',')]
    if not isinstance(steps, list) or not all(float(s).is_integer() for s in steps):
      raise ValueError(text)
    return [int(s) for s in steps]
  except (TypeError, ValueError) as e:
    raise ValueError(f'{label}={text!r}: give {", ".join(stages.STAGES)} or a list of '
                     'saved steps such as "120,240,360"') from e


def _text(text: str, label: str) -> str:
  del label  # Any text is a text value; validate() judges it.
  return text


def _text_or_none(text: str, label: str) -> Optional[str]:
  del label
  return text or None


def _whole_number(text: str, label: str) -> int:
  try:
    return int(text.strip())
  except ValueError:
    raise ValueError(f'{label}={text!r} is not a whole number') from None


def _names(text: str, label: str) -> List[str]:
  del label
  return [name.strip() for name in text.split(',') if name.strip()]


def _copy_splits(text: str, label: str) -> Union[str, List[str]]:
  return ALL if text.strip() == ALL else _names(text, label)


def _percentiles(text: str, label: str) -> Tuple[float, ...]:
  try:
    return tuple(float(c) for c in text.split(','))
  except ValueError:
    raise ValueError(f'{label}={text!r} is not two numbers; give cut points such as '
                     '50,90') from None


def _same(value: Any) -> Any:
  return value


def _list_not_tuple(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _floats(value: Any) -> Any:
  if isinstance(value, (list, tuple)) and all(_is_number(c) for c in value):
    return tuple(float(c) for c in value)
  return value


@dataclasses.dataclass(frozen=True, eq=False)
class TextForm:
  """How a setting's value is written as text: on the command line, in an environment
  variable, and as a text value of its PipelineConfig field.

  name: what the form is called (for reading the declaration).
  metavar: how help texts show a value, e.g. INTEGER.
  parse: (text, label) -> the value; raises ValueError naming `label` (how the surface
    calls the setting, e.g. `--stage`) and the text when the text cannot be read.
    Whether the value is valid is for VogSettings.validate() to say.
  canonical: a value given in Python -> the one form VogSettings keeps (lists as lists,
    cut points as a tuple of floats); what it does not recognise it leaves as given,
    for validate() to judge.
  """
  name: str
  metavar: str
  parse: Callable[[str, str], Any]
  canonical: Callable[[Any], Any] = _same


TEXT = TextForm('text', 'TEXT', _text)
# Empty text is None (label_key: unlabeled data).
TEXT_OR_NONE = TextForm('text or none', 'TEXT', _text_or_none)
WHOLE_NUMBER = TextForm('whole number', 'INTEGER', _whole_number)
# The same text as WHOLE_NUMBER; the value may also be None (left out).
WHOLE_NUMBER_OR_NONE = TextForm('whole number or none', 'INTEGER', _whole_number)
# A stage name, or steps: 120,240,360 or [120, 240, 360].
STAGE = TextForm('stage', 'STAGE', stage_from_text, _list_not_tuple)
# Names, comma separated: eval,train.
NAMES = TextForm('names', 'NAMES', _names, _list_not_tuple)
# `all`, or split names, comma separated (empty text: no split is copied).
COPY_SPLITS = TextForm('all or names', 'all|NAMES', _copy_splits, _list_not_tuple)
# Two numbers, comma separated: 50,90.
PERCENTILES = TextForm('percentiles', 'P1,P2', _percentiles, _floats)

# Where a VogSettings field keeps its declaration.
_METADATA_KEY = 'vog_setting'
# Marks a surface name that is derived from the field's name.
_DERIVED = '<derived from the name>'


@dataclasses.dataclass(frozen=True)
class Setting:
  """One VoG setting as VogSettings declares it, with what each surface needs.

  name, type, default: the VogSettings field.
  help: one line saying what the setting does; every surface shows it.
  form: how its value is written as text (a TextForm).
  choices: None, or a function returning the values it takes (called when a surface
    lists them, e.g. as argparse choices; validate() refuses any other value).
  option: the `vog-audit score` option, or None when the command line leaves it out.
  repeatable: the option is given once per item of the list (`--split eval --split
    test`) instead of as one text.
  config_field: the PipelineConfig field, or None when the pipeline configuration
    leaves it out (and with it the environment and `kubeflow.compile`).
  kubeflow: whether `kubeflow.compile` has a flag for it.
  kubeflow_words: names of the words when that flag takes the value as separate words
    (`--bucket-percentiles 50 90`) rather than as one text.
  headline: recorded as an ML Metadata custom property of the report (HEADLINE).
  """
  name: str
  type: Any
  default: Any
  help: str
  form: TextForm
  choices: Optional[Callable[[], Sequence[str]]]
  option: Optional[str]
  repeatable: bool
  config_field: Optional[str]
  kubeflow: bool
  kubeflow_words: Tuple[str, ...]
  headline: bool

  @property
  def env_variable(self) -> Optional[str]:
    """The environment variable of its PipelineConfig field (ENV_PREFIX + the field in
    capitals), or None when the configuration leaves the setting out."""
    return None if self.config_field is None else ENV_PREFIX + self.config_field.upper()

  @property
  def kubeflow_flag(self) -> Optional[str]:
    """The `kubeflow.compile` flag (`--` + the config field, dashes), or None."""
    if self.config_field is None or not self.kubeflow:
      return None
    return '--' + self.config_field.replace('_', '-')


def setting(default: Any, help: str, *,  # pylint: disable=redefined-builtin
            form: TextForm = TEXT,
            choices: Optional[Callable[[], Sequence[str]]] = None,
            option: Optional[str] = _DERIVED,
            repeatable: bool = False,
            config: Optional[str] = _DERIVED,
            kubeflow: bool = True,
            kubeflow_words: Tuple[str, ...] = (),
            headline: bool = False) -> Any:
  """A VogSettings field, declared with what every surface needs (see Setting).

  `option` defaults to `--` + the field's name with dashes, `config` to `vog_` + the
  field's name; None leaves that surface out. The default must be immutable (None,
  text, a number or a tuple).
  """
  return dataclasses.field(default=default, metadata={_METADATA_KEY: dict(
      help=help, form=form, choices=choices, option=option, repeatable=repeatable,
      config_field=config, kubeflow=kubeflow, kubeflow_words=tuple(kubeflow_words),
      headline=headline)})


def declared(cls: Optional[type] = None) -> Tuple[Setting, ...]:
  """Every setting of `cls` (VogSettings when None), in field order.

  Raises TypeError naming a field that is not declared with `setting(...)`.
  """
  return _declared(VogSettings if cls is None else cls)


@functools.lru_cache(maxsize=None)
def _declared(cls: type) -> Tuple[Setting, ...]:
  out = []
  for field in dataclasses.fields(cls):
    declaration = field.metadata.get(_METADATA_KEY)
    if declaration is None:
      raise TypeError(f'{cls.__name__}.{field.name} is not declared with setting(...); '
                      'declare its default, help and text form there')
    declaration = dict(declaration)
    if declaration['option'] == _DERIVED:
      declaration['option'] = '--' + field.name.replace('_', '-')
    if declaration['config_field'] == _DERIVED:
      declaration['config_field'] = 'vog_' + field.name
    out.append(Setting(name=field.name, type=field.type, default=field.default,
                       **declaration))
  return tuple(out)


@dataclasses.dataclass(frozen=True)
class VogSettings:
  """What a VoG audit computes. `validate()` refuses every bad value with a clear line.

  Lists are kept in one canonical form (stage and splits as lists, bucket_percentiles
  as a tuple of floats), so equal settings compare equal and survive a JSON round trip.
  Each field is declared with `setting(...)`: see the module docstring.
  """
  label_key: Optional[str] = setting(
      'label', 'int label feature, needed in label mode; none (empty text) for '
      'unlabeled data', form=TEXT_OR_NONE, config='label_key')
  target: str = setting(
      'loss', 'what is differentiated: loss (finds mislabeled examples), prob or logit',
      choices=lambda: _scoring().TARGETS, headline=True)
  label_mode: str = setting(
      'label', "label, or predicted (the latest checkpoint's class) for unlabeled data",
      choices=lambda: _scoring().LABEL_MODES, headline=True)
  normalize: str = setting(
      'class', "how VoG is normalised: class (z-score within the example's split and "
      'class), abs-class or raw', choices=lambda: _scoring().NORMALIZATIONS, headline=True)
  stage: Stage = setting(
      'complete', 'early, middle, late (thirds of the saved checkpoints), complete, or '
      'saved steps such as 120,240,360', form=STAGE, headline=True)
  num_checkpoints: int = setting(
      10, 'at most this many checkpoints of the stage, evenly spaced', form=WHOLE_NUMBER,
      headline=True)
  splits: Optional[List[str]] = setting(
      None, 'splits to score; every split when unset', form=NAMES, option='--split',
      repeatable=True)
  batch_size: int = setting(
      256, "examples per gradient batch; size it to the worker's memory",
      form=WHOLE_NUMBER)
  inspection_budget: int = setting(
      200, 'how many examples, at most, are flagged for people to review',
      form=WHOLE_NUMBER, config='inspection_budget', headline=True)
  bucket_percentiles: Sequence[float] = setting(
      (50.0, 90.0), 'the two percentile cut points of easy / medium / hard',
      form=PERCENTILES, config='bucket_percentiles', kubeflow_words=('MEDIUM', 'HARD'))
  example_id_key: str = setting(
      'example_id', 'feature holding example ids; a fingerprint of the record without it',
      config='example_id_key')
  rank_by: str = setting(
      AUTO, 'what ranks the examples for the buckets, the slices and the flagged set: '
      f'{VOG}, or a label-error signal ({", ".join(signal_choices())}); {AUTO} is '
      'el2n when the model fits nearly every sampled training label (it memorised them) '
      f'and confidence otherwise, with labels, and {VOG} without', choices=rank_by_choices,
      headline=True)
  gradient_layers: Optional[List[str]] = setting(
      None, 'layers whose outputs stand in for inputs that are not differentiable (ids '
      'into an Embedding); by default the Embedding layers that integer and text inputs '
      'feed', form=NAMES, option='--gradient-layer', repeatable=True)
  pad_id: Optional[int] = setting(
      None, 'padding id of integer inputs into an Embedding without a mask; padded '
      'positions are left out of VoG (by default every position counts)',
      form=WHOLE_NUMBER_OR_NONE)
  copy_splits: Union[None, str, List[str]] = setting(
      None, 'splits scored_examples holds in full with their VoG fields: split names, or '
      f'{ALL}; by default {",".join(DEFAULT_COPY_SPLITS)}; every split gets its score '
      'table either way', form=COPY_SPLITS)
  output_compression: str = setting(
      'gzip', 'gzip (the copies gzip level 1, the score table zstd) or none',
      choices=lambda: COMPRESSIONS)
  max_record_bytes: int = setting(
      DEFAULT_MAX_RECORD_BYTES, 'input records longer than this many bytes are '
      'quarantined without being read into memory', form=WHOLE_NUMBER)
  slice_leave_out: List[str] = setting(
      (), 'features never sliced when the audit looks for what the flagged examples '
      'share (the label, the example id and the vog_*/audit_* fields never are), such '
      'as a ground-truth column', form=NAMES)

  def __post_init__(self):
    # Only the container changes here; validate() judges the values.
    for entry in declared(type(self)):
      value = getattr(self, entry.name)
      canonical = entry.form.canonical(value)
      if canonical is not value:
        object.__setattr__(self, entry.name, canonical)

  @classmethod
  def field_names(cls) -> List[str]:
    return [f.name for f in dataclasses.fields(cls)]

  def _check_types(self) -> None:
    """Refuses a value of the wrong type, naming the setting and an example value."""
    if self.label_key is not None and not isinstance(self.label_key, str):
      raise ValueError(f'label_key={self.label_key!r} must be a feature name (text), '
                       'or null for unlabeled data')
    if not isinstance(self.output_compression, str):
      raise ValueError(f'output_compression={self.output_compression!r} must be text, '
                       f'one of {", ".join(COMPRESSIONS)}')
    # Text and whole numbers by their declared form; the other forms one by one below.
    for entry in declared(type(self)):
      value = getattr(self, entry.name)
      if entry.form is TEXT and not isinstance(value, str):
        raise ValueError(f'{entry.name}={value!r} must be text, e.g. {entry.default!r}')
      if entry.form is WHOLE_NUMBER and not _is_int(value):
        raise ValueError(f'{entry.name}={value!r} must be a whole number, e.g. '
                         f'{entry.default}')
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
    if not (isinstance(self.slice_leave_out, list) and
            all(isinstance(f, str) and f for f in self.slice_leave_out)):
      raise ValueError(f'slice_leave_out={self.slice_leave_out!r} must be a list of '
                       'feature names (empty: every feature may be sliced)')
    if self.pad_id is not None and not _is_int(self.pad_id):
      raise ValueError(f'pad_id={self.pad_id!r} must be a whole number (the padding '
                       'token id), or null')
    cuts = self.bucket_percentiles
    if not (isinstance(cuts, (list, tuple)) and all(_is_number(c) for c in cuts)):
      raise ValueError(f'bucket_percentiles={cuts!r} must be two numbers, e.g. [50, 90]')

  def validate(self) -> 'VogSettings':
    """Returns these settings, or raises ValueError naming the first bad setting."""
    from components.vog.compute import scoring  # pylint: disable=g-import-not-at-top
    self._check_types()
    # Every setting that declares its choices takes only those (a stage also takes steps).
    for entry in declared(type(self)):
      if entry.choices is not None:
        scoring.check_choice(entry.name, getattr(self, entry.name), entry.choices())
    if isinstance(self.stage, str):
      scoring.check_choice('stage', self.stage, stages.STAGES)
    if self.label_mode == 'predicted' and self.rank_by in signal_choices():
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
    """What ranks the examples: `rank_by` with `auto` resolved (see rank_by_choices).

    Before the audit is planned, `auto` reads as `confidence` with labels; planning
    (audit_plan.plan_audit) measures whether the model memorised its labels and gives
    the audit `resolving_auto(...)` of these settings, whose rank_by is what auto chose.
    """
    if self.rank_by != AUTO:
      return self.rank_by
    return 'confidence' if self.label_mode == 'label' else VOG

  def resolving_auto(self, signal: str) -> 'VogSettings':
    """These settings with rank_by `auto` replaced by `signal`, what auto chose; the
    same settings when rank_by names a signal already. Raises ValueError for a signal
    rank_by cannot name, or one that needs labels without them."""
    if self.rank_by != AUTO:
      return self
    if signal == AUTO or signal not in rank_by_choices():
      raise ValueError(f'rank_by auto cannot resolve to {signal!r}; expected one of '
                       f'{", ".join(rank_by_choices()[1:])}')
    if self.label_mode != 'label' and signal != VOG:
      raise ValueError(f"rank_by auto is {VOG} with label_mode='predicted'; got {signal!r}")
    return dataclasses.replace(self, rank_by=signal)

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
    for name in (s.name for s in declared(type(self)) if s.headline):
      value = self.ranked_by if name == 'rank_by' else getattr(self, name)
      out[name] = value if isinstance(value, (int, str)) else json.dumps(value)
    return out


# The settings people look for first; the executor also records them as ML Metadata
# custom properties of the difficulty report (`headline=True` in the declaration).
HEADLINE = tuple(s.name for s in declared() if s.headline)
