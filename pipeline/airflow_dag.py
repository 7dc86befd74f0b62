"""Airflow DAG for scheduled retraining audits, built with TFX's AirflowDagRunner.

Install: copy or symlink this file into Airflow's dags folder on a machine where
vog-audit is installed (`pip install -c constraints.txt -e .`), and configure it through
the environment of the scheduler and workers:

  VOG_AUDIT_HOME           folder with data/, pipeline_root/, serving_model/ (required,
                           unless the three VOG_AUDIT_* paths below are all set)
  VOG_AUDIT_DATA_ROOT, VOG_AUDIT_PIPELINE_ROOT, VOG_AUDIT_SERVING_DIR   path overrides
  VOG_AUDIT_SCHEDULE       cron expression or preset; default '@weekly'
  VOG_AUDIT_START_DATE     first logical date, YYYY-MM-DD; default 2025-01-01
  VOG_AUDIT_MYSQL_HOST, _PORT, _DATABASE, _USER, _PASSWORD   ML Metadata in MySQL
                           (SQLite under the pipeline root otherwise)
  VOG_AUDIT_BEAM_ARGS      Beam arguments of every Beam component, space separated
  VOG_AUDIT_VOG_BEAM_ARGS  Beam arguments of the VarianceOfGradients task alone, space
                           separated, each --name=value (e.g. a GPU worker pool); added
                           after VOG_AUDIT_BEAM_ARGS, so a single-valued option here wins
  VOG_AUDIT_EPOCHS         Trainer epochs
  VOG_AUDIT_DATASET        reference pipeline: digits (default), or tabular / text behind
                           Transform
  VOG_AUDIT_INSPECTION_BUDGET
                           how many examples VoG flags for review (default 200); keep it
                           well under half of each class, or the auto policy's
                           max_class_flagged_share rule rejects every model
  VOG_AUDIT_<FIELD>        any other VoG setting: its PipelineConfig field in capitals,
                           the value in the setting's text form, e.g.
                           VOG_AUDIT_VOG_STAGE=late, VOG_AUDIT_VOG_SPLITS=train,eval,
                           VOG_AUDIT_BUCKET_PERCENTILES=50,90 (components/vog/settings.py
                           declares the settings and their fields)
  VOG_AUDIT_REVIEW_BACKEND auto (default), local or slack: who approves before the Pusher
  VOG_AUDIT_REVIEW_APPROVERS, VOG_AUDIT_REVIEW_QUORUM, VOG_AUDIT_REVIEW_TIMEOUT,
  VOG_AUDIT_SLACK_CHANNEL  approvers (comma separated), how many must approve (default 1,
                           and none may reject), seconds to wait, Slack channel;
                           the Slack token comes from SLACK_BOT_TOKEN at run time

Each TFX component becomes one Airflow task with the component's id as task id. Runs do
not catch up on missed intervals, and one run at a time writes to the pipeline root.
Tasks start through pipeline.airflow_launcher, which hands a Beam component its own
arguments as well as the pipeline's (TFX's Airflow runner would drop the former).
"""

import datetime
import os

from absl import logging as absl_logging
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner
from tfx.orchestration.airflow.airflow_dag_runner import AirflowPipelineConfig

from pipeline import audit_pipeline
from pipeline.airflow_launcher import ComponentBeamArgsLauncher
from pipeline.config import PipelineConfig

DEFAULT_SCHEDULE = '@weekly'
DEFAULT_START_DATE = '2025-01-01'


def airflow_dag_config(environ=None) -> dict:
  """The Airflow DAG arguments: schedule, start date, no catch-up, one active run."""
  environ = os.environ if environ is None else environ
  start = environ.get('VOG_AUDIT_START_DATE', DEFAULT_START_DATE)
  try:
    start_date = datetime.datetime.strptime(start, '%Y-%m-%d')
  except ValueError as e:
    raise ValueError(f'VOG_AUDIT_START_DATE={start!r} is not a date like 2025-01-01') from e
  return {
      'schedule': environ.get('VOG_AUDIT_SCHEDULE') or DEFAULT_SCHEDULE,
      'start_date': start_date,
      'catchup': False,
      'max_active_runs': 1,
      'tags': ['vog-audit'],
  }


def create_dag(environ=None):
  """The audit pipeline as an Airflow DAG configured from `environ`."""
  config = PipelineConfig.from_env(environ)
  # TensorFlow's SavedModel export (the Trainer's) puts absl's verbosity back to WARNING
  # when none was set (tensorflow/python/trackable/autotrackable.py), which drops every
  # later INFO line of the process, such as the Beam arguments VarianceOfGradients logs,
  # where tasks share one process (`airflow dags test`). An explicit INFO survives it.
  absl_logging.set_verbosity(absl_logging.INFO)
  runner_config = AirflowPipelineConfig(
      airflow_dag_config(environ), supported_launcher_classes=[ComponentBeamArgsLauncher])
  return AirflowDagRunner(runner_config).run(audit_pipeline.create_local_pipeline(config))


# Airflow finds DAGs among module-level names.
DAG = create_dag()
