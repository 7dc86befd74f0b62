"""One interface for review backends: the executor calls one method, the list is declared once.

Each backend says how it decides and what it keeps in the review record; the record is a typed
object whose schema the store checks, backend fields included. A new backend is one class:
these tests add one the way a Teams or web backend would be added and run the real executor
and `vog-audit review list` with it.
"""

import json
from typing import Any, Dict

import pytest
from click.testing import CliRunner

import review_gate_support as support

from components.review_gate import backend_api
from components.review_gate import backends
from components.review_gate import decision as decision_lib
from components.review_gate import decision_rule
from components.review_gate import review_record
from components.review_gate import review_store


def test_the_backends_are_declared_once_and_each_says_how_it_decides():
  assert backends.NAMES == ('slack', 'local', 'auto')
  for name, cls in backends.BACKENDS.items():
    assert cls.NAME == name and cls.DECIDES, name
    assert issubclass(cls, backend_api.ReviewBackend)
    assert (backends.state_fields(name) is not None) == cls.RECORDS
  assert set(backends.state_fields('slack')) == {
      'slack_channel', 'slack_channel_id', 'slack_thread_ts', 'montage_uploaded'}
  assert set(backends.state_fields('local')) == {'deadline_at', 'answers'}
  with pytest.raises(ValueError, match="backend 'email' is not one of slack, local, auto"):
    backends.get('email')


def _gate(**kwargs):
  from tfx.types import channel_utils, standard_artifacts  # pylint: disable=g-import-not-at-top
  from components import HumanReviewGate  # pylint: disable=g-import-not-at-top
  from components.vog.artifacts import DifficultyReport  # pylint: disable=g-import-not-at-top
  return HumanReviewGate(model=channel_utils.as_channel([standard_artifacts.Model()]),
                         difficulty_report=channel_utils.as_channel([DifficultyReport()]),
                         **kwargs)


