"""Rules that hold across files: pins in step, the library independent of project/, and the
library's tests too (they run on projects of their own, so a user's project/ never breaks
them)."""

import ast
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as stream:
        return stream.read()


def test_environment_yaml_pins_the_same_packages_as_requirements():
    requirements = {
        line.strip()
        for name in ("requirements.txt", "requirements-examples.txt")
        for line in read(name).splitlines()
        if line.strip() and not line.startswith("#")
    }
    environment = yaml.safe_load(read("environment.yaml"))
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert set(pip_section) == requirements
    assert "python=3.11" in environment["dependencies"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.*]*", r) for r in requirements)


def imported_modules(folder):
    """``(path, module)`` of every import in the Python files below ``folder``."""
    for place, _, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(place, name)
            with open(path, encoding="utf-8") as stream:
                tree = ast.parse(stream.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    yield from ((path, alias.name) for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    yield path, node.module


def test_library_never_imports_project():
    for path, module in imported_modules("library"):
        assert module.split(".")[0] != "project", f"{path} imports {module}"


def test_the_library_tests_never_import_project():
    for folder in ("tests/library", "tests/projects", "tests/examples"):
        for path, module in imported_modules(folder):
            assert module.split(".")[0] not in ("project", "run"), f"{path} imports {module}"
    support = read(os.path.join("tests", "support.py"))
    assert "import project" not in support and "from project " not in support


def test_readme_quick_start_uses_the_project_venv():
    quick_start = read("README.md").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/python run.py" in quick_start
