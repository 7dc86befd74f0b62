"""Headless Chromium for tests of the review page: installs Debian's chromium when missing.

`ensure_chromium()` returns the browser's path. When /usr/bin/chromium is absent it runs
`apt-get update && apt-get install -y chromium` if the process is root, and otherwise raises
with what to do; tests that need a browser fail rather than skip.
"""

import os
import subprocess
from typing import List

CHROMIUM = '/usr/bin/chromium'
INSTALL_TIMEOUT_S = 900
BROWSER_TIMEOUT_S = 120
_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync')


def ensure_chromium() -> str:
  """Path of Debian's chromium, installed with apt-get when absent. Raises RuntimeError when
  it is absent and cannot be installed (not root, or apt-get failed)."""
  if os.path.exists(CHROMIUM):
    return CHROMIUM
  if os.geteuid() != 0:
    raise RuntimeError(f'{CHROMIUM} is missing and this test process is not root, so it cannot '
                       'install it; run `sudo apt-get update && sudo apt-get install -y chromium`')
  for cmd in (['apt-get', 'update'], ['apt-get', 'install', '-y', 'chromium']):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}, check=False)
    if done.returncode != 0:
      raise RuntimeError(f'`{" ".join(cmd)}` failed with exit code {done.returncode} while '
                         f'installing chromium for the report tests:\n{done.stderr[-2000:]}')
  if not os.path.exists(CHROMIUM):
    raise RuntimeError(f'apt-get installed chromium but {CHROMIUM} is still missing')
  return CHROMIUM


def _run(args: List[str], profile_dir: str) -> subprocess.CompletedProcess:
  cmd = [ensure_chromium(), *_FLAGS, f'--user-data-dir={profile_dir}', *args]
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
                        check=False)
  if done.returncode != 0:
    raise RuntimeError(f'chromium exited with {done.returncode}: {" ".join(cmd)}\n'
                       f'{done.stderr[-2000:]}')
  return done


def screenshot(html_path: str, png_path: str, profile_dir: str,
               width: int = 1280, height: int = 2000) -> str:
  """Renders the local file `html_path` to `png_path` at width x height; returns png_path."""
  _run([f'--screenshot={png_path}', f'--window-size={width},{height}',
        'file://' + os.path.abspath(html_path)], profile_dir)
  if not os.path.exists(png_path):
    raise RuntimeError(f'chromium exited cleanly but wrote no screenshot at {png_path}')
  return png_path


def dump_dom(html_path: str, profile_dir: str) -> str:
  """The DOM of the local file `html_path` after Chromium parsed it, serialized as HTML."""
  return _run(['--dump-dom', 'file://' + os.path.abspath(html_path)], profile_dir).stdout