@pytest.mark.parametrize('kwargs, message', [
    (dict(backend='local', approvers=['alice', 'bob'], quorum=3),
     r'quorum must be a whole number from 1 to the number of distinct approvers \(2\), got 3'),
    (dict(backend='slack', slack_channel='C0REVIEW', approvers=['U0ALICE'], quorum=0),
     r'quorum must be a whole number from 1 to the number of distinct approvers \(1\), got 0'),
    (dict(backend='auto', auto_policy={'max_flagged_share': 0.2}, quorum=2),
     "quorum applies to backends with approvers; backend='auto' decides by itself"),
    (dict(backend='slack', slack_channel='C0REVIEW'),
     r"backend='slack' needs approvers: list who may approve \(Slack user IDs like U0123ABCD\)"),
])
def test_the_component_refuses_a_quorum_that_cannot_work(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _gate(**kwargs)


def test_the_quorum_reaches_the_executor_and_old_pipelines_mean_one():
  gate = _gate(backend='slack', slack_channel='C0REVIEW', approvers=['U0ALICE', 'U0BOB'],
               quorum=2)
  assert gate.exec_properties['quorum'] == 2
  settings = backend_api.GateSettings.from_exec_properties(gate.exec_properties)
  assert (settings.quorum, settings.approvers) == (2, ('U0ALICE', 'U0BOB'))
  older = dict(gate.exec_properties)
  del older['quorum']
  assert backend_api.GateSettings.from_exec_properties(older).quorum == 1


class SignBackend(backend_api.RecordedBackend):
  """A backend as a new module would add one: approvers sign a sheet kept in its state."""

  NAME = 'sign'
  DECIDES = 'approvers sign the sheet'
  STATE_FIELDS = {'sheet': review_record.text_list(review_record.text(empty=False)),
                  'asked': review_record.flag()}
  calls = []

  @classmethod
  def where_to_answer(cls, record):
    return f'sign the sheet; signed: {", ".join(record.state["sheet"]) or "nobody yet"}'

  def initial_state(self, request) -> Dict[str, Any]:
    return {'sheet': [], 'asked': False}

  def wait(self, store, record, request, resumed):
    SignBackend.calls.append(('wait', record.review_id, resumed))
    record = store.update(record.review_id,
                          lambda r: r.with_state(asked=True, sheet=list(self.settings.approvers)))
    answers = [decision_rule.Answer(user=name, verdict=decision_lib.APPROVED, at=0.0,
                                    how='signature') for name in record.state['sheet']]
    result = decision_rule.tally(answers, self.settings.approvers, self.settings.quorum)
    return decision_lib.Decision(decision=result.verdict or decision_lib.TIMEOUT,
                                 backend=self.NAME, reviewer=result.reviewers,
                                 reason=decision_rule.describe(result))


def test_a_new_backend_is_one_class_and_the_executor_calls_one_method(tmp_path, monkeypatch):
  monkeypatch.setitem(backends.BACKENDS, SignBackend.NAME, SignBackend)
  monkeypatch.setattr(SignBackend, 'calls', [])
  blessing = support.run_gate(str(tmp_path), support.gate_properties(
      backend='sign', approvers=['alice', 'bob'], quorum=2, slack_channel=None),
                              with_montage=False)
  assert blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_string_custom_property('reviewer') == 'alice,bob'
  assert blessing.get_string_custom_property('review_backend') == 'sign'
  [(_, review_id, resumed)] = SignBackend.calls
  assert not resumed
  # Its record went through the store's schema, its own fields included.
  record = review_store.ReviewStore(str(tmp_path / 'reviews')).get(review_id)
  assert (record.backend, record.closed, record.status, dict(record.state)) == (
      'sign', True, 'approved', {'sheet': ['alice', 'bob'], 'asked': True})
  from pipeline.cli import main  # pylint: disable=g-import-not-at-top
  listed = CliRunner().invoke(main, ['review', 'list', '--all', '--pipeline-root',
                                     str(tmp_path)])
  assert listed.exit_code == 0, listed.output
  assert '    sign the sheet; signed: alice, bob\n' in listed.output
  # A field the backend does not declare is refused like any other.
  path = tmp_path / 'reviews' / f'{review_id}.json'
  data = json.loads(path.read_text())
  data['state']['verdict'] = 'approved'
  path.write_text(json.dumps(data))
  with pytest.raises(review_store.ReviewStoreError, match="has an unknown field 'state.verdict'"):
    review_store.ReviewStore(str(tmp_path / 'reviews')).get(review_id)


def test_a_record_round_trips_through_its_json_and_the_schema_names_what_is_wrong():
  record = support.local_record('ab' * 32, approvers=('alice', 'bob'), quorum=2).replace(
      review_id='abababab-1')
  data = record.to_json()
  assert data['format_version'] == review_record.FORMAT_VERSION
  assert review_record.ReviewRecord.from_json(
      json.loads(json.dumps(data)), backends.state_fields, 'abababab-1') == record
  cases = [
      (dict(data, quorum='2'), 'has a str for quorum'),
      (dict(data, approvers=['alice', 7]), 'has approvers'),
      (dict(data, fingerprint='xyz'), "has fingerprint 'xyz', which is not a sha256 hex digest"),
      (dict(data, created_at='yesterday'), 'which is not an ISO-8601 UTC time'),
      (dict(data, timeout_seconds=float('inf')), 'which is not a finite number'),
      (dict(data, decision={'decision': 'approved'}), 'has no backend'),
      (dict(data, state=dict(data['state'], answers=[{'by': 'alice'}])),
       'holds answer 1 that is not an object with by, verdict, comment, answered_at'),
      ({k: v for k, v in data.items() if k != 'headline'}, 'has no headline'),
      (dict(data, headline={'counts': {'flagged': 'many'}}),
       "holds a count 'flagged' that is not a whole number"),
  ]
  for bad, why in cases:
    with pytest.raises(review_record.RecordError, match=why.replace('(', r'\(')):
      review_record.ReviewRecord.from_json(bad, backends.state_fields, 'abababab-1')
