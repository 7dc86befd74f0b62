"""Analysts' verdicts: what an approver says about one flagged example of one audit.

A verdict is one of

    wrong label   the label is wrong; `corrected_label` is the right class (a class of the
                  report, not the label the example has)
    correct       the example is hard, but its label is right
    ambiguous     no single label fits
    exclude       the example is not valid data and should leave the data set

with an optional one-line note. It is kept with who gave it (a name among the approvers the
caller names: the gate's, see `vog-audit review mark`), when (UTC), the audit it was given in
(the report folder's URI, its ML Metadata artifact id when known, and `summary_sha256`, the
sha256 of summary.json's content as canonical JSON, which names the audit wherever its folder
is copied) and which example: its `example_id`, `split`, the label the report gave it, and
`fingerprint`, the content hash of its serialized bytes (`examples_io.fingerprint` of its
record in flagged_examples.tfrecord, the hash the audit gives an example without an id).

Layout: one JSON file per verdict, `<verdicts_dir>/NNNNNNNNNNNN.json` (default
`<pipeline_root>/verdicts/`), numbered 1, 2, 3... in the order they were recorded. Files are
only ever added, never changed, so the folder is an append-only log: a verdict is written to a
temporary file, fsynced, renamed to its number and the folder fsynced (`review_store.write_json`),
with the number taken under the exclusive `flock` of `<verdicts_dir>/.lock`
(`review_store.lock_folder`, the reviews folder's discipline). Concurrent writers therefore get
distinct numbers and lose nothing; a crash leaves either the whole verdict or a hidden
temporary file readers ignore; a damaged file costs that one verdict and is skipped, not the
log. One file per verdict rather than a JSON-lines file per audit: an append to a shared file
can be torn by a crash or interleaved on a network file system, and rewriting it whole would
cost every writer the whole log.

Latest wins: for each example (`split`, `example_id`; or by `fingerprint`, for the same
content under another id) the verdict with the highest number counts, whichever approver gave
it and in whichever audit: a later verdict by any approver supersedes an earlier one. The
order is the order of recording under the lock, not the writers' clocks; `history` keeps every
verdict.

Trust, as for review records: the folder is input. Every read checks each file against the
schema (a missing, unknown or ill-typed field, or a value outside its pattern, is refused,
naming the field), refuses symbolic links, anything but a regular file and files over
MAX_VERDICT_BYTES, and counts only verdicts by the approvers the reader names; whatever is
refused is skipped with a warning (`VerdictStore.skipped`). Names are not authenticated:
whoever can write the folder can write a verdict under any approver's name.
"""

import csv
import dataclasses
import hashlib
import json
import os
import re
import time
import unicodedata
from typing import Any, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple, Union

from absl import logging

from components.review_gate import decision as decision_lib
from components.review_gate import local_backend
from components.review_gate import review_record
from components.review_gate import review_store
from components.vog.report import report_format

WRONG_LABEL = 'wrong label'
CORRECT = 'correct'
AMBIGUOUS = 'ambiguous'
EXCLUDE = 'exclude'
VERDICTS = (WRONG_LABEL, CORRECT, AMBIGUOUS, EXCLUDE)
# What teams that relabel or filter elsewhere take (`export_rows`).
EXPORTED = (WRONG_LABEL, EXCLUDE)
EXPORT_COLUMNS = ('example_id', 'split', 'fingerprint', 'verdict', 'corrected_label', 'by', 'at',
                  'audit', 'note')

FORMAT_VERSION = 1
MAX_NOTE = 500
MAX_NAME = local_backend.MAX_NAME
MAX_VERDICT_BYTES = 64 * 1024
_DIGITS = 12
_SUFFIX = '.json'
VERDICT_FILE_PATTERN = re.compile(r'([0-9]{%d})\.json' % _DIGITS)
EXAMPLE_FINGERPRINT_PATTERN = re.compile(r'[0-9a-f]{20}')
_HEX64 = review_record.FINGERPRINT_PATTERN
_NOUN = 'verdicts folder'
_HINT = 'everyone who gives verdicts needs read and write access to the verdicts folder'
# Spreadsheets run a cell that starts with one of these as a formula.
_FORMULA_START = ('=', '+', '-', '@', '\t', '\r')

Key = Union[Tuple[str, str], str]


class VerdictError(review_store.ReviewStoreError):
  """A verdict that cannot be given, or a verdicts folder that cannot be used; the message
  says which and what to do."""


