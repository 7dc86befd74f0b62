"""Folder operations that take local paths and URIs (gs://, s3://, ram://, ...) alike.

Everything goes through tf.io.gfile, except where a local file system does better: a
folder is moved there with one atomic os.rename, and removed with shutil.rmtree, which
never follows a link into another folder. Object stores have no folders, only names
with a common prefix: a folder is moved there file by file and listed by glob, one
level at a time, which also finds the files of a folder that has no marker object.
Imports only TensorFlow and the standard library.
"""

import concurrent.futures
import glob
import os
import re
import shutil
from typing import Callable, List, Sequence, TypeVar

import tensorflow as tf

# What a failed file operation raises: the OS's errors and TensorFlow's.
ERRORS = (OSError, tf.errors.OpError)
_SCHEME = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')
_FILE_SCHEME = 'file://'
T = TypeVar('T')
R = TypeVar('R')


# Calls to a remote store that one operation makes at once (each is a round trip).
REMOTE_THREADS = 32


def each(path: str, fn: Callable[[T], R], items: Sequence[T]) -> List[R]:
  """[fn(item) for item in items], in order; where `path` is on a remote store (every
  item on the same one), REMOTE_THREADS calls at a time, so that a thousand round trips
  take the time of about thirty. The first error is raised."""
  if is_local(path) or len(items) < 2:
    return [fn(item) for item in items]
  with concurrent.futures.ThreadPoolExecutor(min(REMOTE_THREADS, len(items))) as pool:
    return list(pool.map(fn, items))


def is_local(path: str) -> bool:
  """True for a path on this machine's file system: one without scheme, or file://."""
  return not _SCHEME.match(path) or path.startswith(_FILE_SCHEME)


def local_path(path: str) -> str:
  """A local `path` as the operating system names it: file:// taken off."""
  return path[len(_FILE_SCHEME):] if path.startswith(_FILE_SCHEME) else path


def exists(path: str) -> bool:
  """True when something is at `path`; on a local file system a broken link counts."""
  return os.path.lexists(local_path(path)) if is_local(path) else tf.io.gfile.exists(path)


def is_dir(path: str) -> bool:
  """True when `path` is a folder (on an object store: a prefix of some name)."""
  return tf.io.gfile.isdir(path)


def make_dirs(path: str) -> None:
  """Makes folder `path` and its parents; nothing when it exists. Raises one of ERRORS
  when it cannot (no permission, a file in the way)."""
  tf.io.gfile.makedirs(path)


def list_dir(path: str) -> List[str]:
  """The names of what folder `path` holds, dot-names included. Raises one of ERRORS
  for a local path that is not a folder; on an object store a missing folder is empty."""
  if is_local(path):
    return tf.io.gfile.listdir(path)
  return _matches(path, 1)


def is_empty_dir(path: str) -> bool:
  """True when `path` is a folder that holds nothing. On an object store the marker an
  emptied folder may leave behind counts as an empty folder."""
  return is_dir(path) and not list_dir(path)


def remove_tree(path: str) -> None:
  """Removes `path` and all it holds; nothing when it is missing. A local link is
  refused (OSError), not followed. Raises one of ERRORS when a file cannot go."""
  if is_local(path):
    if os.path.lexists(local_path(path)):
      shutil.rmtree(local_path(path))
    return
  if not tf.io.gfile.exists(path):
    return
  # Names in reverse order: a folder comes after every name that begins with its own,
  # so it is empty when its turn comes (ram:// lists a folder by bare name prefix).
  for name in sorted(_tree(path), reverse=True):
    entry = path.rstrip('/') + '/' + name
    try:
      if tf.io.gfile.isdir(entry):
        tf.io.gfile.rmtree(entry)
      else:
        tf.io.gfile.remove(entry)
    except tf.errors.NotFoundError:
      pass  # A folder without marker went with its last file.
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    pass


def move_tree(src: str, dst: str, last: Sequence[str] = ()) -> None:
  """Moves folder `src` with all it holds to `dst`, on the same file system.

  Locally one os.rename: atomic. Elsewhere every file is renamed to its place under
  `dst` (REMOTE_THREADS at a time), folders made first, and then `src` is removed;
  the names in `last` (relative to `src`) go after all other files, so that their
  presence under `dst` says the move is complete. Refuses (OSError) a `src` that is no folder and a `dst`
  that holds anything; an empty `dst` folder gives way.
  """
  if is_local(src) and is_local(dst):
    if os.path.isdir(local_path(dst)):
      os.rmdir(local_path(dst))  # Raises when it is not empty.
    os.rename(local_path(src), local_path(dst))
    return
  if not is_dir(src):
    raise FileNotFoundError(f'{src} is no folder; there is nothing to move to {dst}')
  if exists(dst) and not is_empty_dir(dst):
    raise FileExistsError(f'{dst} is not empty; it cannot take the files of {src}')
  src, dst = src.rstrip('/'), dst.rstrip('/')
  made = {dst}
  make_dirs(dst)
  files = []
  for name in _tree(src):
    entry, target = f'{src}/{name}', f'{dst}/{name}'
    if tf.io.gfile.isdir(entry):
      make_dirs(target)
      made.add(target)
    else:
      files.append((name in last, entry, target))
  for folder in sorted({target.rsplit('/', 1)[0] for _, _, target in files} - made):
    make_dirs(folder)

  def rename(pair) -> None:
    tf.io.gfile.rename(pair[0], pair[1], overwrite=True)

  for at_last in (False, True):
    each(dst, rename, [(entry, target) for is_last, entry, target in sorted(files)
                       if is_last == at_last])
  remove_tree(src)


def _matches(folder: str, depth: int) -> List[str]:
  """The names, relative to `folder`, of what lies `depth` levels under it (not on a
  local file system), by glob with `folder`'s own glob characters made literal."""
  folder = folder.rstrip('/')
  found = tf.io.gfile.glob(glob.escape(folder) + '/*' * depth)
  outside = [f for f in found if not f.startswith(folder + '/')]
  if outside:
    raise OSError(f'{outside[0]} was listed under {folder}, which does not hold it; '
                  'give the folder as the file system names it')
  return [f[len(folder) + 1:].rstrip('/') for f in found]


def _tree(folder: str) -> List[str]:
  """The names, relative to `folder`, of every file and folder under it (not on a local
  file system), a level at a time: an object store's folder may be no object of its own."""
  found, depth = [], 1
  while True:
    level = _matches(folder, depth)
    if not level:
      return found
    found += level
    depth += 1
