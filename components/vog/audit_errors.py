"""The errors of an audit that a person fixes: its configuration, or an input file.

Planning (audit_plan.py), the user module (user_module.py), the run (audit.py) and the
page rebuild (report_page.py) raise them; the executor and `vog-audit` catch them.
"""


class AuditConfigError(ValueError):
  """A configuration problem found before any example is scored."""


class AuditInputError(AuditConfigError):
  """An input file that cannot be read (damaged framing); names the file and where."""
