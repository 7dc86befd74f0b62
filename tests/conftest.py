"""The review gate's shared fixtures (token, slack, logs) for every test module."""

pytest_plugins = ['slack_fixtures']
