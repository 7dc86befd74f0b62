"""The JSON type checks every reader of a report shares, and the row types' JSON.

`check` and `field` refuse a value of the wrong JSON type (ReportFormatError naming the
file and the fix); `fields` reads a row type (a frozen dataclass) from one parsed JSON
object by its plain fields, and `to_json` writes them back, so a row type declares its
JSON once, by its annotations. Imports nothing of the audit.
"""

import dataclasses
from typing import Any, Collection, Dict, Mapping, NoReturn, Optional, Tuple


class ReportFormatError(ValueError):
  """A report folder's file is missing or does not hold what the format says."""


REWRITE = ('re-run the VarianceOfGradients audit to rewrite the report, or give the '
           'difficulty_report folder of one')


def fail(where: str, problem: str, fix: str = REWRITE) -> NoReturn:
  raise ReportFormatError(f'{where}: {problem} - {fix}')


INT, NUM, STR, OBJ, LIST = 'an integer', 'a number', 'a string', 'an object', 'a list'
BOOL = 'a boolean'
_JSON_KINDS = {dict: OBJ, list: LIST, str: STR, bool: BOOL, int: INT, float: NUM,
               type(None): 'null'}


def describe(value: Any) -> str:
  kind = _JSON_KINDS.get(type(value), 'a value')
  return kind if kind in (OBJ, LIST) else f'{kind} ({repr(value)[:40]})'


def check(value: Any, kind: str, where: str, what: str) -> Any:
  """`value` when it is of `kind` (a number may be an integer); else ReportFormatError."""
  found = _JSON_KINDS.get(type(value))
  if found != kind and (kind, found) != (NUM, INT):
    fail(where, f'{what} is {describe(value)}; expected {kind}')
  return float(value) if kind == NUM else value


def field(obj: Mapping[str, Any], key: str, kind: str, where: str,
          optional: bool = False) -> Any:
  """obj[key] of `kind`; None when `optional` and the key is missing or null."""
  if obj.get(key) is None:
    if optional:
      return None
    fail(where, f'has no {key!r}' if key not in obj else f'has {key!r} null')
  return check(obj[key], kind, where, repr(key))


def int_map(obj: Any, where: str, what: str) -> Dict[str, int]:
  """{name: int} such as beam_counters."""
  check(obj, OBJ, where, what)
  return {k: check(n, INT, where, f'{what}[{k!r}]') for k, n in obj.items()}


def int_maps(obj: Any, where: str, what: str) -> Dict[str, Dict[str, int]]:
  """{name: {name: int}} such as quarantine_kinds."""
  check(obj, OBJ, where, what)
  return {outer: int_map(inner, where, f'{what}[{outer!r}]') for outer, inner in obj.items()}


_KINDS = {int: (INT, False), float: (NUM, False), str: (STR, False),
          Optional[int]: (INT, True), Optional[float]: (NUM, True),
          Optional[str]: (STR, True)}
_JSON_KEYS = {'class_id': 'class'}  # attributes named otherwise in JSON


def spec(cls) -> Tuple[Tuple[str, str, str, bool], ...]:
  """(attribute, JSON key, kind, may be missing or null) of a row type's plain fields."""
  return tuple((f.name, _JSON_KEYS.get(f.name, f.name)) + _KINDS[f.type]
               for f in dataclasses.fields(cls) if f.type in _KINDS)


def fields(cls, obj: Any, where: str) -> Dict[str, Any]:
  """{attribute: checked value} of the row type `cls` from one parsed JSON object."""
  if not isinstance(obj, dict):
    fail(where, f'is {describe(obj)}; expected an object')
  return {attr: field(obj, key, kind, where, optional)
          for attr, key, kind, optional in spec(cls)}


def rows(values: Any, key: str, cls, where: str) -> tuple:
  """The rows of type `cls` of the JSON list `values` (summary.json's `key`)."""
  check(values, LIST, where, repr(key))
  return tuple(cls(**fields(cls, v, f'{where}, {key}[{i}]')) for i, v in enumerate(values))


_CASTS = {INT: int, NUM: float, STR: str}  # NumPy scalars from the writer become JSON's


def to_json(row, omitted_when_none: Collection[str] = ()) -> Dict[str, Any]:
  """The plain fields of a row as JSON values; those of `omitted_when_none` (fields a
  later format_version added) are left out while None, so an older row is written as
  before."""
  return {key: None if getattr(row, attr) is None else _CASTS[kind](getattr(row, attr))
          for attr, key, kind, _ in spec(type(row))
          if not (attr in omitted_when_none and getattr(row, attr) is None)}