def _line_problem(value: str) -> str:
  """Why `value` is not one line of text, or ''."""
  for ch in value:
    if unicodedata.category(ch) in ('Cc', 'Zl', 'Zp'):
      return 'holds a line break or control character'
  return ''


def _one_line(limit: int, *, empty: bool) -> review_record.Field:
  base = review_record.text(empty=empty)

  def check(value: str) -> str:
    if len(value) > limit:
      return f'is longer than {limit} characters'
    return base.check(value) or _line_problem(value)

  return review_record.Field((str,), check)


def _class_id() -> review_record.Field:
  return review_record.Field((int, type(None)), lambda v: (
      '' if v is None or v >= 0 else 'is not a class (a whole number >= 0)'))


# The fields of a verdict file, all required, in the order they are written.
FIELDS: Dict[str, review_record.Field] = {
    'format_version': review_record.Field((int,), lambda v: '' if v == FORMAT_VERSION else (
        f'this version of vog-audit does not read (it reads {FORMAT_VERSION})')),
    'verdict_id': review_record.whole(minimum=1),
    'verdict': review_record.Field((str,), lambda v: '' if v in VERDICTS else (
        f'is not one of {", ".join(VERDICTS)}')),
    'corrected_label': _class_id(),
    'note': _one_line(MAX_NOTE, empty=True),
    'by': _one_line(MAX_NAME, empty=False),
    'at': review_record.text(review_record.ISO_TIME_PATTERN, empty=False,
                             what='an ISO-8601 UTC time'),
    'example_id': review_record.text(empty=False),
    'split': review_record.text(empty=False),
    'fingerprint': review_record.text(EXAMPLE_FINGERPRINT_PATTERN, empty=False,
                                      what='an example fingerprint (20 hex digits)'),
    'label': _class_id(),
    'report_uri': review_record.text(empty=False),
    'report_id': review_record.Field((int, type(None)), lambda v: (
        '' if v is None or v >= 1 else 'is not an ML Metadata artifact id')),
    'summary_sha256': review_record.text(_HEX64, empty=False, what='a sha256 hex digest'),
}


@dataclasses.dataclass(frozen=True)
class Audit:
  """The audit a verdict was given in: its report folder, the report's ML Metadata artifact
  id (None when not known) and the sha256 of its summary (`summary_sha256`)."""
  report_uri: str
  report_id: Optional[int]
  summary_sha256: str


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One verdict as it is kept on disk; `verdict_id` is its number in the log (0 until
  recorded)."""
  verdict_id: int
  verdict: str
  corrected_label: Optional[int]
  note: str
  by: str
  at: str
  example_id: str
  split: str
  fingerprint: str
  label: Optional[int]
  report_uri: str
  report_id: Optional[int]
  summary_sha256: str

  @property
  def audit(self) -> Audit:
    return Audit(self.report_uri, self.report_id, self.summary_sha256)

  def key(self, by_fingerprint: bool = False) -> Key:
    """What a later verdict supersedes this one for: (split, example_id), or the content
    fingerprint."""
    return self.fingerprint if by_fingerprint else (self.split, self.example_id)

  def describe(self) -> str:
    """'wrong label (8 -> 3)', 'correct', ..."""
    if self.verdict == WRONG_LABEL:
      given = '?' if self.label is None else self.label
      return f'{WRONG_LABEL} ({given} -> {self.corrected_label})'
    return self.verdict

  def to_json(self) -> Dict[str, Any]:
    data = {'format_version': FORMAT_VERSION}
    data.update((name, getattr(self, name)) for name in FIELDS if name != 'format_version')
    return data

  @classmethod
  def from_json(cls, data: Any, verdict_id: Optional[int] = None) -> 'Verdict':
    """Checks `data` against the schema and returns the verdict.

    Raises:
      review_record.RecordError: what is wrong, naming the field, e.g. 'has no by',
        "has an unknown field 'score'", 'has a str for corrected_label'.
    """
    if not isinstance(data, dict):
      raise review_record.RecordError(f'is not a JSON object but a {type(data).__name__}')
    for name, field in FIELDS.items():
      if name not in data:
        raise review_record.RecordError(f'has no {name}')
      why = field.problem(name, data[name])
      if why:
        raise review_record.RecordError(why)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
      raise review_record.RecordError(f'has an unknown field {unknown[0]!r}')
    if verdict_id is not None and data['verdict_id'] != verdict_id:
      raise review_record.RecordError(
          f'holds verdict {data["verdict_id"]}, not the {verdict_id} its name says')
    wrong = data['verdict'] == WRONG_LABEL
    if wrong != (data['corrected_label'] is not None):
      raise review_record.RecordError(
          f'has corrected_label {data["corrected_label"]!r} with verdict {data["verdict"]!r}; '
          f'only {WRONG_LABEL!r} has one, and always')
    if wrong and data['corrected_label'] == data['label']:
      raise review_record.RecordError(
          f'has corrected_label {data["corrected_label"]}, the label the example already has')
    return cls(**{name: data[name] for name in FIELDS if name != 'format_version'})


def normal_uri(uri: str) -> str:
  """A report URI as verdicts keep and compare it: a local path made absolute, a URI
  without a final /."""
  return uri.rstrip('/') if '://' in uri else os.path.abspath(uri)


def default_verdicts_dir(pipeline_root: str) -> str:
  """Where verdicts live for a pipeline root: `<pipeline_root>/verdicts`."""
  return os.path.join(pipeline_root, 'verdicts')


def parse_verdict(text: str) -> str:
  """The verdict `text` names ('wrong label', also 'wrong-label' or 'wrong_label'; any case)."""
  name = ' '.join(re.split(r'[-_\s]+', str(text).strip().lower()))
  if name not in VERDICTS:
    raise VerdictError(f'{text!r} is not a verdict; give one of: '
                       f'{", ".join(repr(v) for v in VERDICTS)}')
  return name


def check_approvers(approvers: Sequence[str]) -> Tuple[str, ...]:
  """The approvers as a tuple; refuses an empty list and names that cannot be a verdict's."""
  names = tuple(approvers)
  if not names:
    raise VerdictError('no approvers given: verdicts count only when an approver gives them; '
                       'pass --approvers A,B')
  for name in names:
    if not isinstance(name, str) or FIELDS['by'].check(name):
      raise VerdictError(f'{name!r} is not an approver\'s name: a name is one line of 1 to '
                         f'{MAX_NAME} characters')
  return names


