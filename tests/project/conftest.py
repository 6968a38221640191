"""The project's tests, written against the contract alone (``library/contract.py``): they
read what ``project/`` declares and run what it wires, whatever the task. Their data is the
project's own sample (its ``sample_fn``); tests of a project's particular parts live beside it
(``project/tests/``) and go when it goes."""

import pytest
from project_support import resolve

import project
from library.contract import project_functions


@pytest.fixture(scope="session")
def functions():
    return project_functions(project)


@pytest.fixture(scope="session")
def sample(functions, tmp_path_factory) -> dict:
    """The keys that point a run at the project's sample data (written once per session)."""
    assert functions.sample_fn is not None, (
        "project/__init__.py wires no sample_fn: the project's tests train, evaluate, export "
        "and predict on the few examples it writes (library/contract.py)"
    )
    folder = str(tmp_path_factory.mktemp("sample"))
    return dict(functions.sample_fn(folder, resolve()))
