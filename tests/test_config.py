"""The strict YAML configuration: sets, anchors, overrides, errors, the saved copy."""

import os
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, run_script

from library import config

PROJECT_YAML = """\
default: &DEFAULT
  train_batch_size: 32
  train_epochs: 10
  model_dir: out/a
  hyperparameter_set: default
small:
  <<: *DEFAULT
  train_batch_size: 8
  hyperparameter_set: tuned
"""
HYPER_YAML = """\
default: &DEFAULT
  learning_rate: 1e-4
  dropout_rate: 0.5
tuned:
  <<: *DEFAULT
  dropout_rate: 0.25
"""


def write_config(tmp_path, project=PROJECT_YAML, hyper=HYPER_YAML):
    (tmp_path / "project.yaml").write_text(project)
    (tmp_path / "hyperparameters.yaml").write_text(hyper)
    return str(tmp_path / "project.yaml")


def resolve(tmp_path, *argv, **files):
    path = write_config(tmp_path, **files)
    params, _ = config.resolve(["--project_file", path, *argv])
    return params


def run_py(*argv, cwd=ROOT):
    return run_script("run.py", *argv, cwd=cwd)


def test_set_inherits_through_anchor_and_overrides_only_what_differs(tmp_path):
    params = resolve(tmp_path, "--config_set", "small")
    assert params.train_batch_size == 8
    assert params.train_epochs == 10.0
    assert params.model_dir == "out/a"
    assert params.hyperparameter_set == "tuned"
    assert params.dropout_rate == 0.25  # from the inheriting hyperparameter set
    assert params.learning_rate == pytest.approx(1e-4)  # inherited from the anchor


def test_exponent_without_dot_becomes_float(tmp_path):
    assert yaml.safe_load("x: 1e-4")["x"] == "1e-4"  # the PyYAML trap this guards against
    params = resolve(tmp_path)
    assert isinstance(params.learning_rate, float)
    assert params.learning_rate == pytest.approx(1e-4)


def test_command_line_overrides_float_int_bool_and_string(tmp_path):
    params = resolve(
        tmp_path,
        "--learning_rate", "0.0001",
        "--train_epochs", "3",
        "--keep_checkpoints", "7",
        "--xla",
        "--augment_flip", "false",
        "--model_dir=/tmp/elsewhere",
    )  # fmt: skip
    assert params.learning_rate == 0.0001 and isinstance(params.learning_rate, float)
    assert params.keep_checkpoints == 7 and isinstance(params.keep_checkpoints, int)
    assert params.train_epochs == 3.0
    assert params.xla is True
    assert params.augment_flip is False
    assert params.model_dir == "/tmp/elsewhere"


def test_command_line_can_choose_another_hyperparameter_set(tmp_path):
    params = resolve(tmp_path, "--hyperparameter_set", "tuned")
    assert params.dropout_rate == 0.25


def test_override_on_one_set_does_not_leak_into_another(tmp_path):
    path = write_config(tmp_path)
    first, _ = config.resolve(
        ["--project_file", path, "--config_set", "small", "--train_epochs", "99"]
    )
    second, _ = config.resolve(["--project_file", path, "--config_set", "default"])
    third, _ = config.resolve(["--project_file", path, "--config_set", "small"])
    assert first.train_epochs == 99.0
    assert second.train_epochs == 10.0
    assert third.train_epochs == 10.0


def test_params_are_frozen_and_replace_checks_types(tmp_path):
    params = resolve(tmp_path)
    with pytest.raises(TypeError):
        params.learning_rate = 1.0
    with pytest.raises(TypeError):
        params["learning_rate"] = 1.0
    changed = params.replace(learning_rate="0.5")
    assert changed.learning_rate == 0.5 and params.learning_rate == pytest.approx(1e-4)
    with pytest.raises(config.ConfigError, match="learning_rate must be float"):
        params.replace(learning_rate="fast")


