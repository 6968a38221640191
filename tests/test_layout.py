"""Rules that hold across files: pins in step, the library independent of project/, and the
library's tests too (they run on projects of their own, so a user's project/ never breaks
them)."""

import ast
import os
import re
import sys

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


def test_every_arrow_of_the_library_points_down():
    """The layers tools/layers.py declares: no package imports one above its own."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import layers

    found = layers.imports()
    assert set(found) | {"base"} <= set(layers.RANK), "a package of library/ in no layer"
    assert layers.arrows_up(found) == []


def test_library_never_imports_project():
    for path, module in imported_modules("library"):
        assert module.split(".")[0] != "project", f"{path} imports {module}"


def core_files():
    """The task-neutral core: library/ without its image-classification kit."""
    for place, _, files in os.walk(os.path.join(ROOT, "library")):
        if os.path.relpath(place, ROOT).split(os.sep)[:2] == ["library", "vision"]:
            continue
        yield from (os.path.join(place, f) for f in files if f.endswith(".py"))


def test_the_core_imports_no_kit_module():
    kit = os.path.join(ROOT, "library", "vision")
    for path, module in imported_modules("library"):
        if path.startswith(kit):
            continue
        assert not module.startswith("library.vision"), f"{path} imports {module}"


def messages(path):
    """The prose of a core module: every string with a space in it, and the literal parts
    of f-strings (docstrings aside), with their lines."""
    with open(path, encoding="utf-8") as stream:
        tree = ast.parse(stream.read(), path)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [p.value for p in node.values if isinstance(p, ast.Constant)]
            yield node.lineno, "".join(parts)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and " " in node.value
        ):
            yield node.lineno, node.value


def test_the_core_names_no_feature_class_or_project_hyperparameter():
    """The core assumes nothing about the task: no image or label feature, no class, and its
    messages name no hyperparameter of a project (the shipped one's or the test projects')."""
    from projects import classifier, regression
    from projects import text as text_project

    from library.config import MODES, RUN_OPTIONS
    from project import HYPERPARAMETERS

    # The library's own words: its keys, its modes and their parts (export_encoder names an
    # encoder of its own).
    names = [f.name for f in RUN_OPTIONS] + list(MODES)
    library_keys = {*names, *(part for name in names for part in name.split("_"))}
    project_keys = {
        f.name
        for fields in (
            HYPERPARAMETERS,
            classifier.HYPERPARAMETERS,
            regression.HYPERPARAMETERS,
            text_project.HYPERPARAMETERS,
        )
        for f in fields
    } - library_keys
    for path in core_files():
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), path)
        keys = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        named = {"image", "image_bytes", "filename", "label", "labels.txt", "class", "class_name"}
        assert not keys & named, path
        for line, text in messages(path):
            named = [k for k in project_keys if re.search(rf"\b{k}\b", text)]
            assert not named, f"{path}:{line} names {named} in {text!r}"


def test_the_library_tests_never_import_project():
    for folder in ("tests/library", "tests/projects", "tests/examples"):
        for path, module in imported_modules(folder):
            assert module.split(".")[0] not in ("project", "run"), f"{path} imports {module}"
    shared = [os.path.join(ROOT, "tests", name) for name in ("support.py", "conftest.py")]
    for path, module in imported_modules("tests"):
        if path in shared:
            assert module.split(".")[0] not in ("project", "run"), f"{path} imports {module}"


def test_readme_quick_start_uses_the_project_venv():
    quick_start = read("README.md").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/python run.py" in quick_start


def library_files():
    for place, _, files in os.walk(os.path.join(ROOT, "library")):
        yield from (os.path.join(place, f) for f in files if f.endswith(".py"))


def test_the_library_is_formatted_and_its_functions_are_short():
    """The formatter is on everywhere (no fmt: skip or off, no line past 100 columns), and
    no function's code (its docstring aside) is over 50 lines unless its docstring says why
    ("Longer than most")."""
    long = []
    for path in library_files():
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        where = os.path.relpath(path, ROOT)
        assert "fmt: skip" not in text and "fmt: off" not in text, where
        assert not [n for n, line in enumerate(text.splitlines(), 1) if len(line) > 100], where
        for node in ast.walk(ast.parse(text, path)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            docstring = ast.get_docstring(node) or ""
            first = node.body[1] if docstring and len(node.body) > 1 else node.body[0]
            if node.end_lineno - first.lineno + 1 > 50 and "Longer than most" not in docstring:
                long.append(f"{where}:{node.lineno} {node.name}")
    assert long == []


def test_the_public_api_is_what_projects_examples_and_docs_import():
    """``library/__init__.py`` names each public name twice, for the lazy import and for the
    type checker: both lists agree and each name resolves. The user's code (project/, the
    examples, the projects of the tests) imports from ``library`` or the kit
    (``library.vision``) alone; its tests (``project/tests``) may drive the parts they test."""
    import library

    tree = ast.parse(read("library/__init__.py"))
    checked = {
        alias.name: node.module
        for block in tree.body
        if isinstance(block, ast.If)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert checked == library._PUBLIC
    for name in library.__all__:
        assert getattr(library, name) is not None
    for folder in ("project", "examples", "tests/projects"):
        for path, module in imported_modules(folder):
            if module.startswith("library") and "project/tests/" not in path.replace(os.sep, "/"):
                top = ".".join(module.split(".")[:2])
                assert module == "library" or top == "library.vision", f"{path} imports {module}"
