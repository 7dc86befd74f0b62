"""Headless Chromium for tests of the review pages: installs Debian's chromium when missing.

`ensure_chromium()` returns the browser's path and `ensure_chromedriver()` the path of
Debian's chromium-driver (for Selenium, e.g. the review workspace's test). When one is absent
it runs `apt-get update && apt-get install -y <package>` if the process is root, and otherwise
raises with what to do; tests that need a browser fail rather than skip.
"""

import os
import subprocess
from typing import List

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
INSTALL_TIMEOUT_S = 900
BROWSER_TIMEOUT_S = 120
_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync')


def _ensure_installed(path: str, package: str) -> str:
  """`path`, installing Debian's `package` with apt-get when it is absent."""
  if os.path.exists(path):
    return path
  if os.geteuid() != 0:
    raise RuntimeError(f'{path} is missing and this test process is not root, so it cannot '
                       f'install it; run `sudo apt-get update && sudo apt-get install -y '
                       f'{package}`')
  for cmd in (['apt-get', 'update'], ['apt-get', 'install', '-y', package]):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}, check=False)
    if done.returncode != 0:
      raise RuntimeError(f'`{" ".join(cmd)}` failed with exit code {done.returncode} while '
                         f'installing {package} for the browser tests:\n{done.stderr[-2000:]}')
  if not os.path.exists(path):
    raise RuntimeError(f'apt-get installed {package} but {path} is still missing')
  return path


def ensure_chromium() -> str:
  """Path of Debian's chromium, installed with apt-get when absent. Raises RuntimeError when
  it is absent and cannot be installed (not root, or apt-get failed)."""
  return _ensure_installed(CHROMIUM, 'chromium')


def ensure_chromedriver() -> str:
  """Path of Debian's chromedriver (package chromium-driver, which also brings the matching
  chromium), installed with apt-get when absent. Raises RuntimeError as ensure_chromium."""
  ensure_chromium()
  return _ensure_installed(CHROMEDRIVER, 'chromium-driver')


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
