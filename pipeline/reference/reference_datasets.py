"""The reference data sets the pipeline factory knows, and the code that goes with each.

    digits   sklearn's 8x8 digits (pipeline.reference.demo_data); a CNN on the raw pixels, no
             Transform (pipeline.reference.trainer_module).
    tabular  generated customers with numeric and categorical columns
             (pipeline.reference.tabular_data); Transform z-scores the numbers and turns categories
             into ids (pipeline.reference.tabular_transform) for a model with an Embedding per
             category (pipeline.reference.tabular_trainer).
    text     generated sentences on four topics (pipeline.reference.text_data); Transform turns
             them into fixed-length token ids (pipeline.reference.text_transform) for an Embedding
             and average-pooling model (pipeline.reference.text_trainer).

`PipelineConfig.dataset` names one; `reference_dataset(name)` returns its description.
Nothing here imports TensorFlow.
"""

import dataclasses
import importlib
import os
from typing import Dict, Optional, Tuple

DIGITS = 'digits'
TABULAR = 'tabular'
TEXT = 'text'
DATASETS = (DIGITS, TABULAR, TEXT)

_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class ReferenceDataset:
  """One reference data set: how it is written, transformed, trained and shown.

  name: the `PipelineConfig.dataset` value.
  noun: what its examples are, plural ('digits', 'customers', 'sentences').
  data_module, write_fn: the module and function that write its TFRecords, called as
    `write_fn(output_dir, flip_fraction=, seed=, num_examples=)`.
  trainer_module: the Trainer module (`run_fn`), e.g. 'pipeline.reference.tabular_trainer'.
  transform_module: the Transform module (`preprocessing_fn`); None: no Transform.
  raw_features: the raw features that show what an example is (for people reading
    flagged examples); the model reads them, directly or through Transform.
  class_names: the label of each class index.
  """
  name: str
  noun: str
  data_module: str
  write_fn: str
  trainer_module: str
  transform_module: Optional[str]
  raw_features: Tuple[str, ...]
  class_names: Tuple[str, ...]

  @property
  def uses_transform(self) -> bool:
    return self.transform_module is not None

  @staticmethod
  def module_path(module: str) -> str:
    """The file of a module of this package, e.g. pipeline/reference/tabular_trainer.py."""
    package, _, name = module.rpartition('.')
    if package != 'pipeline.reference':
      raise ValueError(f'{module} is not a module of the pipeline.reference package')
    return os.path.join(_HERE, f'{name}.py')

  @property
  def trainer_module_file(self) -> str:
    return self.module_path(self.trainer_module)

  @property
  def trainer_run_fn(self) -> str:
    return f'{self.trainer_module}.run_fn'

  @property
  def transform_module_file(self) -> Optional[str]:
    return self.module_path(self.transform_module) if self.transform_module else None

  @property
  def preprocessing_fn(self) -> Optional[str]:
    return f'{self.transform_module}.preprocessing_fn' if self.transform_module else None

  def write(self, output_dir: str, flip_fraction: float, seed: int,
            num_examples: Optional[int] = None):
    """Writes the data set to `output_dir`; returns {split: demo_data.SplitSummary}.

    Raises ValueError (from the writer) for a share out of range or a bad size.
    """
    writer = getattr(importlib.import_module(self.data_module), self.write_fn)
    return writer(output_dir, flip_fraction=flip_fraction, seed=seed,
                  num_examples=num_examples)


_DATASETS: Dict[str, ReferenceDataset] = {
    DIGITS: ReferenceDataset(
        name=DIGITS, noun='digits', data_module='pipeline.reference.demo_data',
        write_fn='write_demo_data', trainer_module='pipeline.reference.trainer_module',
        transform_module=None, raw_features=('image',),
        class_names=tuple(str(d) for d in range(10))),
    TABULAR: ReferenceDataset(
        name=TABULAR, noun='customers', data_module='pipeline.reference.tabular_data',
        write_fn='write_tabular_data', trainer_module='pipeline.reference.tabular_trainer',
        transform_module='pipeline.reference.tabular_transform',
        raw_features=('age', 'income_k', 'monthly_spend', 'visits_per_month',
                      'tenure_years', 'support_calls', 'region', 'device', 'channel'),
        class_names=('saver', 'regular', 'premium')),
    TEXT: ReferenceDataset(
        name=TEXT, noun='sentences', data_module='pipeline.reference.text_data',
        write_fn='write_text_data', trainer_module='pipeline.reference.text_trainer',
        transform_module='pipeline.reference.text_transform', raw_features=('text',),
        class_names=('sports', 'weather', 'cooking', 'finance')),
}


def reference_dataset(name: str) -> ReferenceDataset:
  """The reference data set called `name`.

  Raises:
    ValueError: `name` is not one of DATASETS.
  """
  if name not in _DATASETS:
    raise ValueError(f'dataset={name!r} is not a reference data set; choose one of '
                     f'{", ".join(DATASETS)}')
  return _DATASETS[name]
