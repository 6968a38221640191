"""The configuration a run trains with, kept in its ``model_dir``: the resolved sets at its
start, and each later change with the step from which it applies."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import yaml

from library.base.files import atomic_write_text, exists, read_text, remove
from library.config.params import Params
from library.config.schema import HYPERPARAMETERS, PROJECT, ConfigError
from library.config.sets import dump_yaml, load_sets


def to_yaml(params: Params) -> str:
    """The resolved configuration as YAML, project and hyperparameter sections."""
    data = {
        PROJECT: params.section(PROJECT),
        HYPERPARAMETERS: params.section(HYPERPARAMETERS),
    }
    return dump_yaml(data)


CHANGES_FILE = "config_changes.yaml"


def save_config(params: Params, model_dir: str, resumed_at: int | None = None) -> list[str]:
    """Records in ``model_dir`` the configuration that trains it: history, not a snapshot.

    At a fresh start, writes the resolved sets as ``project.yaml`` and ``hyperparameters.yaml``
    (one set each, named like the run's), so ``run.py --project_file model_dir/project.yaml
    --config_set NAME`` reproduces the run as it started. At a resume (``resumed_at``: the
    step it resumes from) those files stay as they are; each difference from the
    configuration in force (the files and the changes recorded so far) is appended to
    ``config_changes.yaml`` with the step from which it applies.

    Returns:
        One line per key that differs from the configuration in force.
    """
    project = dict(params.section(PROJECT), hyperparameter_file="hyperparameters.yaml")
    project["hyperparameter_set"] = params.hyperparameter_set
    files = {
        "project.yaml": {params.config_set: project},
        "hyperparameters.yaml": {params.hyperparameter_set: params.section(HYPERPARAMETERS)},
    }
    paths = {name: os.path.join(model_dir, name) for name in files}
    if resumed_at is None or not all(exists(p) for p in paths.values()):
        for name, data in files.items():
            atomic_write_text(paths[name], dump_yaml(data))
        changes_path = os.path.join(model_dir, CHANGES_FILE)
        if exists(changes_path):  # the history of an earlier run in this folder
            remove(changes_path)
        return []
    in_force = configuration_in_force(model_dir)
    current = {k: v for data in files.values() for k, v in next(iter(data.values())).items()}
    changes = {
        key: [in_force[key], value]
        for key, value in current.items()
        if key in in_force and in_force[key] != value and key != "hyperparameter_file"
    }
    if changes:
        history = _read_changes(model_dir)
        history.append(
            {
                "step": resumed_at,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv),
                "changes": {k: {"from": old, "to": new} for k, (old, new) in changes.items()},
            }
        )
        atomic_write_text(os.path.join(model_dir, CHANGES_FILE), dump_yaml(history))
    return [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]


def configuration_in_force(model_dir: str) -> dict[str, Any]:
    """The saved sets of ``model_dir`` with the recorded changes applied, in order."""
    values: dict[str, Any] = {}
    for name in ("project.yaml", "hyperparameters.yaml"):
        try:
            values.update(next(iter(load_sets(os.path.join(model_dir, name)).values()), {}))
        except ConfigError:
            continue
    for entry in _read_changes(model_dir):
        for key, change in entry.get("changes", {}).items():
            values[key] = change.get("to")
    return values


def _read_changes(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, CHANGES_FILE)
    if not exists(path):
        return []
    history = yaml.safe_load(read_text(path))
    return history if isinstance(history, list) else []