class VerdictStore:
  """The verdicts in one folder: `add` one, read the `history` or the `latest` per example.

  `skipped` lists (path, why) for every file the last read passed over; each is also logged
  as a warning, once per file and reason.
  """

  def __init__(self, folder: str, *, lock_wait_seconds: float = review_store.LOCK_WAIT_SECONDS):
    if '://' in folder:
      raise VerdictError(
          f'verdicts folder {folder} is not a local path; verdicts need file locks and atomic '
          'renames, which object stores lack - give a folder on a local disk or a POSIX '
          'network file system that every approver can reach')
    self.folder = folder
    self.skipped: List[Tuple[str, str]] = []
    self._warned = set()
    self._lock_wait_seconds = lock_wait_seconds

  def _names(self) -> List[str]:
    try:
      return sorted(os.listdir(self.folder))
    except FileNotFoundError:
      return []
    except OSError as e:
      raise VerdictError(f'cannot list the verdicts folder {self.folder} '
                         f'({review_store.os_reason(e)}); {_HINT}') from None

  def add(self, verdict: Verdict) -> Verdict:
    """Records `verdict` as the next in the log (its number and time are set here); returns it.

    The verdict is checked against the schema first; its `by` is not checked against the
    approvers here (that is `mark`'s job, and every reader's).
    """
    with review_store.lock_folder(self.folder, time.monotonic() + self._lock_wait_seconds,
                                  noun=_NOUN, hint=_HINT):
      numbers = [int(m.group(1)) for m in map(VERDICT_FILE_PATTERN.fullmatch, self._names())
                 if m]
      number = max(numbers, default=0) + 1
      if number >= 10 ** _DIGITS:
        raise VerdictError(f'the verdicts folder {self.folder} holds a verdict numbered '
                           f'{number - 1}, the last this version numbers; move it out')
      recorded = dataclasses.replace(verdict, verdict_id=number, at=decision_lib.utc_now())
      try:
        Verdict.from_json(recorded.to_json())
      except review_record.RecordError as e:
        raise VerdictError(f'the verdict {e}') from None
      review_store.write_json(self.folder, self._path(number), recorded.to_json(),
                              what=f'verdict {number}', hint=_HINT)
      return recorded

  def _path(self, number: int) -> str:
    return os.path.join(self.folder, f'{number:0{_DIGITS}d}{_SUFFIX}')

  def _skip(self, path: str, why: str) -> None:
    self.skipped.append((path, why))
    if (path, why) not in self._warned:
      self._warned.add((path, why))
      logging.warning('Verdicts: skipped %r: %s', path, why)

  def _read(self, name: str) -> Optional[Verdict]:
    path = os.path.join(self.folder, name)
    match = VERDICT_FILE_PATTERN.fullmatch(name)
    if not match:
      self._skip(path, 'its name is not a verdict number (like 000000000001.json)')
      return None
    what = 'verdict file'
    try:
      data = review_store.read_json(path, what=what, noun=_NOUN, max_bytes=MAX_VERDICT_BYTES,
                                    follow_symlinks=False)
      return Verdict.from_json(data, int(match.group(1)))
    except FileNotFoundError:
      self._skip(path, 'it was removed while being read')
    except review_store.ReviewStoreError as e:
      text = str(e)
      prefix = f'{what} {path} '
      self._skip(path, text[len(prefix):] if text.startswith(prefix) else text)
    except review_record.RecordError as e:
      self._skip(path, str(e))
    return None

  def history(self, approvers: Sequence[str]) -> List[Verdict]:
    """Every verdict by one of `approvers`, in the order recorded; other files skipped."""
    approvers = check_approvers(approvers)
    self.skipped = []
    out = []
    for name in self._names():
      if name.startswith('.') or not name.endswith(_SUFFIX):
        continue  # the lock, temporary files, other tools' files
      verdict = self._read(name)
      if verdict is None:
        continue
      if verdict.by not in approvers:
        self._skip(os.path.join(self.folder, name),
                   f'it is by {verdict.by!r}, who is not one of the approvers '
                   f'({", ".join(approvers)})')
        continue
      out.append(verdict)
    return sorted(out, key=lambda v: v.verdict_id)

  def latest(self, approvers: Sequence[str], *, by_fingerprint: bool = False
             ) -> Dict[Key, Verdict]:
    """The latest verdict per example ((split, example_id), or fingerprint), by approvers."""
    return latest_of(self.history(approvers), by_fingerprint=by_fingerprint)


