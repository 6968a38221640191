#!/usr/bin/env python3
"""CI: another task takes project/'s place, and the project's tests run on it.

For each task example named (default: every example that is a project package), copies the
scaffold into a temporary folder, replaces ``project/`` by the example's package and the root
``project.yaml`` and ``hyperparameters.yaml`` by its own, as a user starting from that example
does, and nothing else; regenerates the configuration reference (``make docs``); then runs
``make lint`` and the project's tests (``tests/project``, generic over any project) with the
layout rules. They must pass and must have trained, exported and predicted that task's model.

    .venv/bin/python .ci/swap_project.py [regression text_classifier ...]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from grow_project import ROOT, copy_scaffold, run

EXAMPLES = ("regression", "digit_boxes", "segmentation", "text_classifier", "gan", "distillation")


def swap(clone: str, example: str) -> None:
    """``project/`` and the YAML files replaced by ``examples/<example>``'s."""
    package = os.path.join(clone, "examples", example)
    shutil.rmtree(os.path.join(clone, "project"))
    # The journey (__main__.py) and the entry of its own (run.py) are the example's, not the
    # project's.
    ignored = shutil.ignore_patterns("*.yaml", "__pycache__", "__main__.py", "run.py")
    shutil.copytree(package, os.path.join(clone, "project"), ignore=ignored)
    for name in ("project.yaml", "hyperparameters.yaml"):
        shutil.copy2(os.path.join(package, name), os.path.join(clone, name))


def check(example: str) -> str:
    with tempfile.TemporaryDirectory(prefix=f"swapped-{example}-") as clone:
        copy_scaffold(clone)
        swap(clone, example)
        tests = [".venv/bin/python", "-m", "pytest", "tests/project", "tests/test_layout.py"]
        for command in (["make", "docs"], ["make", "lint"], tests):
            result = run(command, clone, PYTEST_ADDOPTS="-rA -p no:cacheprovider")
            if result.returncode:
                print(result.stdout[-6000:], result.stderr[-3000:])
                sys.exit(f"swap_project: `{' '.join(command)}` failed with {example} as project/")
        passed = [line for line in result.stdout.splitlines() if line.startswith("PASSED ")]
        ran = ("test_the_project_trains_and_evaluates", "test_the_export_reloads_and_predict")
        missing = [name for name in ran if not any(name in line for line in passed)]
        if missing:
            sys.exit(f"swap_project: with {example}, these did not pass: {', '.join(missing)}")
        return result.stdout.strip().splitlines()[-1]


def main(examples: list[str]) -> int:
    for example in examples or EXAMPLES:
        if not os.path.isdir(os.path.join(ROOT, "examples", example)):
            sys.exit(f"swap_project: no examples/{example}")
        print(f"{example} as project/: {check(example)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