BAD_CASES = {
    "unknown key in yaml": (
        PROJECT_YAML + "typo:\n  <<: *DEFAULT\n  train_batch_sise: 4\n",
        HYPER_YAML,
        ["--config_set", "typo"],
        ["train_batch_sise", "train_batch_size"],
    ),
    "hyperparameter in project file": (
        PROJECT_YAML + "misplaced:\n  <<: *DEFAULT\n  learning_rate: 0.1\n",
        HYPER_YAML,
        ["--config_set", "misplaced"],
        ["learning_rate", "hyperparameters.yaml"],
    ),
    "wrong type in yaml": (
        PROJECT_YAML + "bad:\n  <<: *DEFAULT\n  train_batch_size: many\n",
        HYPER_YAML,
        ["--config_set", "bad"],
        ["train_batch_size", "int", "many"],
    ),
    "bool is not an int": (
        PROJECT_YAML + "bad:\n  <<: *DEFAULT\n  train_batch_size: true\n",
        HYPER_YAML,
        ["--config_set", "bad"],
        ["train_batch_size", "int"],
    ),
    "unknown key on command line": (
        PROJECT_YAML,
        HYPER_YAML,
        ["--learnin_rate", "1"],
        ["--learnin_rate", "--learning_rate"],
    ),
    "wrong type on command line": (
        PROJECT_YAML,
        HYPER_YAML,
        ["--train_epochs", "ten"],
        ["train_epochs", "ten"],
    ),
    "bad bool on command line": (PROJECT_YAML, HYPER_YAML, ["--xla", "maybe"], ["xla", "maybe"]),
    "unknown choice": (PROJECT_YAML, HYPER_YAML, ["--best_mode", "up"], ["best_mode", "min, max"]),
    "unknown set": (
        PROJECT_YAML,
        HYPER_YAML,
        ["--config_set", "smal"],
        ["'smal'", "'small'", "project.yaml"],
    ),
    "unknown hyperparameter set": (
        PROJECT_YAML,
        HYPER_YAML,
        ["--hyperparameter_set", "nope"],
        ["'nope'", "hyperparameters.yaml"],
    ),
    "missing hyperparameter file": (
        PROJECT_YAML,
        HYPER_YAML,
        ["--hyperparameter_file", "gone.yaml"],
        ["gone.yaml", "not found"],
    ),
    "yaml syntax error": (
        "default:\n  train_epochs: 1\n   model_dir: x\n",
        HYPER_YAML,
        [],
        ["project.yaml:3", "not allowed"],
    ),
    "duplicate key": (
        "default:\n  train_epochs: 1\n  model_dir: x\n  train_epochs: 2\n",
        HYPER_YAML,
        [],
        ["project.yaml:4", "duplicate key 'train_epochs'"],
    ),
    "unsafe tag": (
        PROJECT_YAML,
        HYPER_YAML + "evil:\n  dropout_rate: !!python/object/apply:os.system ['echo pwned']\n",
        [],
        ["hyperparameters.yaml:8", "unsafe"],
    ),
    "set is not a mapping": ("default: 3\n", HYPER_YAML, [], ["project.yaml", "mapping"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_configuration_gives_one_line_and_exit_status_2(tmp_path, case):
    project, hyper, argv, expected = BAD_CASES[case]
    path = write_config(tmp_path, project, hyper)
    result = run_py("--project_file", path, "--print_config", *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "pwned" not in result.stdout
    for fragment in expected:
        assert fragment in lines[0]


def test_missing_project_file_names_it(tmp_path):
    result = run_py("--project_file", str(tmp_path / "nope.yaml"), "--print_config")
    assert result.returncode == 2
    assert "nope.yaml: file not found" in result.stderr


def test_print_config_and_help_answer_without_tensorflow(tmp_path):
    path = write_config(tmp_path)
    result = run_py("--project_file", path, "--config_set", "small", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["project"]["train_batch_size"] == 8
    assert printed["hyperparameters"]["learning_rate"] == pytest.approx(1e-4)
    help_text = run_py("--help").stdout
    assert (
        "--learning_rate" in help_text and "--xla" in help_text and "(default: 0.001)" in help_text
    )
    probe = "import sys, library.cli, library.config; print('tensorflow' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True
    )
    assert imported.stdout.strip() == "False"


def test_resolved_configuration_is_saved_into_model_dir_and_reloads(tmp_path):
    params = resolve(tmp_path, "--config_set", "small", "--learning_rate", "0.01")
    model_dir = str(tmp_path / "run")
    assert config.save_config(params, model_dir) == []
    saved_project = config.load_sets(os.path.join(model_dir, "project.yaml"))
    saved_hyper = config.load_sets(os.path.join(model_dir, "hyperparameters.yaml"))
    assert saved_project["small"]["train_batch_size"] == 8
    assert saved_hyper["tuned"]["learning_rate"] == 0.01
    assert not [n for n in os.listdir(model_dir) if ".tmp" in n]
    # The saved copy is itself a configuration that reproduces the run.
    again, _ = config.resolve(
        ["--project_file", os.path.join(model_dir, "project.yaml"), "--config_set", "small"]
    )
    assert dict(again) == dict(params)
    # Resuming with different values reports each difference.
    changed = params.replace(learning_rate=0.02, train_batch_size=16)
    differences = config.save_config(changed, model_dir)
    assert sorted(differences) == ["learning_rate: 0.01 -> 0.02", "train_batch_size: 8 -> 16"]


def test_shipped_sets_all_resolve():
    for name in config.load_sets(os.path.join(ROOT, "project.yaml")):
        params, _ = config.resolve(
            ["--project_file", os.path.join(ROOT, "project.yaml"), "--config_set", name]
        )
        assert params.config_set == name


def test_readme_configuration_reference_matches_schema():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        readme = stream.read()
    assert config.markdown_reference() in readme, (
        "README's configuration reference is stale: regenerate it with `python -m library.config README.md`"
    )


def test_schema_defaults_have_their_declared_types():
    for field in config.FIELDS:
        assert config.coerce(field.name, field.default, "schema") == field.default
        assert isinstance(field.default, field.type), field.name
