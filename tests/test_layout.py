"""The rooms' import rule: each room imports only the rooms below it.

components/vog: compute/ (NumPy and TensorFlow only), vocabulary.py, inputs/, report/,
dataflow/, then the component's own files; the components never import pipeline/, and
pipeline/reference/ imports no other part of pipeline/.
"""

import ast
import os
import sys

import pytest

import repo_paths

VOG_ORDER = ('compute', 'vocabulary', 'inputs', 'report', 'dataflow', None)
# The component's own files (None) may import every room.


def _modules(folder):
  for root, _, files in os.walk(os.path.join(repo_paths.REPO, folder)):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        yield os.path.relpath(path, repo_paths.REPO)[:-3].replace(os.sep, '.'), path


def _imports(path):
  """Every module an import statement names, at any depth of the file."""
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f'{node.module}.{alias.name}' for alias in node.names)


def _vog_room(module):
  """The room of a components.vog module (or package, or name in one); None for the
  component's own files."""
  parts = module.split('.')
  if len(parts) >= 3 and parts[2] in VOG_ORDER:
    return parts[2]
  return None


VOG_MODULES = sorted(_modules(os.path.join('components', 'vog')))


def test_every_vog_module_is_in_a_known_room():
  assert len(VOG_MODULES) > 20
  rooms = {_vog_room(m) for m, _ in VOG_MODULES}
  assert rooms == set(VOG_ORDER)


@pytest.mark.parametrize('module,path', VOG_MODULES, ids=[m for m, _ in VOG_MODULES])
def test_a_vog_room_imports_only_the_rooms_below_it(module, path):
  mine = VOG_ORDER.index(_vog_room(module))
  for name in _imports(path):
    assert not name.startswith('pipeline'), f'{module} imports {name}'
    if name.startswith('components.vog.'):
      room = _vog_room(name)
      assert VOG_ORDER.index(room) <= mine, f'{module} imports {name} (room {room})'


@pytest.mark.parametrize('module,path', [m for m in VOG_MODULES
                                         if _vog_room(m[0]) == 'compute'],
                         ids=[m for m, _ in VOG_MODULES if _vog_room(m) == 'compute'])
def test_the_math_imports_numpy_and_tensorflow_only(module, path):
  for name in _imports(path):
    top = name.split('.')[0]
    if top in sys.stdlib_module_names or top == '__future__':
      continue
    # absl is TensorFlow's own logging.
    assert (top in ('numpy', 'tensorflow', 'absl')
            or name.startswith('components.vog.compute')), f'{module} imports {name}'


def test_the_reference_data_imports_no_other_part_of_the_pipeline():
  for module, path in _modules(os.path.join('pipeline', 'reference')):
    for name in _imports(path):
      if name.startswith('pipeline'):
        assert name.startswith('pipeline.reference'), f'{module} imports {name}'


def test_the_components_never_import_the_pipeline():
  for module, path in _modules('components'):
    for name in _imports(path):
      assert not name.startswith('pipeline'), f'{module} imports {name}'
