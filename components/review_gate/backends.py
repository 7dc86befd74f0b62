"""The review backends HumanReviewGate knows: declared here, once.

Everything else - the component's parameter check, the executor, the review store's schema,
`vog-audit review list` - reads this list. A new way of asking (Teams, a web page) is one new
module with a `backend_api.ReviewBackend` subclass, added to `_BACKEND_CLASSES`.
"""

from typing import Dict, Mapping, Optional, Tuple, Type

from components.review_gate import auto_policy
from components.review_gate import backend_api
from components.review_gate import local_backend
from components.review_gate import review_record
from components.review_gate import slack_backend

_BACKEND_CLASSES: Tuple[Type[backend_api.ReviewBackend], ...] = (
    slack_backend.SlackBackend,
    local_backend.LocalBackend,
    auto_policy.AutoBackend,
)
BACKENDS: Dict[str, Type[backend_api.ReviewBackend]] = {
    cls.NAME: cls for cls in _BACKEND_CLASSES}
NAMES: Tuple[str, ...] = tuple(BACKENDS)


def get(name: str) -> Type[backend_api.ReviewBackend]:
  """The backend class called `name`; ValueError listing the known names otherwise."""
  if not isinstance(name, str) or name not in BACKENDS:
    raise ValueError(f'backend {name!r} is not one of {", ".join(NAMES)}')
  return BACKENDS[name]


def check_settings(settings: backend_api.GateSettings) -> backend_api.GateSettings:
  """The settings, normalised by their backend's own check; ValueError for any it refuses."""
  return get(settings.backend).check_settings(settings)


def state_fields(name: str) -> Optional[Mapping[str, review_record.Field]]:
  """The record fields backend `name` keeps, or None when no backend here keeps records so
  named (an unknown backend, or one that keeps none)."""
  cls = BACKENDS.get(name)
  return cls.STATE_FIELDS if cls is not None and cls.RECORDS else None
