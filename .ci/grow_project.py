#!/usr/bin/env python3
"""CI: a user grows project/ and the test suite still holds, and tests what they added.

Copies the scaffold (the files git knows, as they are in the working tree) into a temporary
folder and edits there, as "Where does my change go" tells a user to, only project/ and the
YAML files: a new encoder with a hyperparameter of its own, a new metric, and a new set that
uses both and picks the best checkpoint by that metric. Then, in the copy:

1. the project's test of the configuration reference fails, naming the make target that
   regenerates it (the new hyperparameter is not documented yet);
2. ``make docs``, ``make lint`` and the project's tests (``tests/project``, generic over any
   project, and ``project/tests``, the classifier's own) pass, with the layout rules; the
   library's tests run on projects of their own, which a grown project/ cannot touch;
3. the project's tests ran on the new encoder, the new metric and the new sets.

    .venv/bin/python .ci/grow_project.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENCODER = '''

def strided_cnn(images, params):
    """Strided convolutions instead of pooling, ``strided_width`` filters at first."""
    x = images
    for index, multiple in enumerate((1, 2), 1):
        x = conv_bn_relu(x, params.strided_width * multiple, params, strides=2)
        x = layers.Identity(name=f"block{index}")(x)
    return layers.GlobalAveragePooling2D()(x)
'''
FIELD = (
    '    Field("strided_width", int, 16, "encoder strided_cnn: filters of its first '
    'convolution", interval="[1, inf)"),\n'
)
METRIC = (
    '        "top2_accuracy": keras.metrics.SparseTopKCategoricalAccuracy(k=2, '
    'name="top2_accuracy"),\n'
)
HYPERPARAMETER_SET = """
# A user's new encoder, at half the default width.
strided:
  <<: *DIGITS
  encoder: strided_cnn
  strided_width: 8
"""
PROJECT_SET = """
# The new encoder on the demo's digits, its best checkpoint picked by the new metric.
strided:
  <<: *DEMO
  hyperparameter_set: strided
  best_metric: top2_accuracy
  best_mode: max
  model_dir: out/strided/checkpoints
  best_model_dir: out/strided/best
"""


def edit(path: str, old: str, new: str) -> None:
    """Replaces ``old`` (which must be there once) by ``new`` in ``path``."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    if text.count(old) != 1:
        sys.exit(f"grow_project: {path} no longer holds {old!r} once: update this script")
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(text.replace(old, new))


def append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(text)


def copy_scaffold(destination: str) -> None:
    """The files git knows (and new ones it does not ignore), times kept, and the project's
    environment linked: ``make`` finds .venv up to date."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = os.path.join(ROOT, name)
        if not os.path.isfile(source):  # deleted in the working tree
            continue
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)
    os.symlink(os.path.join(ROOT, ".venv"), os.path.join(destination, ".venv"))


def grow(clone: str) -> None:
    """What a user adds: an encoder and its hyperparameter, a metric, and a set of each."""
    project = os.path.join(clone, "project")
    append(os.path.join(project, "encoders.py"), ENCODER)
    declarations = os.path.join(project, "hyperparameters.py")
    edit(declarations, 'ENCODERS = ("small_cnn", "resnet", "hub")', 'ENCODERS = ("small_cnn", "resnet", "hub", "strided_cnn")')  # fmt: skip
    edit(declarations, 'METRICS = ("accuracy",)', 'METRICS = ("accuracy", "top2_accuracy")')
    edit(declarations, "HYPERPARAMETERS = (\n", "HYPERPARAMETERS = (\n" + FIELD)
    edit(
        os.path.join(project, "model.py"),
        '    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}',
        '    return {\n        "accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy"),\n'
        + METRIC
        + "    }",
    )
    append(os.path.join(clone, "hyperparameters.yaml"), HYPERPARAMETER_SET)
    append(os.path.join(clone, "project.yaml"), PROJECT_SET)


def run(command: list[str], clone: str, **env: str) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(command)}", flush=True)
    return subprocess.run(
        command, cwd=clone, capture_output=True, text=True, env={**os.environ, **env}
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="grown-") as clone:
        copy_scaffold(clone)
        grow(clone)
        stale = run(
            [".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/project/test_declarations.py::test_the_configuration_reference_is_current"],
            clone,
        )  # fmt: skip
        if stale.returncode == 0 or "make docs" not in stale.stdout:
            print(stale.stdout[-3000:])
            sys.exit("grow_project: the stale configuration reference was not reported")
        print("the stale reference is reported, naming `make docs`")
        # The library's tests run on projects of their own (tests/test_layout.py holds it):
        # what a grown project/ can break is the lint and the project's tests.
        tests = [".venv/bin/python", "-m", "pytest", "tests/project", "project", "tests/test_layout.py"]  # fmt: skip
        for command in (["make", "docs"], ["make", "lint"], tests):
            result = run(command, clone, PYTEST_ADDOPTS="-rA -p no:cacheprovider")
            if result.returncode:
                print(result.stdout[-6000:], result.stderr[-3000:])
                sys.exit(f"grow_project: `{' '.join(command)}` failed in the grown copy")
        passed = [line for line in result.stdout.splitlines() if line.startswith("PASSED ")]
        expected = [
            "test_every_encoder_and_head_trains_a_step[strided_cnn-classifier]",
            "test_every_encoder_and_head_trains_a_step[strided_cnn-gated_classifier]",
            "test_every_metric_best_metric_may_name_is_measured[top2_accuracy]",
            "test_every_set_of_project_yaml_resolves[strided]",
            "test_every_set_of_hyperparameters_yaml_resolves_and_builds[strided]",
        ]
        missing = [name for name in expected if not any(name in line for line in passed)]
        if missing:
            sys.exit(f"grow_project: the project's tests did not exercise: {', '.join(missing)}")
        summary = result.stdout.strip().splitlines()[-1]
        print(f"the project's tests in the grown copy: {summary}")
        print("exercised: " + ", ".join(expected))
    return 0


if __name__ == "__main__":
    sys.exit(main())
