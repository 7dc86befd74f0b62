"""Compiles the audit pipeline to a Kubeflow Pipelines v2 spec (JSON).

    python -m kubeflow.compile --output kubeflow/build \
        --image us-docker.pkg.dev/PROJECT/vog-audit/pipeline:0.1.0 \
        --pipeline-root gs://BUCKET/vog-audit --data-root gs://BUCKET/digits \
        --serving-dir gs://BUCKET/serving --beam-arg=--runner=DataflowRunner \
        --vog-beam-arg=--machine_type=g2-standard-8 ...

Writes `<output>/vog_audit_pipeline.json` with TFX's KubeflowV2DagRunner. On the cluster
ML Metadata is the one Kubeflow provides, so the spec carries no connection config, and
the Trainer runs `pipeline.reference.trainer_module.run_fn` from the image (nothing to package).
See kubeflow/README.md for building the image and running the spec.
"""

import argparse
import os
import sys
from typing import Any, Dict, List, Optional

# TFX 1.16 and TFMA 0.47 expect Keras 2 (tf-keras); this must precede any TensorFlow import.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

OUTPUT_FILENAME = 'vog_audit_pipeline.json'
DEFAULT_IMAGE = 'vog-audit:0.1.0'
DEFAULT_BUCKET = 'gs://YOUR_BUCKET/vog-audit'


def _parser() -> argparse.ArgumentParser:
  # Defaults come from the objects that own them, so they cannot drift apart.
  from pipeline.config import PipelineConfig  # pylint: disable=g-import-not-at-top
  from pipeline.reference.reference_datasets import DATASETS  # pylint: disable=g-import-not-at-top
  config_defaults = PipelineConfig('', '', '')
  p = argparse.ArgumentParser(prog='python -m kubeflow.compile', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--output', required=True, help='folder for the pipeline spec JSON')
  p.add_argument('--image', default=DEFAULT_IMAGE,
                 help='pipeline image built from kubeflow/Dockerfile (default %(default)s)')
  p.add_argument('--pipeline-name', default='vog-audit')
  p.add_argument('--pipeline-root', default=f'{DEFAULT_BUCKET}/pipeline_root')
  p.add_argument('--data-root', default=f'{DEFAULT_BUCKET}/data',
                 help='folder with train/ and eval/ TFRecords')
  p.add_argument('--serving-dir', default=f'{DEFAULT_BUCKET}/serving_model')
  p.add_argument('--beam-arg', action='append', default=None, dest='beam_args',
                 help='a Beam pipeline argument, repeatable; e.g. '
                      '--beam-arg=--runner=DataflowRunner (default: DirectRunner, '
                      'multi-processing, in the component pod)')
  p.add_argument('--vog-beam-arg', action='append', default=[], dest='vog_beam_args',
                 help='a Beam pipeline argument of the VarianceOfGradients task alone, '
                      'repeatable, one --name=value each; added after the --beam-arg '
                      'ones, so a single-valued option given in both takes this value; '
                      'e.g. --vog-beam-arg=--machine_type=g2-standard-8')
  p.add_argument('--dataset', default=config_defaults.dataset, choices=DATASETS,
                 help='reference pipeline: digits, or tabular / text behind Transform')
  p.add_argument('--epochs', type=int, default=config_defaults.epochs)
  _add_vog_setting_flags(p)
  p.add_argument('--min-accuracy', type=float, default=config_defaults.min_accuracy)
  p.add_argument('--min-hard-accuracy', type=float, default=config_defaults.min_hard_accuracy)
  p.add_argument('--max-accuracy-drop', type=float, default=config_defaults.max_accuracy_drop)
  return p


def _add_vog_setting_flags(parser: argparse.ArgumentParser) -> None:
  """Adds a flag for each VoG setting that `kubeflow.compile` shows (settings.declared():
  `--` + its PipelineConfig field with dashes, e.g. --vog-stage, --inspection-budget).

  Each takes the setting's text form (or its words, e.g. --bucket-percentiles 50 90),
  lists its choices where the setting declares them, and is None when not given, so
  the setting keeps its default; `_vog_setting_fields` reads them.
  """
  from components.vog.settings import declared, to_text  # pylint: disable=g-import-not-at-top
  for setting in declared():
    if setting.kubeflow_flag is None:
      continue
    choices = setting.choices() if setting.choices else None
    default = '' if setting.default is None else f' (default {to_text(setting.default)})'
    parser.add_argument(
        setting.kubeflow_flag, dest=setting.config_field, default=None, choices=choices,
        nargs=len(setting.kubeflow_words) or None,
        metavar=setting.kubeflow_words or (None if choices else setting.form.metavar),
        help=f'{setting.help}{default}'.replace('%', '%%'))


def _vog_setting_fields(parser: argparse.ArgumentParser,
                        args: argparse.Namespace) -> Dict[str, Any]:
  """{PipelineConfig field: value} of the VoG setting flags given, each read in its
  setting's text form. Ends like argparse (exit 2, one line naming the flag) for text
  that cannot be read."""
  from components.vog.settings import declared  # pylint: disable=g-import-not-at-top
  fields = {}
  for setting in declared():
    if setting.kubeflow_flag is None or getattr(args, setting.config_field) is None:
      continue
    given = getattr(args, setting.config_field)
    text = ','.join(given) if setting.kubeflow_words else given
    try:
      fields[setting.config_field] = setting.form.parse(text, setting.kubeflow_flag)
    except ValueError as e:
      parser.error(str(e))
  return fields


def compile_pipeline(argv: Optional[List[str]] = None) -> str:
  """Parses `argv`, writes the spec and returns its path.

  Raises SystemExit with argparse's message for bad flags, and ValueError naming the
  setting for values the pipeline refuses.
  """
  parser = _parser()
  args = parser.parse_args(argv)
  vog_settings = _vog_setting_fields(parser, args)
  from components.vog import beam_args  # pylint: disable=g-import-not-at-top
  vog_beam_args = beam_args.checked(args.vog_beam_args, '--vog-beam-arg')
  # Imported after parsing so that `--help` and flag errors come back quickly.
  from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # pylint: disable=g-import-not-at-top

  from pipeline import audit_pipeline  # pylint: disable=g-import-not-at-top
  from pipeline.config import DEFAULT_BEAM_ARGS, PipelineConfig  # pylint: disable=g-import-not-at-top

  config = PipelineConfig(
      pipeline_name=args.pipeline_name,
      data_root=args.data_root,
      pipeline_root=args.pipeline_root,
      serving_model_dir=args.serving_dir,
      beam_pipeline_args=tuple(args.beam_args or DEFAULT_BEAM_ARGS),
      vog_beam_pipeline_args=vog_beam_args,
      module_file=None,
      dataset=args.dataset,
      transform_module_file=None,
      epochs=args.epochs,
      min_accuracy=args.min_accuracy,
      min_hard_accuracy=args.min_hard_accuracy,
      max_accuracy_drop=args.max_accuracy_drop,
      **vog_settings)
  os.makedirs(args.output, exist_ok=True)
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=args.image),
      output_dir=args.output,
      output_filename=OUTPUT_FILENAME)
  runner.run(audit_pipeline.create_pipeline(config), write_out=True)
  return os.path.join(args.output, OUTPUT_FILENAME)


def main(argv: Optional[List[str]] = None) -> int:
  path = compile_pipeline(argv)
  print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
