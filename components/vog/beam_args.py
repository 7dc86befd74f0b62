"""Beam pipeline arguments given as a setting: checked where they are read, shown without secrets.

A Beam argument can carry a credential: `--s3_secret_access_key=...`, `--s3_session_token=...`,
`--azure_connection_string=...`, or a URL with `user:password@` in it. `shown` replaces such a
value with `<hidden>` and keeps the option's name, so that the refusal of a bad argument and the
VarianceOfGradients executor's log line say which option it was without repeating its value.
"""

import re
from typing import Any, List, Optional, Sequence, Tuple

HIDDEN = '<hidden>'
# Words in an option's name that mark its value as a credential. Broad on purpose: hiding the
# value of a harmless option (`--gcp_oauth_scopes`) costs less than logging a key.
_SECRET_NAME = re.compile(
    r'secret|token|passw|passphrase|pwd|credential|connection[_-]?string|api[_-]?key|'
    r'private[_-]?key|access[_-]?key|auth|cookie', re.IGNORECASE)
# `scheme://user:password@host`: a password inside a URL, whatever the option is called.
_URL_CREDENTIALS = re.compile(r'://[^/@\s]*:[^/@\s]*@')
# `--name` or `--name=value`; `--` alone would end Beam's option parsing.
_OPTION = re.compile(r'--[A-Za-z]')
EXAMPLE = '--runner=DataflowRunner'


def _secret_option(arg: Any) -> bool:
  """Whether `arg` is a `--name...` whose name names a credential."""
  return (isinstance(arg, str) and arg.startswith('--')
          and bool(_SECRET_NAME.search(arg.partition('=')[0])))


def looks_secret(arg: str, previous: Optional[Any] = None) -> bool:
  """Whether the value in `arg` may be a secret.

  True for `--name=value` whose name names a credential (secret, token, password,
  credential, connection_string, api/private/access key, auth, cookie), for any argument
  holding `user:password@` in a URL, and for a bare value whose `previous` argument is
  such an option without `=` (`--s3_session_token ABC`).
  """
  if _URL_CREDENTIALS.search(arg):
    return True
  if arg.startswith('--'):
    return '=' in arg and _secret_option(arg)
  return _secret_option(previous) and '=' not in previous


def shown(args: Sequence[Any]) -> List[str]:
  """`args` as they may be logged: the value of a secret-looking argument is `<hidden>`.

  `--name=value` keeps its name (`--s3_session_token=<hidden>`); a bare value becomes
  `<hidden>`; an argument that is not a string (a TFX placeholder) shows its type.
  """
  result = []
  for i, arg in enumerate(args):
    previous = args[i - 1] if i else None
    if not isinstance(arg, str):
      result.append(f'<{type(arg).__name__}>')
    elif not looks_secret(arg, previous):
      result.append(arg)
    elif arg.startswith('--') and '=' in arg:
      result.append(f'{arg.partition("=")[0]}={HIDDEN}')
    else:
      result.append(HIDDEN)
  return result


def checked(args: Any, setting: str) -> Tuple[str, ...]:
  """`args` as a tuple of Beam arguments, each one `--name` or `--name=value` string.

  Each argument must be one item: a space-separated variable splits `--runner Dataflow`
  into two, and the bare `Dataflow` would be read by whatever option comes before it.

  Args:
    args: the arguments as given (a list or tuple of strings; None is none).
    setting: what the user set, for the message: a field, a variable or a flag.

  Raises:
    ValueError: naming `setting` and the item (by position, with its text unless it
      looks secret): one string instead of a list, an item that is not a string, or
      one that does not begin with `--` and a letter.
  """
  if args is None:
    return ()
  if isinstance(args, (str, bytes)):
    raise ValueError(f'{setting} must be a list of Beam arguments such as '
                     f"['{EXAMPLE}'], not one string")
  try:
    items = tuple(args)
  except TypeError:
    raise ValueError(f'{setting} must be a list of Beam arguments such as '
                     f"['{EXAMPLE}'], not a {type(args).__name__}") from None
  for position, arg in enumerate(items, 1):
    if not isinstance(arg, str):
      raise ValueError(f'{setting}: item {position} is of type {type(arg).__name__}, not a '
                       f'string like {EXAMPLE}')
    if _OPTION.match(arg):
      continue
    previous = items[position - 2] if position > 1 else None
    if arg.startswith('--'):
      # `--`, `--=x` or `---x`: the name is wrong; the value is not needed to say so.
      what = f'item {position}, {arg.partition("=")[0]!r},'
    elif looks_secret(arg, previous):
      what = f'item {position} (not shown: it may be a secret)'
    else:
      what = f'item {position}, {arg!r},'
    if (isinstance(previous, str) and previous.startswith('--') and '=' not in previous
        and not arg.startswith('--')):
      fix = f'join it to the option before it as one item: {previous}=VALUE'
    else:
      fix = f'give each Beam argument as one --name=value item, e.g. {EXAMPLE}'
    raise ValueError(f'{setting}: {what} does not begin with "--" and an option name; {fix}')
  return items
