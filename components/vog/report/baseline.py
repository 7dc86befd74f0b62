"""The drift baseline: which audit belongs to the last model that shipped.

HumanReviewGate writes a ShippedAudit after every review: `shipped_audit.json` in its
folder names this run's DifficultyReport when the model was blessed, or passes on the one
it was given (the previous ShippedAudit) when it was not. The pipeline resolves the newest
ShippedAudit (a LatestArtifactStrategy resolver, which every TFX runner supports, Kubeflow
included) and gives it to VarianceOfGradients as `baseline`. So a rejected or failed run
never becomes the baseline, and no run has to search ML Metadata for it.

    {"format_version": 1, "difficulty_report_uri": "..." or null, "difficulty_report_id":
     12 or null, "model_id": 7 or null, "shipped_at": "2026-11-24T12:00:00Z" or null,
     "carried": true}

The file is read like any outside input: `read_pointer` opens only a regular file of at
most POINTER_MAX_BYTES whose JSON nests no deeper than the pointer does, and checks every
field.
"""

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, Optional

POINTER_FILE = 'shipped_audit.json'
POINTER_VERSION = 1
POINTER_MAX_BYTES = 1 << 20  # the pointer is a few hundred bytes
POINTER_MAX_DEPTH = 4  # it is one flat object


class BaselineError(ValueError):
  """A ShippedAudit folder whose pointer file is missing or malformed."""


@dataclasses.dataclass(frozen=True)
class ShippedPointer:
  """The audit of the last shipped model; `report_uri` None when none has shipped yet."""
  report_uri: Optional[str]
  report_id: Optional[int]
  model_id: Optional[int]
  shipped_at: Optional[str]
  carried: bool  # passed on from an earlier run rather than shipped by this one

  def to_json(self) -> Dict[str, Any]:
    return {'format_version': POINTER_VERSION, 'difficulty_report_uri': self.report_uri,
            'difficulty_report_id': self.report_id, 'model_id': self.model_id,
            'shipped_at': self.shipped_at, 'carried': self.carried}


NOTHING_SHIPPED = ShippedPointer(None, None, None, None, carried=False)


def shipped_now(report_uri: str, report_id: Optional[int],
                model_id: Optional[int]) -> ShippedPointer:
  """The pointer a blessing review writes: this run's report."""
  when = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
  return ShippedPointer(report_uri, report_id, model_id, when, carried=False)


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def write_pointer(folder: str, pointer: ShippedPointer) -> None:
  gfile = _tf().io.gfile
  gfile.makedirs(folder)
  with gfile.GFile(os.path.join(folder, POINTER_FILE), 'w') as f:
    f.write(json.dumps(pointer.to_json(), indent=2, sort_keys=True))


def _optional(raw: Dict[str, Any], key: str, kind: type, path: str) -> Any:
  value = raw.get(key)
  if value is None:
    return None
  if isinstance(value, bool) or not isinstance(value, kind):
    raise BaselineError(f'{path}: {key!r} is {value!r}; expected '
                        f'{"a string" if kind is str else "an integer"} or null')
  return value


def read_pointer(folder: str) -> ShippedPointer:
  """The pointer in a ShippedAudit folder; BaselineError naming what is wrong."""
  from components.vog.inputs import record_files  # pylint: disable=g-import-not-at-top
  gfile = _tf().io.gfile
  path = os.path.join(folder, POINTER_FILE)
  if not gfile.exists(path):
    raise BaselineError(f'{path} does not exist; is this the shipped_audit output of '
                        'HumanReviewGate?')
  try:
    raw = record_files.read_json_file(path, POINTER_MAX_BYTES, POINTER_MAX_DEPTH)
  except record_files.UnreadableFile as e:
    raise BaselineError(str(e)) from None
  if not isinstance(raw, dict):
    raise BaselineError(f'{path} holds {type(raw).__name__}; expected an object')
  if raw.get('format_version') != POINTER_VERSION:
    raise BaselineError(f'{path} has format_version {raw.get("format_version")!r}; this '
                        f'release reads {POINTER_VERSION}')
  uri = _optional(raw, 'difficulty_report_uri', str, path)
  if uri is not None and (not uri.strip() or '\x00' in uri):
    raise BaselineError(f'{path}: difficulty_report_uri {uri!r} is not a folder')
  carried = raw.get('carried', False)
  if not isinstance(carried, bool):
    raise BaselineError(f'{path}: carried is {carried!r}; expected true or false')
  return ShippedPointer(uri, _optional(raw, 'difficulty_report_id', int, path),
                        _optional(raw, 'model_id', int, path),
                        _optional(raw, 'shipped_at', str, path), carried)


def passed_on(previous: Optional[ShippedPointer]) -> ShippedPointer:
  """The pointer a review that did not bless writes: the previous one, or none."""
  if previous is None or previous.report_uri is None:
    return NOTHING_SHIPPED
  return dataclasses.replace(previous, carried=True)
