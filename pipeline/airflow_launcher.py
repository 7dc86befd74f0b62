"""The launcher of the Airflow DAG's tasks: each Beam component gets its own Beam arguments.

TFX 1.16's AirflowDagRunner hands every task the pipeline's `beam_pipeline_args` and its
InProcessComponentLauncher passes exactly those to the executor, so arguments a component was
given with `with_beam_pipeline_args` (the config's `vog_beam_pipeline_args`) would be dropped
under Airflow. LocalDagRunner and Kubeflow read them from the component's executor spec, where
`tfx.dsl.Pipeline` has put the pipeline's arguments in front of the component's own. This
launcher does what they do, so a task runs with the same arguments under every runner.
"""

from typing import Any, List, Sequence

from tfx.dsl.components.base import executor_spec
from tfx.orchestration.launcher import in_process_component_launcher


def component_beam_args(component: Any, pipeline_args: Sequence[Any]) -> List[Any]:
  """The Beam arguments `component` runs with: the pipeline's, then its own.

  A Beam component's executor spec already holds both once the component is in a
  `tfx.dsl.Pipeline` with arguments; when it does not start with `pipeline_args` (a
  component added to no such pipeline) they are put in front. Other components get
  `pipeline_args` unchanged (TFX hands them over as extra flags).
  """
  pipeline_args = list(pipeline_args or [])
  spec = getattr(component, 'executor_spec', None)
  if not isinstance(spec, executor_spec.BeamExecutorSpec):
    return pipeline_args
  own = list(spec.beam_pipeline_args)
  # `is` first: a TFX placeholder's `==` builds a predicate instead of comparing.
  if len(own) >= len(pipeline_args) and all(
      mine is given or (isinstance(mine, str) and isinstance(given, str) and mine == given)
      for mine, given in zip(own, pipeline_args)):
    return own
  return pipeline_args + own


class ComponentBeamArgsLauncher(in_process_component_launcher.InProcessComponentLauncher):
  """InProcessComponentLauncher whose executor gets `component_beam_args`.

  Launches what InProcessComponentLauncher launches (it is the only launcher of the
  DAG): the change is the Beam argument list of Beam components.
  """

  def __init__(self, component, pipeline_info, driver_args, metadata_connection,
               beam_pipeline_args, additional_pipeline_args, component_config=None):
    super().__init__(
        component=component, pipeline_info=pipeline_info, driver_args=driver_args,
        metadata_connection=metadata_connection,
        beam_pipeline_args=component_beam_args(component, beam_pipeline_args),
        additional_pipeline_args=additional_pipeline_args,
        component_config=component_config)