def latest_of(history: Iterable[Verdict], *, by_fingerprint: bool = False
              ) -> Dict[Key, Verdict]:
  """The verdict with the highest number per key: a later one supersedes an earlier one."""
  out: Dict[Key, Verdict] = {}
  for verdict in sorted(history, key=lambda v: v.verdict_id):
    out[verdict.key(by_fingerprint)] = verdict
  return out


def latest_verdicts(folder: str, approvers: Sequence[str], *,
                    by_fingerprint: bool = False) -> Dict[Key, Verdict]:
  """The latest verdict per example in `folder`, counting only those by `approvers`.

  Keys are (split, example_id), or the example's content fingerprint with by_fingerprint.
  Files that are not verdicts, or verdicts by others, are skipped with a warning.
  """
  return VerdictStore(folder).latest(approvers, by_fingerprint=by_fingerprint)


def summary_sha256(report: report_format.LoadedReport) -> str:
  """The sha256 of the report's summary.json content as canonical JSON (sorted keys, no
  spaces): the same audit has the same value wherever its folder is copied."""
  text = json.dumps(report.summary.raw, sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(text.encode('utf-8')).hexdigest()


def report_classes(report: report_format.LoadedReport) -> Tuple[Sequence[int], str]:
  """The classes of the report, and how to say them: 0..num_classes-1 where the summary says
  num_classes, else every class its per-class rows and flagged rows name."""
  summary = report.summary
  if summary.num_classes:
    return range(summary.num_classes), f'0 to {summary.num_classes - 1}'
  named = {row.class_id for row in summary.per_class}
  for row in report.flagged:
    named.update(c for c in (row.label, row.predicted_class, row.target_class) if c is not None)
  named = sorted(named)
  return named, ', '.join(str(c) for c in named)


def flagged_row(report: report_format.LoadedReport, example_id: str, split: Optional[str] = None
                ) -> int:
  """The index in `report.flagged` of the flagged example `example_id` (of `split`)."""
  found = [i for i, row in enumerate(report.flagged)
           if row.example_id == example_id and (split is None or row.split == split)]
  if not found:
    where = f' in split {split!r}' if split is not None else ''
    raise VerdictError(f'{example_id!r} is not a flagged example{where} of the report '
                       f'{report.uri}; its flagged.jsonl lists the ones a verdict can be on')
  if len(found) > 1:
    splits = ', '.join(report.flagged[i].split for i in found)
    raise VerdictError(f'{example_id!r} is flagged in several splits ({splits}) of the report; '
                       'say which with --split')
  return found[0]


def mark(store: VerdictStore, report: report_format.LoadedReport, *, example_id: str,
         verdict: str, by: str, approvers: Sequence[str], label: Optional[int] = None,
         note: str = '', split: Optional[str] = None,
         report_id: Optional[int] = None) -> Verdict:
  """Records an approver's verdict on one flagged example of `report`; returns it.

  Refuses (VerdictError, one line): a name not among `approvers`; an unknown verdict; a note
  longer than MAX_NOTE or of more than one line; an example the report did not flag; a
  `wrong label` verdict without `label`, or a label with any other verdict; a label that is
  not a class of the report or is the label the example already has.
  """
  approvers = check_approvers(approvers)
  by = (by or '').strip()
  if not by:
    raise VerdictError(f'say who gives the verdict: pass --by NAME (one of the approvers: '
                       f'{", ".join(approvers)})')
  if by not in approvers:
    raise VerdictError(f'{by!r} is not an approver; approvers are: {", ".join(approvers)}')
  verdict = parse_verdict(verdict)
  note = note or ''
  if len(note) > MAX_NOTE:
    raise VerdictError(f'the note is {len(note)} characters; keep it under {MAX_NOTE}')
  if _line_problem(note):
    raise VerdictError('the note holds a line break or control character; keep it to one line')
  if isinstance(label, bool) or not isinstance(label, (int, type(None))):
    raise VerdictError(f'the label {label!r} is not a class (a whole number)')
  index = flagged_row(report, example_id, split)
  row = report.flagged[index]
  if verdict == WRONG_LABEL:
    if label is None:
      raise VerdictError(f"a {WRONG_LABEL!r} verdict needs the right class: pass --label N")
    classes, said = report_classes(report)
    if label not in classes:
      raise VerdictError(f'{label} is not a class of the report (its classes: {said})')
    if label == row.label:
      raise VerdictError(f'{label} is the label {example_id!r} already has; give the right '
                         f'class, or the verdict {CORRECT!r}')
  elif label is not None:
    raise VerdictError(f'--label goes only with the verdict {WRONG_LABEL!r}, not {verdict!r}')
  return store.add(Verdict(
      verdict_id=0, verdict=verdict, corrected_label=label, note=note, by=by,
      at=decision_lib.utc_now(), example_id=row.example_id, split=row.split,
      fingerprint=example_fingerprint(report, index), label=row.label, report_uri=report.uri,
      report_id=report_id, summary_sha256=summary_sha256(report)))


def example_fingerprint(report: report_format.LoadedReport, index: int) -> str:
  """The content fingerprint of flagged example `index`: the audit's hash of its bytes."""
  # Imported here: it loads TensorFlow, which listing and exporting verdicts do not need.
  from components.vog.inputs import examples_io  # pylint: disable=g-import-not-at-top
  return examples_io.fingerprint(report.flagged_examples()[index])


def export_rows(verdicts: Iterable[Verdict]) -> List[Dict[str, Any]]:
  """The rows of the export, one per `wrong label` or `exclude` verdict (give it the latest
  ones), by split and example id; `audit` is the report folder's URI."""
  rows = []
  for v in sorted(verdicts, key=lambda v: (v.split, v.example_id, v.verdict_id)):
    if v.verdict not in EXPORTED:
      continue
    rows.append({'example_id': v.example_id, 'split': v.split, 'fingerprint': v.fingerprint,
                 'verdict': v.verdict, 'corrected_label': v.corrected_label, 'by': v.by,
                 'at': v.at, 'audit': v.report_uri, 'note': v.note})
  return rows


def csv_cell(value: Any) -> str:
  """`value` as a CSV cell a spreadsheet shows as text: one starting with =, +, -, @, a tab or
  a carriage return gets a leading apostrophe, so that it is not run as a formula."""
  text = '' if value is None else str(value)
  return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(rows: Iterable[Dict[str, Any]], out: TextIO) -> None:
  """`export_rows` as CSV with a header line; open `out` with newline=''."""
  writer = csv.writer(out)
  writer.writerow(EXPORT_COLUMNS)
  for row in rows:
    writer.writerow([csv_cell(row[c]) for c in EXPORT_COLUMNS])


def write_jsonl(rows: Iterable[Dict[str, Any]], out: TextIO) -> None:
  """`export_rows` as JSON lines (ASCII, sorted keys)."""
  for row in rows:
    out.write(json.dumps({c: row[c] for c in EXPORT_COLUMNS}, sort_keys=True) + '\n')
