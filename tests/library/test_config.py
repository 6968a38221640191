"""The strict YAML configuration: sets, anchors, overrides, errors, the saved copy."""

import glob
import os
import re
import subprocess
import sys
import typing

import pytest
import yaml
from support import ROOT, declarations, one_line, run_cli

from library import config

HYPERPARAMETERS = declarations.HYPERPARAMETERS

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


def resolve(tmp_path, *argv, fields=HYPERPARAMETERS, **files):
    path = write_config(tmp_path, **files)
    params, _ = config.resolve(["--project_file", path, *argv], fields)
    return params


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
        "--fine_tuning", "false",
        "--model_dir=/tmp/elsewhere",
    )  # fmt: skip
    assert params.learning_rate == 0.0001 and isinstance(params.learning_rate, float)
    assert params.keep_checkpoints == 7 and isinstance(params.keep_checkpoints, int)
    assert params.train_epochs == 3.0
    assert params.xla is True
    assert params.fine_tuning is False
    assert params.model_dir == "/tmp/elsewhere"


def test_command_line_can_choose_another_hyperparameter_set(tmp_path):
    params = resolve(tmp_path, "--hyperparameter_set", "tuned")
    assert params.dropout_rate == 0.25


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
    result = run_cli("--project_file", path, "--print_config", *argv)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert "pwned" not in result.stdout
    for fragment in expected:
        assert fragment in line


def test_missing_project_file_names_it(tmp_path):
    result = run_cli("--project_file", str(tmp_path / "nope.yaml"), "--print_config")
    assert result.returncode == 2
    assert "nope.yaml: file not found" in result.stderr


def test_print_config_and_help_answer(tmp_path):
    path = write_config(tmp_path)
    result = run_cli("--project_file", path, "--config_set", "small", "--print_config")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["project"]["train_batch_size"] == 8
    assert printed["hyperparameters"]["learning_rate"] == pytest.approx(1e-4)
    helped = run_cli("--help")
    assert helped.returncode == 0
    assert "--learning_rate" in helped.stdout and "--xla" in helped.stdout
    assert "(default: 0.003)" in helped.stdout  # the project's own default


# One process: each argv is refused by the command line, then whether TensorFlow was loaded.
BEFORE_TENSORFLOW = """
import io, json, sys, contextlib
sys.path[:0] = [{root!r}, {tests!r}]
from library.cli import main
from projects import classifier
answers = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        answers.append([main(argv, classifier), err.getvalue()])
loaded = [name for name in ("tensorflow", "optuna") if name in sys.modules]
print(json.dumps({{"answers": answers, "loaded": loaded}}))
"""


def test_configuration_errors_answer_before_tensorflow_loads(tmp_path):
    """Every check of the configuration (YAML, types, choices, cross-key rules, scale
    settings, sweeps, search spaces) answers without importing TensorFlow: in a fraction of a second."""
    import json

    path = write_config(tmp_path, PROJECT_YAML + "bad:\n  <<: *DEFAULT\n  train_epochs: x\n")
    cases = [
        ["--project_file", path, "--config_set", "bad"],
        ["--project_file", path, "--encoder", "con"],
        ["--project_file", path, "--encoder", "hub"],
        ["--project_file", path, "--profile_steps", "[4, 2]"],
        ["--project_file", path, "--distribution", "multi_worker"],  # TF_CONFIG below
        ["--project_file", path, "--sweep", "learnin_rate=1,2"],
        ["--project_file", path, "--mode", "search", "--search_space", "{learning_rate: log 0..1}"],
        ["--project_file", path, "--print_config"],
    ]
    code = BEFORE_TENSORFLOW.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CONFIG": '{"cluster": {}}'},
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert [status for status, _ in answer["answers"]] == [2, 2, 2, 2, 2, 2, 2, 0]
    assert all(len(err.strip().splitlines()) == 1 for _, err in answer["answers"][:-1])
    assert answer["loaded"] == []


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
        ["--project_file", os.path.join(model_dir, "project.yaml"), "--config_set", "small"],
        HYPERPARAMETERS,
    )
    assert dict(again) == dict(params)
    # A resume with different values reports each difference and records it as history:
    # the saved sets still say what started the run.
    saved_before = (tmp_path / "run" / "hyperparameters.yaml").read_text()
    changed = params.replace(learning_rate=0.02, train_batch_size=16)
    differences = config.save_config(changed, model_dir, resumed_at=40)
    assert sorted(differences) == ["learning_rate: 0.01 -> 0.02", "train_batch_size: 8 -> 16"]
    assert (tmp_path / "run" / "hyperparameters.yaml").read_text() == saved_before
    history = yaml.safe_load((tmp_path / "run" / config.CHANGES_FILE).read_text())
    assert history[0]["step"] == 40
    assert history[0]["changes"]["learning_rate"] == {"from": 0.01, "to": 0.02}
    # The same configuration again is no change; going back is one.
    assert config.save_config(changed, model_dir, resumed_at=60) == []
    assert config.save_config(params, model_dir, resumed_at=80) == [
        "train_batch_size: 16 -> 8",
        "learning_rate: 0.02 -> 0.01",
    ]
    assert [
        e["step"] for e in yaml.safe_load((tmp_path / "run" / config.CHANGES_FILE).read_text())
    ] == [40, 80]
    assert config.configuration_in_force(model_dir)["learning_rate"] == 0.01


