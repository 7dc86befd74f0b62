"""Fixtures shared by the review gate's tests: a bot token in the environment, a Slack
Web API server on loopback that knows it, and logs captured at INFO."""

import logging as py_logging
import secrets

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
