"""The artifact type VarianceOfGradients writes for people and the review gate."""

from tfx.types import artifact


class DifficultyReport(artifact.Artifact):
  """A VoG audit's findings: summary.json, flagged.jsonl, quarantine shards, report.html.

  Headline counts are integer custom properties: seen, scored, quarantined, flagged.
  """
  # KFP v2 needs custom artifact types named <namespace>.<Name>.
  TYPE_NAME = 'vog_audit.DifficultyReport'
