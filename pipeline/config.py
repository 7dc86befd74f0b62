"""Configuration of the reference pipeline: paths, ML Metadata, Beam and component settings.

One `PipelineConfig` feeds every runner (local, Airflow, Kubeflow). `from_env` builds it
from `VOG_AUDIT_*` environment variables, which is how the Airflow DAG file is configured.
"""

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from components.vog import beam_args as beam_args_lib
from components.vog.settings import VogSettings
from components.vog.settings import declared
from pipeline.reference import reference_datasets

# The digits Trainer module file, and its run_fn in the installed package.
MODULE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference',
                           'trainer_module.py')
TRAINER_RUN_FN = 'pipeline.reference.trainer_module.run_fn'
# module_file and transform_module_file default to the reference module file of the
# config's `dataset` (pipeline.reference.reference_datasets).
REFERENCE_MODULE = 'reference'
MYSQL_PASSWORD_ENV = 'VOG_AUDIT_MYSQL_PASSWORD'
# Where the MySQL client library inside ML Metadata looks for a password the config lacks.
MYSQL_CLIENT_PASSWORD_ENV = 'MYSQL_PWD'
DEFAULT_BEAM_ARGS = ('--direct_running_mode=multi_processing', '--direct_num_workers=0')
# The written policy of the `auto` review backend (rules of components.review_gate.auto_policy).
# It rejects a model when more than 1% of the examples could not be scored (the data is
# broken, not hard), or when VoG flags more than half of one class in a split (that class is
# probably mislabeled wholesale, which a model trained on it has learned).
DEFAULT_AUTO_POLICY = (('max_quarantined_share', 0.01), ('max_class_flagged_share', 0.5))


