"""Project rules that hold across files: pins in step, library independent of project."""

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


def test_library_never_imports_project():
    for folder, _, files in os.walk(os.path.join(ROOT, "library")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as stream:
                tree = ast.parse(stream.read(), path)
            for node in ast.walk(tree):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules = [node.module]
                for module in modules:
                    assert module.split(".")[0] != "project", f"{path} imports {module}"
