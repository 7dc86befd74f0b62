"""The user module of an audit: the optional Python file that defines vog_inputs_fn
(features -> model inputs) and custom_objects (custom layers).

It is read once, where the audit is planned (`read_user_module`), and travels as source
with the pipeline; each process imports it from a local copy (`load_user_module`).
"""

import hashlib
import os
import re
from typing import Any, Dict, NamedTuple, Optional, Tuple

import tensorflow as tf

from components.vog.audit_errors import AuditConfigError
from components.vog.inputs import examples_io
from components.vog.inputs import record_files

# A user module file larger than this is refused: it is Python source, not data.
MAX_MODULE_BYTES = 4 << 20
_STAGED_MODULES: Dict[str, str] = {}  # sha256 of a module's source -> its local copy


class UserModule(NamedTuple):
  """A user module file (vog_inputs_fn, custom_objects) read once, where the audit is
  planned: its path (for messages) and its source, which travels with the pipeline to
  every worker, so that workers need neither the planner's disk nor access to its
  storage, and all of them run the same code."""
  path: str
  source: bytes

  @property
  def digest(self) -> str:
    return hashlib.sha256(self.source).hexdigest()


def read_user_module(module_file: Optional[str]) -> Optional[UserModule]:
  """The UserModule of `module_file` (a path or URI), None without one. Raises
  AuditConfigError for a file that is missing, not a regular file, or above
  MAX_MODULE_BYTES."""
  if not module_file:
    return None
  if not tf.io.gfile.exists(module_file):
    raise AuditConfigError(f'module_file {module_file} does not exist')
  try:
    return UserModule(module_file, record_files.read_bounded(module_file, MAX_MODULE_BYTES))
  except record_files.UnreadableFile as e:
    raise AuditConfigError(f'module_file {e}; give a Python source file') from None


def _staged_path(module: UserModule) -> str:
  """A local copy of the module's source, written once per process and source."""
  digest = module.digest
  path = _STAGED_MODULES.get(digest)
  if path is None or not os.path.exists(path):
    import tempfile  # pylint: disable=g-import-not-at-top
    folder = tempfile.mkdtemp(prefix='vog-user-module-')
    stem = os.path.splitext(os.path.basename(module.path))[0]
    name = re.sub(r'[^A-Za-z0-9_]', '_', stem) or 'module'
    path = os.path.join(folder, f'{name}_{digest[:12]}.py')
    with open(path, 'wb') as f:
      f.write(module.source)
    _STAGED_MODULES[digest] = path
  return path


def load_user_module(module: Optional[UserModule]
                     ) -> Tuple[Optional[examples_io.InputsFn], Dict[str, Any]]:
  """(vog_inputs_fn or None, custom_objects) from a user module, imported from a local
  copy of its source."""
  if module is None:
    return None, {}
  from tfx.utils import import_utils  # pylint: disable=g-import-not-at-top
  path = _staged_path(module)
  try:
    inputs_fn = import_utils.import_func_from_source(path, 'vog_inputs_fn')
  except AttributeError:
    inputs_fn = None
  try:
    custom_objects = import_utils.import_func_from_source(path, 'custom_objects')
  except AttributeError:
    custom_objects = {}
  if inputs_fn is None and not custom_objects:
    raise AuditConfigError(f'module_file {module.path} defines neither vog_inputs_fn '
                           'nor custom_objects; define one or drop module_file')
  if callable(custom_objects):
    custom_objects = custom_objects()
  return inputs_fn, dict(custom_objects)
