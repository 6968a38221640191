"""What the project's tests share: the project's YAML files and its resolved configuration."""

import os

import project
from library import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECT_FILE = os.path.join(ROOT, "project.yaml")
HYPERPARAMETER_FILE = os.path.join(ROOT, "hyperparameters.yaml")


def resolve(*argv, **overrides):
    """The configuration run.py resolves from ``argv`` (the project's YAML files), with
    ``overrides`` applied."""
    params, _ = config.resolve(
        ["--project_file", PROJECT_FILE, *argv],
        project.HYPERPARAMETERS,
        metrics=getattr(project, "METRICS", ()),
        check=getattr(project, "check", None),
        run_options=getattr(project, "RUN_OPTIONS", ()),
    )
    return params.replace(**overrides)
