"""What each Beam worker builds for itself: the scorer (the checkpoints, loaded) and the
parser (records -> model inputs), from a description that pickles small.
"""

import hashlib
import json
from typing import Optional, Sequence

from components.vog import user_module as user_module_lib
from components.vog.compute.scoring import VogScorer
from components.vog.inputs import checkpoints
from components.vog.inputs import examples_io
from components.vog.inputs import transform_inputs
from components.vog.settings import VogSettings


class ScorerFactory:
  """Loads the selected checkpoints into a VogScorer; runs once per Beam worker.

  `cache_key()` names what it loads and how it scores, so workers share one scorer
  across threads. `gradient_layers` and `pad_id` are the VogSettings fields of the name.
  """

  def __init__(self, entries: Sequence[checkpoints.CheckpointEntry],
               user_module: Optional[user_module_lib.UserModule], target: str, label_mode: str,
               gradient_layers: Optional[Sequence[str]] = None,
               pad_id: Optional[int] = None):
    self.entries = list(entries)
    self.user_module = user_module
    self.target = target
    self.label_mode = label_mode
    self.gradient_layers = None if gradient_layers is None else list(gradient_layers)
    self.pad_id = pad_id

  def cache_key(self) -> str:
    module = None if self.user_module is None else self.user_module.digest
    text = json.dumps([[e.path for e in self.entries], module, self.target,
                       self.label_mode, self.gradient_layers, self.pad_id])
    return hashlib.sha256(text.encode()).hexdigest()

  def __call__(self) -> VogScorer:
    # load_checkpoint_models turns on GPU memory growth (devices.grow_gpu_memory) first.
    _, custom_objects = user_module_lib.load_user_module(self.user_module)
    models = checkpoints.load_checkpoint_models(self.entries, custom_objects)
    return VogScorer(models, self.target, self.label_mode,
                     gradient_layers=self.gradient_layers, pad_id=self.pad_id)


class ParserFactory:
  """Builds the parser inside each Beam worker (user functions load there).

  An ExampleParser; with `transform_graph` (a TransformGraph folder) a
  transform_inputs.TransformParser, which feeds the model the transformed features.
  """

  def __init__(self, input_specs, settings: VogSettings, num_classes: int,
               user_module: Optional[user_module_lib.UserModule],
               transform_graph: Optional[str] = None):
    self.input_specs = input_specs
    self.settings = settings
    self.num_classes = num_classes
    self.user_module = user_module
    self.transform_graph = transform_graph

  def __call__(self):
    if self.transform_graph:
      return transform_inputs.TransformParser(
          self.transform_graph, self.input_specs, self.settings.label_key,
          self.settings.label_mode == 'label', self.num_classes,
          self.settings.example_id_key)
    inputs_fn, _ = user_module_lib.load_user_module(self.user_module)
    return examples_io.ExampleParser(
        self.input_specs, self.settings.label_key,
        self.settings.label_mode == 'label', self.num_classes,
        self.settings.example_id_key, inputs_fn)
