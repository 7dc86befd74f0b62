"""What the review gate's tests share: a bot token in the environment, a Slack Web API
server on loopback that knows it, logs captured at INFO, and a gate killed mid-review."""

import logging as py_logging
import os
import secrets
import subprocess
import sys
import textwrap
import time

import pytest

from slack_server import FakeSlack


@pytest.fixture
def token(monkeypatch):
  value = 'xoxb-' + secrets.token_hex(12)
  monkeypatch.setenv('SLACK_BOT_TOKEN', value)
  return value


@pytest.fixture
def slack(token):  # pylint: disable=redefined-outer-name
  with FakeSlack(token) as server:
    yield server


@pytest.fixture
def logs(caplog):
  caplog.set_level(py_logging.INFO)
  return caplog


_GATE_SCRIPT = textwrap.dedent('''
    import sys
    sys.path[:0] = [{tests!r}, {repo!r}]
    import review_gate_support as support
    support.run_gate({root!r}, support.gate_properties(
        slack_api_url={url!r}, timeout_seconds={timeout!r}, poll_interval_seconds=0.2),
        with_montage={montage!r})
''')


def start_gate_and_kill_it_waiting(root: str, slack, timeout_seconds: float = 120.0,
                                   with_montage: bool = True) -> None:
  """Runs the gate in its own process and SIGKILLs it once it waits for an answer,
  as a preempted worker or a killed pod would end."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = _GATE_SCRIPT.format(tests=os.path.join(repo, 'tests'), repo=repo, root=root,
                               url=slack.api_url, timeout=timeout_seconds,
                               montage=with_montage)
  gate = subprocess.Popen([sys.executable, '-c', script], env=dict(os.environ),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 60
    while not slack.calls_to('conversations.replies') and time.monotonic() < deadline:
      assert gate.poll() is None, 'the gate ended before it was waiting for an answer'
      time.sleep(0.05)
    assert slack.calls_to('conversations.replies'), 'the gate never waited for an answer'
  finally:
    gate.kill()
    gate.wait()
