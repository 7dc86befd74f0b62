"""The README's quick start is exactly what a new user types, and it does what it says."""

import os
import re
import subprocess

from click.testing import CliRunner

from pipeline.cli import main as cli
import repo_paths

ROOT = repo_paths.REPO


def _read(name):
  with open(os.path.join(ROOT, name)) as f:
    return f.read()


def _quick_start_commands():
  section = _read('README.md').split('## Quick start', 1)[1].split('\n## ', 1)[0]
  [block] = re.findall(r'```sh\n(.*?)```', section, flags=re.S)
  return [line.split('#')[0].strip() for line in block.splitlines() if line.strip()]


def test_quick_start_is_the_two_make_commands():
  assert _quick_start_commands() == ['make demo', 'make test']


def test_make_targets_run_what_the_readme_describes():
  # `make -n` prints the recipe without running it: the demo goes into demo_output/.
  demo = subprocess.run(['make', '-n', '-W', 'constraints.txt', 'demo'], cwd=ROOT,
                        capture_output=True, text=True, check=True).stdout
  assert 'vog-audit demo --output demo_output' in demo
  assert 'pip install' in demo and 'constraints.txt' in demo  # creates the venv itself
  test = subprocess.run(['make', '-n', '-W', 'constraints.txt', 'test'], cwd=ROOT,
                        capture_output=True, text=True, check=True).stdout
  assert '-m pytest' in test
  assert 'make test' in _read('.ci/run')


def test_documented_commands_and_options_exist():
  readme = _read('README.md')
  for command in ('score', 'report', 'review', 'runs', 'demo'):
    assert f'vog-audit {command}' in readme
    result = CliRunner().invoke(cli, [command, '--help'])
    assert result.exit_code == 0, (command, result.output)
  demo_help = CliRunner().invoke(cli, ['demo', '--help']).output
  for option in ('--output', '--noise-rate', '--seed', '--review', '--approver',
                 '--slack-channel'):
    assert option in demo_help and option in readme, option
