"""Services a test starts as processes of its own (a Dask cluster, Beam's job service
and worker pool): free ports, their environment, their logs, and stopping them."""

import os
import signal
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def tail(path: str, lines: int = 40) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError as e:
    return f'(unreadable: {e})'


def service_env(**extra: str) -> Dict[str, str]:
  """This process's environment for a service that imports this repository and TF."""
  return dict(os.environ, TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
              PYTHONHASHSEED='0', PYTHONWARNINGS='ignore::FutureWarning',
              PYTHONPATH=os.pathsep.join(
                  [REPO, os.path.join(REPO, 'tests')]
                  + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]),
              **extra)


class ServiceProcesses:
  """Python modules started as processes under `root`, each logging to <name>.log."""

  def __init__(self, root: str, env: Dict[str, str]):
    self.root = root
    self.env = env
    self.processes: Dict[str, Tuple[subprocess.Popen, str]] = {}

  def start_module(self, name: str, args: List[str]) -> None:
    log = os.path.join(self.root, f'{name}.log')
    with open(log, 'wb') as out:
      proc = subprocess.Popen([sys.executable, '-m'] + args, env=self.env, cwd=self.root,
                              stdout=out, stderr=subprocess.STDOUT)
    self.processes[name] = (proc, log)

  def logs(self) -> str:
    return '\n'.join(f'--- {name} (exit code {proc.poll()}) ---\n{tail(log)}'
                     for name, (proc, log) in self.processes.items())

  def stop_processes(self, interrupt: Optional[List[str]] = None) -> None:
    """Ends every process: SIGINT for those named in `interrupt` (their exit hooks run),
    SIGTERM for the others, SIGKILL for any still alive after 20 s."""
    for name, (proc, _) in self.processes.items():
      if proc.poll() is None:
        proc.send_signal(signal.SIGINT if name in (interrupt or ()) else signal.SIGTERM)
    for proc, _ in self.processes.values():
      try:
        proc.wait(timeout=20)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
