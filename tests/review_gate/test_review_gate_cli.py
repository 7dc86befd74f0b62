"""The local backend answered through `vog-audit review` while the gate waits in a thread."""

import os
import threading
import time

import pytest
from click.testing import CliRunner

import review_gate_support as support

from components.review_gate import review_store


def _cli(*args):
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  return CliRunner().invoke(main, list(args))


class _GateInThread:
  """Runs the executor with backend='local' in a thread, like a pipeline waiting on a person."""

  def __init__(self, root, drift=None, **props):
    self.root = str(root)
    self.drift = drift
    self.props = support.gate_properties(backend='local', approvers=['alice', 'bob'],
                                         slack_channel=None, **props)
    self.blessing = None
    self.error = None
    self._thread = threading.Thread(target=self._run, daemon=True)

  def _run(self):
    try:
      self.blessing = support.run_gate(self.root, self.props, with_montage=False,
                                       drift=self.drift)
    except Exception as e:  # pylint: disable=broad-except
      self.error = e

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._thread.join(timeout=30)

  def pending_id(self, wait_seconds=30.0):
    store = review_store.ReviewStore(os.path.join(self.root, 'reviews'))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
      if os.path.isdir(store.reviews_dir) and store.list():
        return store.list()[0].review_id
      assert self.error is None, self.error
      time.sleep(0.05)
    raise AssertionError('the gate never wrote its pending review')

  def result(self):
    self._thread.join(timeout=30)
    assert self.error is None, self.error
    return self.blessing


def test_approve_from_the_command_line_blesses(tmp_path):
  with _GateInThread(tmp_path, timeout_seconds=30.0) as gate:
    review_id = gate.pending_id()
    listed = _cli('review', 'list', '--pipeline-root', str(tmp_path))
    assert listed.exit_code == 0, listed.output
    assert f'{review_id}  pending   local' in listed.output
    assert '200 flagged of 1790 scored, 7 quarantined' in listed.output
    assert 'approvers: alice, bob' in listed.output
    assert '    First audit with no shipped model to compare with\n' in listed.output

    outsider = _cli('review', 'approve', review_id, '--by', 'mallory',
                    '--pipeline-root', str(tmp_path))
    assert outsider.exit_code == 2
    assert outsider.output == (f"error: 'mallory' is not an approver of review {review_id}; "
                               'approvers are: alice, bob\n')
    answered = _cli('review', 'approve', review_id, '--by', 'alice', '--comment',
                    'class 8 spot-checked', '--pipeline-root', str(tmp_path))
    assert answered.exit_code == 0, answered.output
    assert f'review {review_id} approved by alice' in answered.output
    blessing = gate.result()

  assert blessing.get_int_custom_property('blessed') == 1
  assert sorted(os.listdir(blessing.uri)) == ['BLESSED']
  assert [blessing.get_string_custom_property(k) for k in
          ('review_decision', 'reviewer', 'review_comment', 'review_backend', 'review_id')] == [
              'approved', 'alice', 'class 8 spot-checked', 'local', review_id]
  # Answered once: a second answer is refused, and the review no longer shows as pending.
  again = _cli('review', 'reject', review_id, '--by', 'bob', '--pipeline-root', str(tmp_path))
  assert again.exit_code == 2
  assert again.output.startswith(f'error: review {review_id} is closed (approved)')
  assert again.output.count('\n') == 1
  assert 'no pending reviews' in _cli('review', 'list', '--pipeline-root', str(tmp_path)).output
  closed = _cli('review', 'list', '--all', '--pipeline-root', str(tmp_path)).output
  assert 'approved by alice' in closed and 'class 8 spot-checked' in closed


def test_reject_from_the_command_line_does_not_bless(tmp_path):
  reviews = tmp_path / 'elsewhere'
  with _GateInThread(tmp_path, timeout_seconds=30.0, reviews_dir=str(reviews),
                     drift=support.example_drift()) as gate:
    store = review_store.ReviewStore(str(reviews))
    deadline = time.monotonic() + 30
    while not (reviews.exists() and store.list()) and time.monotonic() < deadline:
      time.sleep(0.05)
    review_id = store.list()[0].review_id
    # The person answering sees what changed since the last shipped model.
    listed = _cli('review', 'list', '--reviews-dir', str(reviews))
    assert ('    Since the last shipped model: flagged 11.1% → 13.0% (+1.9 pts); class 3 hard '
            'share +12.0 pts (eval); 40 newly flagged, 25 still flagged (up to 4 audits in a '
            'row)\n') in listed.output
    answered = _cli('review', 'reject', review_id, '--by', 'bob', '--comment',
                    'too many quarantined', '--reviews-dir', str(reviews))
    assert answered.exit_code == 0, answered.output
    blessing = gate.result()
  assert blessing.get_int_custom_property('blessed') == 0
  assert sorted(os.listdir(blessing.uri)) == ['NOT_BLESSED']
  assert blessing.get_string_custom_property('review_decision') == 'rejected'
  assert blessing.get_string_custom_property('reviewer') == 'bob'
  assert blessing.get_string_custom_property('review_comment') == 'too many quarantined'


def test_unanswered_local_review_times_out_and_cannot_be_answered_late(tmp_path):
  started = time.monotonic()
  with _GateInThread(tmp_path, timeout_seconds=1.0) as gate:
    review_id = gate.pending_id()
    blessing = gate.result()
  assert 1.0 <= time.monotonic() - started < 10
  assert blessing.get_int_custom_property('blessed') == 0
  assert blessing.get_string_custom_property('review_decision') == 'timeout'
  assert blessing.get_string_custom_property('review_reason') == (
      f'no answer to local review {review_id} within 1s')
  late = _cli('review', 'approve', review_id, '--by', 'alice', '--pipeline-root', str(tmp_path))
  assert late.exit_code == 2
  assert f'review {review_id} is closed (timeout)' in late.output


def test_list_on_a_root_without_reviews_yet(tmp_path):
  listed = _cli('review', 'list', '--pipeline-root', str(tmp_path))
  assert listed.exit_code == 0
  assert listed.output == f'no pending reviews in {tmp_path}/reviews\n'
  assert not (tmp_path / 'reviews').exists()
  missing = _cli('review', 'list', '--pipeline-root', str(tmp_path / 'typo'))
  assert missing.exit_code == 2
  assert missing.output.startswith(f'error: no reviews folder at {tmp_path}/typo/reviews')


@pytest.mark.parametrize('args, message', [
    (['approve', '0000beef-1'], "error: no review '0000beef-1' in {reviews}; `vog-audit review "
                                'list` shows the pending ones\n'),
    (['approve', 'x', '--pipeline-root', '{tmp}/missing'],
     'error: no reviews folder at {tmp}/missing/reviews; pass --pipeline-root of the pipeline '
     'whose gate is waiting (or --reviews-dir)\n'),
    (['approve', '0000beef-1', '--by', ''], "error: say who decides: pass --by NAME (one of the "
                                        "review's approvers)\n"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
  reviews = tmp_path / 'reviews'
  reviews.mkdir()
  args = [a.format(tmp=tmp_path) for a in args]
  if '--pipeline-root' not in args:
    args += ['--pipeline-root', str(tmp_path)]
  if '--by' not in args:
    args += ['--by', 'alice']
  result = _cli('review', *args)
  assert result.exit_code == 2
  assert result.output == message.format(tmp=tmp_path, reviews=reviews)
