"""The project's declarations, whatever its task: every set of both YAML files resolves and
builds its model, every key has a value of its type, every hyperparameter is read somewhere in
project/, and the configuration reference is current. Nothing here names a key: a project
that grows is tested as it grows."""

import glob
import os
import re
import typing

import pytest
from project_support import HYPERPARAMETER_FILE, PROJECT_FILE, resolve

import project
from library import config
from library.config.reference import markdown_reference
from library.outputs import decided

SCHEMA = config.Schema(project.HYPERPARAMETERS, getattr(project, "RUN_OPTIONS", ()))


@pytest.mark.parametrize("name", list(config.load_sets(PROJECT_FILE)))
def test_every_set_of_project_yaml_resolves(name):
    assert resolve("--config_set", name).config_set == name


@pytest.mark.parametrize("name", list(config.load_sets(HYPERPARAMETER_FILE)))
def test_every_set_of_hyperparameters_yaml_resolves_and_builds(name, functions, sample):
    """On the sample's data (what the data decides included) and at its size."""
    params, _ = decided.prepare(
        functions.prepare_fn, resolve("--hyperparameter_set", name, **sample), checkpoint=""
    )
    model = functions.model_fn(params)
    assert model.built and model.count_params() > 0


def test_schema_defaults_have_their_declared_types():
    for field in SCHEMA.fields:
        assert config.plain(config.coerce(field, field.default, "schema")) == field.default
        container = typing.get_origin(field.type) or field.type
        assert isinstance(field.default, container), field.name
        if container in (list, dict):  # list[float], dict[str, float]: each item too
            items = field.default.values() if container is dict else field.default
            assert all(isinstance(v, typing.get_args(field.type)[-1]) for v in items), field.name


def test_every_hyperparameter_is_read_by_the_project():
    """A key nothing reads is a promise nothing keeps: each hyperparameter is read as
    params.KEY or params["KEY"] somewhere in project/."""
    sources = ""
    folder = os.path.dirname(project.__file__)
    for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as stream:
            sources += stream.read()
    unread = [
        field.name
        for field in project.HYPERPARAMETERS
        if not re.search(rf"params(\.{field.name}\b|\[\"{field.name}\"\])", sources)
    ]
    assert unread == [], f"hyperparameters read by nothing: {unread}"


def test_the_configuration_reference_is_current():
    path = os.path.join(os.path.dirname(PROJECT_FILE), "docs", "configuration.md")
    with open(path, encoding="utf-8") as stream:
        documented = stream.read()
    reference = markdown_reference(project.HYPERPARAMETERS, getattr(project, "RUN_OPTIONS", ()))
    assert reference in documented, (
        "docs/configuration.md's reference is stale: regenerate it with `make docs`"
    )
