"""The artifact types of the audit: its report, and the pointer to the last shipped one."""

from tfx.types import artifact

# Kubeflow Pipelines v2 finds a custom type's class by its name, `<module>.<Class>` with
# one dot, so both are named after the package that exports them (components/__init__.py).


class DifficultyReport(artifact.Artifact):
  """A VoG audit's findings: summary.json, flagged.jsonl, quarantine and history shards,
  report.html.

  Headline counts are integer custom properties: seen, scored, quarantined, flagged; with
  a baseline, the drift headline too (flagged_share_change, newly_flagged, still_flagged,
  max_class_hard_share_increase).
  """
  TYPE_NAME = 'components.DifficultyReport'


class ShippedAudit(artifact.Artifact):
  """Which audit belongs to the last model that shipped: the drift baseline of the next.

  HumanReviewGate writes one per review (shipped_audit.json, see components.vog.report.baseline):
  this run's DifficultyReport when it blessed the model, else the one it was given, so the
  newest ShippedAudit always names the audit of the newest shipped model (or none yet).
  Custom properties repeat the file: difficulty_report_uri, difficulty_report_id,
  model_id, carried (1 when passed on from an earlier run).
  """
  TYPE_NAME = 'components.ShippedAudit'