@dataclasses.dataclass(frozen=True)
class MetadataConfig:
  """Where ML Metadata lives: a SQLite file (default) or a MySQL database.

  For MySQL set `mysql_host` and `mysql_database` (and usually `mysql_user`), and put the
  password in the environment variable named by `password_env`. The password is never part
  of `connection_config()`: TFX compiles that config into the pipeline IR, hands it to every
  Airflow task and logs it before connecting, and ML Metadata logs it at DEBUG level.
  Instead `export_password()` copies it to MYSQL_PWD in the process that connects, where
  the MySQL client library built into ML Metadata reads it when the config holds no
  password. So the password sits in no config file, DAG, compiled spec, log or artifact.
  """
  sqlite_path: Optional[str] = None
  mysql_host: Optional[str] = None
  mysql_port: int = 3306
  mysql_database: Optional[str] = None
  mysql_user: Optional[str] = None
  password_env: str = MYSQL_PASSWORD_ENV

  @property
  def kind(self) -> str:
    return 'mysql' if self.mysql_host else 'sqlite'

  def connection_config(self):
    """The `metadata_store_pb2.ConnectionConfig` for this store, never with a password.

    For MySQL, call `export_password()` in the process that connects (the pipeline
    factories in pipeline.audit_pipeline do).

    Raises ValueError naming the missing setting: no SQLite path, MySQL without a
    database, or a port out of range.
    """
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
    config = metadata_store_pb2.ConnectionConfig()
    if self.kind == 'sqlite':
      if not self.sqlite_path:
        raise ValueError('ML Metadata needs a SQLite path (metadata.sqlite_path) or a '
                         'MySQL host (metadata.mysql_host)')
      config.sqlite.filename_uri = self.sqlite_path
      config.sqlite.connection_mode = (
          metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
      return config
    if not self.mysql_database:
      raise ValueError(f'MySQL ML Metadata at {self.mysql_host} needs a database name; '
                       'set mysql_database (VOG_AUDIT_MYSQL_DATABASE)')
    if not 0 < int(self.mysql_port) < 65536:
      raise ValueError(f'mysql_port={self.mysql_port!r} is not a TCP port')
    config.mysql.host = self.mysql_host
    config.mysql.port = int(self.mysql_port)
    config.mysql.database = self.mysql_database
    if self.mysql_user:
      config.mysql.user = self.mysql_user
    return config

  def export_password(self, environ: Optional[Mapping[str, str]] = None) -> bool:
    """Hands the MySQL password to the MySQL client library of this process.

    Copies the variable named by `password_env` (looked up in `environ`, os.environ when
    None) to MYSQL_PWD in os.environ. ML Metadata's client library reads MYSQL_PWD when it
    connects with a config that holds no password. Child processes inherit it, as they
    inherit the variable it comes from.

    Returns whether a password was exported: False for SQLite, and when the variable is
    unset or empty (a MYSQL_PWD set by hand then still applies).
    """
    environ = os.environ if environ is None else environ
    password = environ.get(self.password_env)
    if self.kind != 'mysql' or not password:
      return False
    os.environ[MYSQL_CLIENT_PASSWORD_ENV] = password
    return True


def _with_vog_settings(cls: type) -> type:
  """Adds to `cls` a field for each VoG setting the pipeline configuration shows.

  The declaration in components/vog/settings.py names each field (`vog_<setting>`
  unless it says otherwise: label_key, example_id_key, inspection_budget,
  bucket_percentiles) and gives its type and default; applied under
  @dataclasses.dataclass, they become fields of the dataclass, after the ones the class
  declares. Raises TypeError when the class already has a field of that name.
  """
  annotations = cls.__dict__['__annotations__']
  for setting in declared():
    if setting.config_field is None:
      continue
    if setting.config_field in annotations:
      raise TypeError(f'{cls.__name__}.{setting.config_field} is declared twice: by the '
                      f'class and by the VoG setting {setting.name}; rename one of them')
    annotations[setting.config_field] = setting.type
    setattr(cls, setting.config_field, setting.default)
  return cls


@dataclasses.dataclass(frozen=True)
@_with_vog_settings
class PipelineConfig:
  """Everything the reference pipeline needs. Paths may be local or gs://.

  data_root: folder with `train/` and `eval/` TFRecords (see pipeline.reference.demo_data).
  pipeline_root: where TFX writes artifacts.
  serving_model_dir: where the Pusher copies a blessed model.
  dataset: the reference pipeline to build (pipeline.reference.reference_datasets): `digits`
    (no Transform), or `tabular` or `text`, which put Transform between SchemaGen and
    the Trainer; VarianceOfGradients then reads the raw examples and the transform graph.
  metadata: the ML Metadata store; SQLite under `pipeline_root` when None.
  module_file: the Trainer module file, packaged by TFX with each run so that edits
    invalidate the cache; REFERENCE_MODULE (the default) is the dataset's own
    (pipeline/reference/trainer_module.py for digits); None uses `trainer_run_fn` from the
    installed package instead (container images, where nothing needs packaging).
  trainer_run_fn: the installed run_fn used when module_file is None; None is the
    dataset's (e.g. `pipeline.reference.trainer_module.run_fn`).
  transform_module_file, preprocessing_fn: the same pair for Transform (datasets with
    Transform only): REFERENCE_MODULE is the dataset's module file, None uses
    `preprocessing_fn` from the installed package (None: the dataset's).
  beam_pipeline_args: for every Beam component (ImportExampleGen, StatisticsGen,
    Transform, VarianceOfGradients, Evaluator).
  vog_beam_pipeline_args: for VarianceOfGradients alone (a GPU worker pool, another
    machine type or runner), each one `--name` or `--name=value` string; empty (the
    default) leaves VoG on `beam_pipeline_args`. They are added after the pipeline's,
    never instead of them: TFX 1.16's `tfx.dsl.Pipeline` prepends the pipeline's
    arguments to a component's own (`with_beam_pipeline_args`), and LocalDagRunner and
    Kubeflow hand the component that list (TFX's Airflow runner would hand it the
    pipeline's alone; the DAG's tasks start through pipeline.airflow_launcher, which
    hands over the same list), so VoG runs with `beam_pipeline_args +
    vog_beam_pipeline_args`. Beam reads that list left to right: for an option that
    takes one value (`--runner`, `--machine_type`, `--direct_num_workers`) the VoG
    value wins, a repeatable one (`--experiments`, `--dataflow_service_options`) keeps
    the values of both, and a pipeline option VoG does not name (`--project`,
    `--temp_location`) still applies to it. Checked when the config is built
    (ValueError naming the setting; a value that looks secret is not repeated).
  epochs, batch_size, learning_rate, max_checkpoints: the Trainer's custom_config.
  label_key, example_id_key, inspection_budget, bucket_percentiles and vog_* (vog_stage,
    vog_splits, vog_gradient_layers, vog_pad_id, ...): the VarianceOfGradients settings,
    one field per setting that components/vog/settings.py declares (added to this class
    from there, each with the setting's type and default). A field also takes text,
    read in the setting's text form: vog_stage='120,240,360', vog_splits='eval,train',
    bucket_percentiles='50,90', vog_copy_splits='all'. `label_key` also names the label
    for the Evaluator. An empty vog_slice_leave_out makes the reference pipeline leave
    out `label_flipped` (the planted wrong labels' record) from its slice statistics
    (audit_pipeline.REFERENCE_SLICE_LEAVE_OUT).
  seed: the Trainer's seed (weights and shuffling).
  min_accuracy, min_hard_accuracy, max_accuracy_drop: the Evaluator's thresholds.
  review_*: the HumanReviewGate between the Evaluator and the Pusher. `review_backend`
    is `auto` (`auto_policy` decides; for demos and unattended runs), `local` (answered
    with `vog-audit review`) or `slack`; `review_approvers` are who may decide (names for
    `local`, Slack user IDs for `slack`); `review_quorum` of them must approve, and none
    reject, for the model to ship; `review_timeout_seconds` bounds the whole review,
    after which the model is NOT_BLESSED; `review_poll_seconds` is how often the answer is
    read; `reviews_dir` defaults to `<pipeline_root>/reviews`.
  slack_channel, slack_api_url, slack_token_env: the Slack backend's channel ID, Web API
    base URL (default Slack's) and the environment variable that holds the bot token.
  report_url_template: the link to report.html in review messages (see HumanReviewGate).
  auto_policy: (rule, threshold) pairs for the `auto` backend; DEFAULT_AUTO_POLICY.
  """
  data_root: str
  pipeline_root: str
  serving_model_dir: str
  pipeline_name: str = 'vog-audit'
  dataset: str = reference_datasets.DIGITS
  metadata: Optional[MetadataConfig] = None
  beam_pipeline_args: Tuple[str, ...] = DEFAULT_BEAM_ARGS
  vog_beam_pipeline_args: Tuple[str, ...] = ()
  enable_cache: bool = True
  module_file: Optional[str] = REFERENCE_MODULE
  trainer_run_fn: Optional[str] = None
  transform_module_file: Optional[str] = REFERENCE_MODULE
  preprocessing_fn: Optional[str] = None
  epochs: int = 12
  batch_size: int = 32
  learning_rate: float = 0.003
  max_checkpoints: int = 10
  min_accuracy: float = 0.8
  min_hard_accuracy: float = 0.0  # off: see pipeline.evaluation.difficulty_eval_config
  max_accuracy_drop: float = 0.05
  seed: int = 0
  review_backend: str = 'auto'
  review_approvers: Tuple[str, ...] = ()
  review_quorum: int = 1
  review_timeout_seconds: float = 24 * 3600.0
  review_poll_seconds: float = 15.0
  reviews_dir: Optional[str] = None
  slack_channel: Optional[str] = None
  slack_api_url: Optional[str] = None
  slack_token_env: str = 'SLACK_BOT_TOKEN'
  report_url_template: Optional[str] = None
  auto_policy: Tuple[Tuple[str, float], ...] = DEFAULT_AUTO_POLICY

  def __post_init__(self):
    # Frozen: the checked tuple replaces a list given in its place.
    object.__setattr__(self, 'vog_beam_pipeline_args', beam_args_lib.checked(
        self.vog_beam_pipeline_args, 'vog_beam_pipeline_args'))

  def reference(self) -> reference_datasets.ReferenceDataset:
    """The reference data set `dataset` names; ValueError naming the choices if none."""
    return reference_datasets.reference_dataset(self.dataset)

  def trainer_code(self) -> Dict[str, str]:
    """The Trainer's code argument: {'module_file': path} or {'run_fn': name}."""
    reference = self.reference()
    if self.module_file == REFERENCE_MODULE:
      return {'module_file': reference.trainer_module_file}
    if self.module_file:
      return {'module_file': self.module_file}
    return {'run_fn': self.trainer_run_fn or reference.trainer_run_fn}

  def transform_code(self) -> Optional[Dict[str, str]]:
    """Transform's code argument ({'module_file': path} or {'preprocessing_fn':
    name}), or None for a dataset without Transform."""
    reference = self.reference()
    if not reference.uses_transform:
      return None
    if self.transform_module_file == REFERENCE_MODULE:
      return {'module_file': reference.transform_module_file}
    if self.transform_module_file:
      return {'module_file': self.transform_module_file}
    return {'preprocessing_fn': self.preprocessing_fn or reference.preprocessing_fn}

  def metadata_config(self) -> MetadataConfig:
    """The configured store, or SQLite at `<pipeline_root>/metadata.sqlite`."""
    if self.metadata is not None:
      return self.metadata
    return MetadataConfig(sqlite_path=os.path.join(self.pipeline_root, 'metadata.sqlite'))

  def vog_settings(self) -> VogSettings:
    """The VarianceOfGradients settings of this config, from its VoG setting fields.

    A text value is read in its setting's text form (vog_stage='120,240,360',
    vog_splits='eval,train', an empty label_key: none); ValueError names the field for
    text that cannot be read. The values themselves are checked by the component, which
    refuses a bad one by name.
    """
    values: Dict[str, Any] = {}
    for setting in declared():
      if setting.config_field is None:
        continue
      value = getattr(self, setting.config_field)
      values[setting.name] = (setting.form.parse(value, setting.config_field)
                              if isinstance(value, str) else value)
    return VogSettings(**values)

  def trainer_custom_config(self) -> Dict[str, object]:
    return {'epochs': self.epochs, 'batch_size': self.batch_size,
            'learning_rate': self.learning_rate, 'max_checkpoints': self.max_checkpoints,
            'seed': self.seed}

  def auto_policy_rules(self) -> Dict[str, float]:
    """`auto_policy` as the dict HumanReviewGate takes."""
    return {name: float(value) for name, value in self.auto_policy}

  @classmethod
  def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> 'PipelineConfig':
    """Builds a config from VOG_AUDIT_* variables.

    VOG_AUDIT_HOME (required) holds `data/`, `pipeline_root/` and `serving_model/`
    unless VOG_AUDIT_DATA_ROOT, VOG_AUDIT_PIPELINE_ROOT or VOG_AUDIT_SERVING_DIR say
    otherwise. VOG_AUDIT_MYSQL_HOST switches ML Metadata to MySQL, with
    VOG_AUDIT_MYSQL_PORT, VOG_AUDIT_MYSQL_DATABASE, VOG_AUDIT_MYSQL_USER and the
    password in VOG_AUDIT_MYSQL_PASSWORD. VOG_AUDIT_BEAM_ARGS (space separated),
    VOG_AUDIT_VOG_BEAM_ARGS (space separated, each `--name=value`; added for the
    VarianceOfGradients step alone, see `vog_beam_pipeline_args`) and VOG_AUDIT_EPOCHS
    override the defaults, and so does VOG_AUDIT_<FIELD> for the field of each VoG
    setting (VOG_AUDIT_INSPECTION_BUDGET: how many examples VoG flags for review;
    VOG_AUDIT_VOG_STAGE=120,240,360; VOG_AUDIT_VOG_SPLITS=eval,train; ...), read in the
    setting's text form (ValueError naming the variable for text that cannot be read;
    an empty variable is unset). The review gate: VOG_AUDIT_REVIEW_BACKEND
    (auto, local or slack), VOG_AUDIT_REVIEW_APPROVERS (comma separated),
    VOG_AUDIT_REVIEW_TIMEOUT (seconds) and VOG_AUDIT_SLACK_CHANNEL. VOG_AUDIT_DATASET
    picks the reference pipeline (digits, tabular or text; default digits).
    """
    environ = os.environ if environ is None else environ
    home = environ.get('VOG_AUDIT_HOME')
    paths = {'data_root': ('VOG_AUDIT_DATA_ROOT', 'data'),
             'pipeline_root': ('VOG_AUDIT_PIPELINE_ROOT', 'pipeline_root'),
             'serving_model_dir': ('VOG_AUDIT_SERVING_DIR', 'serving_model')}
    kwargs: Dict[str, object] = {}
    for field, (variable, sub) in paths.items():
      value = environ.get(variable) or (os.path.join(home, sub) if home else None)
      if not value:
        raise ValueError(f'{field} is not configured; set VOG_AUDIT_HOME (or {variable})')
      kwargs[field] = value
    if environ.get('VOG_AUDIT_MYSQL_HOST'):
      port = environ.get('VOG_AUDIT_MYSQL_PORT', '3306')
      if not port.isdigit():
        raise ValueError(f'VOG_AUDIT_MYSQL_PORT={port!r} is not a port number')
      kwargs['metadata'] = MetadataConfig(
          mysql_host=environ['VOG_AUDIT_MYSQL_HOST'], mysql_port=int(port),
          mysql_database=environ.get('VOG_AUDIT_MYSQL_DATABASE'),
          mysql_user=environ.get('VOG_AUDIT_MYSQL_USER'))
    if environ.get('VOG_AUDIT_BEAM_ARGS'):
      kwargs['beam_pipeline_args'] = tuple(environ['VOG_AUDIT_BEAM_ARGS'].split())
    if environ.get('VOG_AUDIT_VOG_BEAM_ARGS'):
      kwargs['vog_beam_pipeline_args'] = beam_args_lib.checked(
          environ['VOG_AUDIT_VOG_BEAM_ARGS'].split(), 'VOG_AUDIT_VOG_BEAM_ARGS')
    for setting in declared():
      if setting.env_variable and environ.get(setting.env_variable):
        kwargs[setting.config_field] = setting.form.parse(environ[setting.env_variable],
                                                          setting.env_variable)
    for field, name, what in (('epochs', 'VOG_AUDIT_EPOCHS', ''),
                              ('review_quorum', 'VOG_AUDIT_REVIEW_QUORUM', ' of approvers')):
      if environ.get(name):
        value = environ[name]
        if not value.isdigit():
          raise ValueError(f'{name}={value!r} is not a whole number{what}')
        kwargs[field] = int(value)
    if environ.get('VOG_AUDIT_REVIEW_BACKEND'):
      kwargs['review_backend'] = environ['VOG_AUDIT_REVIEW_BACKEND']
    if environ.get('VOG_AUDIT_REVIEW_APPROVERS'):
      kwargs['review_approvers'] = tuple(
          a.strip() for a in environ['VOG_AUDIT_REVIEW_APPROVERS'].split(',') if a.strip())
    if environ.get('VOG_AUDIT_REVIEW_TIMEOUT'):
      timeout = environ['VOG_AUDIT_REVIEW_TIMEOUT']
      try:
        kwargs['review_timeout_seconds'] = float(timeout)
      except ValueError:
        raise ValueError(f'VOG_AUDIT_REVIEW_TIMEOUT={timeout!r} is not a number of '
                         'seconds') from None
    if environ.get('VOG_AUDIT_SLACK_CHANNEL'):
      kwargs['slack_channel'] = environ['VOG_AUDIT_SLACK_CHANNEL']
    if environ.get('VOG_AUDIT_DATASET'):
      dataset = environ['VOG_AUDIT_DATASET']
      if dataset not in reference_datasets.DATASETS:
        raise ValueError(f'VOG_AUDIT_DATASET={dataset!r} is not a reference data set; '
                         f'choose one of {", ".join(reference_datasets.DATASETS)}')
      kwargs['dataset'] = dataset
    if environ.get('VOG_AUDIT_PIPELINE_NAME'):
      kwargs['pipeline_name'] = environ['VOG_AUDIT_PIPELINE_NAME']
    return cls(**kwargs)

  def beam_args(self) -> List[str]:
    return list(self.beam_pipeline_args)

  def vog_beam_args(self) -> List[str]:
    """The arguments VarianceOfGradients gets on top of `beam_args()`; empty: none."""
    return list(self.vog_beam_pipeline_args)
