"""`vog-audit report`: rebuild report.html (and flagged.png) from a difficulty report folder.

    vog-audit report DIR [--module-file FILE]

DIR is a DifficultyReport artifact folder or `<output>/difficulty_report` of
`vog-audit score`, a local path or a URI (gs://, ...). Useful after an upgrade of the
page, or when the page was lost.
"""

import click

from pipeline.cli import fail


@click.command()
@click.argument('report_dir', type=click.Path())
@click.option('--module-file', default=None,
              help='The audit\'s module file, when it used vog_inputs_fn.')
def report(report_dir, module_file):
  """Rebuild the review page of the VoG audit in REPORT_DIR."""
  from components.vog.inputs import storage  # pylint: disable=g-import-not-at-top
  try:
    folder = storage.is_dir(report_dir)
  except storage.ERRORS as e:
    fail(f'{report_dir} cannot be read ({e}); give the difficulty_report folder of an '
         'audit that this user can read')
  if not folder:
    fail(f'{report_dir} is not a folder; give the difficulty_report folder of an audit')
  from components.vog import audit_errors  # pylint: disable=g-import-not-at-top
  from components.vog import report_page  # pylint: disable=g-import-not-at-top
  try:
    page = report_page.rebuild_report_page(report_dir, module_file)
  except audit_errors.AuditConfigError as e:
    fail(str(e))
  click.echo(f'report: {page}')
