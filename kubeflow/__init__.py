"""Kubeflow Pipelines v2: compile the audit pipeline (`python -m kubeflow.compile`)."""