def test_schema_defaults_have_their_declared_types():
    for field in config.Schema(HYPERPARAMETERS).fields:
        assert config.plain(config.coerce(field, field.default, "schema")) == field.default
        container = typing.get_origin(field.type) or field.type
        assert isinstance(field.default, container), field.name
        if container in (list, dict):  # list[float], dict[str, float]: each item too
            items = field.default.values() if container is dict else field.default
            assert all(isinstance(v, typing.get_args(field.type)[-1]) for v in items), field.name


def test_a_hyperparameter_declared_by_a_project_needs_no_library_edit(tmp_path):
    """Keys a project declares (an int with an interval, a list, a mapping) work from YAML and
    the command line, and stay as strict as the library's own."""
    fields = (
        *HYPERPARAMETERS,
        config.Field("head_width", int, 64, "units of a new head layer", interval="[1, inf)"),
        config.Field("widths", list[int], [8, 16], "a list-valued key"),
        config.Field("head_scales", dict[str, float], {}, "a mapping-valued key"),
    )
    hyper = HYPER_YAML + "wide:\n  <<: *DEFAULT\n  head_width: 256\n  widths: [4, 8, 12]\n"
    project = PROJECT_YAML + "wide:\n  <<: *DEFAULT\n  hyperparameter_set: wide\n"

    def resolved(*argv, hyper=hyper):
        return resolve(tmp_path, *argv, fields=fields, project=project, hyper=hyper)

    params = resolved("--config_set", "wide", "--head_scales", "{'^encoder/': 0.1}")
    assert params.head_width == 256 and params.widths == (4, 8, 12)
    assert dict(params.head_scales) == {"^encoder/": 0.1}
    params = resolved("--head_width", "32", "--widths", "[1, 2]")
    assert params.head_width == 32 and params.widths == (1, 2)
    assert dict(params.head_scales) == {}  # the declared default
    # Still strict: out of range, wrong item type, and a key nobody declared.
    for argv, fragment in (
        (["--head_width", "0"], "head_width must be in [1, inf), got 0"),
        (["--widths", "[1, x]"], "widths must be list[int]"),
        (["--head_scales", "{'a': fast}"], "head_scales must be dict[str, float]"),
        (["--head_widht", "3"], "did you mean --head_width?"),
    ):
        with pytest.raises(config.ConfigError) as refused:
            resolved(*argv)
        assert fragment in str(refused.value), argv
    typo = hyper + "typo:\n  <<: *DEFAULT\n  tail_width: 3\n"
    with pytest.raises(config.ConfigError, match="unknown key 'tail_width'"):
        resolved("--hyperparameter_set", "typo", hyper=typo)


def test_lists_and_mappings_are_frozen_and_saved_as_plain_yaml(tmp_path):
    fields = (
        config.Field("boundaries", list[float], [2, 4], "epochs", interval="[0, inf)"),
        config.Field("multipliers", dict[str, float], {"^a": 0.5}, "by regex"),
    )
    params = config.default_params(fields, model_dir=str(tmp_path))
    assert params.boundaries == (2.0, 4.0) and isinstance(params.boundaries[0], float)
    with pytest.raises(TypeError):
        params.multipliers["^b"] = 1.0
    with pytest.raises(
        config.ConfigError, match=r"boundaries must be in \[0, inf\), got \[1.0, -2.0\]"
    ):
        params.replace(boundaries="[1, -2]")
    changed = params.replace(multipliers="{'^b': 2}")
    assert dict(changed.multipliers) == {"^b": 2.0}
    config.save_config(changed, str(tmp_path))
    saved = config.load_sets(str(tmp_path / "hyperparameters.yaml"))["default"]
    assert saved["boundaries"] == [2.0, 4.0] and saved["multipliers"] == {"^b": 2.0}


def test_renamed_key_says_its_new_name(tmp_path):
    result = run_cli("--model", "best", "--print_config")
    assert result.returncode == 2 and "--model is now called --checkpoint" in result.stderr
    path = write_config(tmp_path, PROJECT_YAML + "old:\n  <<: *DEFAULT\n  model: best\n")
    result = run_cli("--project_file", path, "--config_set", "old", "--print_config")
    assert result.returncode == 2 and "'model' is now called 'checkpoint'" in result.stderr


def test_every_run_option_is_read_by_the_library():
    """A key nothing reads is a promise nothing keeps: each run option is read as params.KEY
    or params["KEY"] somewhere in library/ (values["KEY"] in the config itself), or by the
    input_fn of a project (the input pipeline's knobs: the test projects read them)."""
    sources = ""
    places = [os.path.join(ROOT, "library"), os.path.join(ROOT, "tests", "projects")]
    for path in (p for place in places for p in glob.glob(f"{place}/**/*.py", recursive=True)):
        with open(path, encoding="utf-8") as stream:
            sources += stream.read()
    unread = [
        field.name
        for field in config.RUN_OPTIONS
        if not re.search(rf"(params|values)(\.{field.name}\b|\[\"{field.name}\"\])", sources)
    ]
    assert unread == [], f"run options read by nothing: {unread}"
