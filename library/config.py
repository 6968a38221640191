"""Strict YAML configuration: named sets, anchors, command-line overrides, frozen params.

Two files hold the configuration, each as named sets (top-level keys):

* ``project.yaml``: run options (data, durations, folders, checkpointing).
* ``hyperparameters.yaml``: model hyperparameters.

A set inherits from another through a YAML anchor (``<<: *DEFAULT``) and overrides
only what differs. ``--config_set NAME`` picks the project set; its
``hyperparameter_set`` picks the hyperparameter set. Any key can then be overridden on
the command line (``--learning_rate 0.0001``).

Every key is declared once, in ``FIELDS`` below, with its type, default and help; an
unknown key or a wrong type is an error. To add a hyperparameter for your model, add
one line to ``FIELDS`` and read it as ``params.my_key`` in ``project/``.

This module imports no TensorFlow, so that ``--help`` and configuration errors answer
instantly.
"""

from __future__ import annotations

import argparse
import difflib
import io
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from library.files import atomic_write_text

PROJECT = "project"
HYPERPARAMETERS = "hyperparameters"
MODES = ("train_and_evaluate", "train", "evaluate", "predict", "export")


class ConfigError(Exception):
    """A configuration problem, reported as one line and exit status 2."""


@dataclass(frozen=True)
class Field:
    name: str
    type: type
    default: Any
    help: str
    file: str = PROJECT
    choices: tuple = ()


# fmt: off
FIELDS: tuple[Field, ...] = (
    # -- project.yaml: data -------------------------------------------------------
    Field("train_files", str, "dataset/train/train-*.tfrecord", "glob of training TFRecord shards"),
    Field("eval_files", str, "dataset/test/test-*.tfrecord", "glob of evaluation TFRecord shards"),
    Field("predict_files", str, "", "image files or a glob for --mode predict"),
    Field("labels_file", str, "", "class names, one per line; empty: labels.txt beside train_files"),
    Field("train_batch_size", int, 32, "examples per training step"),
    Field("eval_batch_size", int, 64, "examples per evaluation step"),
    Field("shuffle_buffer", int, 1000, "records in the shuffle buffer (training)"),
    Field("interleave_cycle_length", int, 4, "shards read at once"),
    Field("skip_corrupt_records", bool, False, "skip the damaged rest of a corrupt shard instead of stopping"),
    Field("image_key", str, "image/encoded", "feature key of the encoded image"),
    Field("label_key", str, "image/class/label", "feature key of the int64 label"),
    # -- project.yaml: durations (epochs, or steps when > 0) ----------------------
    Field("train_epochs", float, 10.0, "training length in epochs"),
    Field("train_steps", int, 0, "training length in steps; overrides train_epochs when > 0"),
    Field("epochs_between_evals", float, 1.0, "evaluate every this many epochs"),
    Field("steps_between_evals", int, 0, "evaluate every this many steps; overrides epochs_between_evals when > 0"),
    Field("eval_steps", int, 0, "batches per evaluation; 0: the whole eval set"),
    Field("steps_per_execution", int, 1, "training steps run inside one tf.function call"),
    Field("log_steps", int, 50, "log train loss and throughput every this many steps"),
    # -- project.yaml: checkpoints and outputs ------------------------------------
    Field("hyperparameter_file", str, "hyperparameters.yaml", "hyperparameter file, relative to the project file"),
    Field("hyperparameter_set", str, "default", "set in hyperparameter_file"),
    Field("model", str, "latest", "checkpoint to evaluate/predict/export: latest, best or a path"),
    Field("model_dir", str, "out/current/checkpoints", "checkpoints, summaries, metrics.jsonl, plots"),
    Field("best_model_dir", str, "out/current/best", "best checkpoint, best.json and its SavedModel"),
    Field("export_dir", str, "", "SavedModel destination for --mode export; empty: <model_dir>/export"),
    Field("keep_checkpoints", int, 5, "checkpoints kept in model_dir"),
    Field("save_checkpoints_steps", int, 0, "save every this many steps; 0: at each evaluation"),
    Field("checkpoint_input_pipeline", bool, False, "save the input pipeline's position (shuffle buffer included) in checkpoints, so a resumed run continues the same data order; larger checkpoints"),
    Field("best_metric", str, "loss", "evaluation metric that picks the best checkpoint"),
    Field("best_mode", str, "min", "whether a lower or higher best_metric is better", choices=("min", "max")),
    Field("max_nonfinite_steps", int, 5, "stop after this many consecutive NaN/Inf steps"),
    Field("random_seed", int, 42, "seed for weights, shuffling and augmentation"),
    Field("xla", bool, False, "compile the train step with XLA"),
    Field("progress", str, "auto", "progress bar: auto (on a terminal), bar or log", choices=("auto", "bar", "log")),
    # -- hyperparameters.yaml -----------------------------------------------------
    Field("encoder", str, "small_cnn", "encoder function in project/encoders.py", HYPERPARAMETERS),
    Field("head", str, "classifier", "head function in project/heads.py", HYPERPARAMETERS),
    Field("image_size", int, 224, "side of the square network input", HYPERPARAMETERS),
    Field("num_classes", int, 0, "classes; 0: count the lines of the labels file", HYPERPARAMETERS),
    Field("augment_flip", bool, True, "random horizontal flips in training", HYPERPARAMETERS),
    Field("train_crop_min_area", float, 0.25, "smallest random crop, as a fraction of the image area", HYPERPARAMETERS),
    Field("eval_crop_fraction", float, 0.875, "central crop side, as a fraction of the shorter edge", HYPERPARAMETERS),
    Field("learning_rate", float, 1e-3, "peak learning rate", HYPERPARAMETERS),
    Field("lr_schedule", str, "constant", "learning-rate schedule", HYPERPARAMETERS, ("constant", "cosine")),
    Field("warmup_epochs", float, 0.0, "linear warm-up length in epochs", HYPERPARAMETERS),
    Field("dropout_rate", float, 0.5, "dropout before the classifier", HYPERPARAMETERS),
    Field("batch_norm_momentum", float, 0.99, "batch-norm moving-average momentum; lower for short runs", HYPERPARAMETERS),
    Field("l2_regularization", float, 1e-8, "L2 weight decay added to the loss", HYPERPARAMETERS),
    Field("xentropy_label_smoothing", float, 0.0, "label smoothing of the cross-entropy", HYPERPARAMETERS),
    Field("adam_beta1", float, 0.9, "Adam beta_1", HYPERPARAMETERS),
    Field("adam_beta2", float, 0.999, "Adam beta_2", HYPERPARAMETERS),
    Field("adam_epsilon", float, 1e-8, "Adam epsilon", HYPERPARAMETERS),
    Field("fine_tuning", bool, False, "train a pretrained encoder too (else frozen)", HYPERPARAMETERS),
    Field("resnet_depth", int, 20, "CIFAR ResNet depth (6n+2)", HYPERPARAMETERS),
    Field("resnet_width", int, 16, "CIFAR ResNet width of the first stage", HYPERPARAMETERS),
    Field("resnet_preactivation", bool, False, "pre-activation residual blocks", HYPERPARAMETERS),
)
# fmt: on
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


class Params(Mapping):
    """The resolved configuration: a read-only mapping with attribute access."""

    def __init__(self, values: Mapping[str, Any], config_set: str = "default"):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "config_set", config_set)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"params has no key {key!r}{_suggest(key)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise TypeError("params are frozen: use params.replace(key=value) for a modified copy")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Params({self._values!r})"

    def replace(self, **changes: Any) -> Params:
        """A copy with ``changes`` applied (checked against the schema)."""
        values = dict(self._values)
        for key, value in changes.items():
            values[key] = coerce(key, value, "replace()")
        return Params(values, self.config_set)

    def section(self, file: str) -> dict[str, Any]:
        """The keys that belong to ``file`` (PROJECT or HYPERPARAMETERS)."""
        return {f.name: self._values[f.name] for f in FIELDS if f.file == file}


def default_params(**overrides: Any) -> Params:
    """The schema's defaults with ``overrides`` applied: for notebooks and tests."""
    return Params({f.name: f.default for f in FIELDS}).replace(**overrides)


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, FIELDS_BY_NAME, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def coerce(key: str, value: Any, where: str) -> Any:
    """Checks ``value`` against the type of ``key``; strings from YAML or flags are parsed."""
    field = FIELDS_BY_NAME.get(key)
    if field is None:
        raise ConfigError(f"{where}: unknown key {key!r}{_suggest(key)}")
    expected = field.type.__name__
    try:
        if field.type is bool:
            result = value if isinstance(value, bool) else parse_bool(value)
        elif isinstance(value, bool):
            raise ValueError
        elif field.type is float:
            # PyYAML reads 1e-4 (no dot) as a string: parse it here.
            result = float(value) if isinstance(value, (int, float, str)) else _raise()
            if math.isnan(result):
                raise ValueError
        elif field.type is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            result = int(value) if isinstance(value, (int, str)) else _raise()
        else:
            result = value if isinstance(value, str) else _raise()
    except ValueError:
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}") from None
    if field.choices and result not in field.choices:
        raise ConfigError(
            f"{where}: {key} must be one of {', '.join(field.choices)}, got {result!r}"
        )
    return result


def _raise() -> Any:
    raise ValueError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_sets(path: str) -> dict[str, dict[str, Any]]:
    """Reads a YAML file of named sets safely, one clear line per problem."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: file not found (check the path or create it)")
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if "could not determine a constructor" in problem:
            problem += " (unsafe or unknown YAML tag: only plain YAML is allowed)"
        raise ConfigError(f"{path}{line}: {problem}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: must be a mapping of set names to mappings of keys")
    return data


def select_set(sets: dict[str, dict], name: str, path: str) -> dict[str, Any]:
    if name not in sets:
        close = difflib.get_close_matches(name, sets, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: unknown set {name!r}{hint}; sets: {', '.join(sets)}")
    return sets[name]


def _check_set(values: dict[str, Any], file: str, where: str) -> dict[str, Any]:
    checked = {}
    for key, value in values.items():
        field = FIELDS_BY_NAME.get(key)
        if field is not None and field.file != file:
            other = f"{field.file}.yaml"
            raise ConfigError(f"{where}: key {key!r} belongs in {other}, not here")
        checked[key] = coerce(key, value, where)
    return checked


def build_arg_parser(prog: str = "run.py") -> argparse.ArgumentParser:
    """The command-line interface: selection flags plus one ``--key`` per schema field."""
    parser = OneLineParser(
        prog=prog,
        usage="%(prog)s [--config_set NAME] [--mode MODE] [--print_config] [--KEY VALUE ...]",
        allow_abbrev=False,
        description="Train, evaluate, predict with or export a model configured by YAML sets.",
    )
    parser.add_argument(
        "--config_set", default="default", help="set in the project file (default: default)"
    )
    parser.add_argument(
        "--project_file", default="project.yaml", help="run options file (default: project.yaml)"
    )
    parser.add_argument("--mode", default="train_and_evaluate", choices=MODES, help="what to do")
    parser.add_argument(
        "--print_config", action="store_true", help="print the resolved configuration and exit"
    )
    for file in (PROJECT, HYPERPARAMETERS):
        group = parser.add_argument_group(f"{file}.yaml keys (override the chosen set)")
        for field in (f for f in FIELDS if f.file == file):
            choices = f" [{'|'.join(field.choices)}]" if field.choices else ""
            extra = {"nargs": "?", "const": "true"} if field.type is bool else {}
            group.add_argument(
                f"--{field.name}",
                default=argparse.SUPPRESS,
                metavar=field.type.__name__.upper(),
                help=f"{field.help}{choices} (default: {field.default!r})",
                **extra,
            )
    return parser


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ConfigError: the caller prints one line, exits 2."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def resolve(
    argv: Sequence[str] | None = None, prog: str = "run.py"
) -> tuple[Params, argparse.Namespace]:
    """Resolves defaults < project set < hyperparameter set < command-line overrides.

    Args:
        argv: command-line arguments (without the program name).
        prog: program name shown in usage and errors.

    Returns:
        The frozen ``Params`` and the parsed namespace (``mode``, ``print_config``, ...).

    Raises:
        ConfigError: for any unknown key or set, wrong type, or unreadable file.
    """
    parser = build_arg_parser(prog)
    args, unknown = parser.parse_known_args(argv)
    for token in unknown:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            options = [*FIELDS_BY_NAME, "config_set", "project_file", "mode", "print_config"]
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise ConfigError(f"unknown option --{key}{hint}; see --help")
        raise ConfigError(
            f"unexpected argument {token!r} (options are --key value; quote glob patterns "
            "so the shell does not expand them)"
        )
    overrides = {
        name: coerce(name, getattr(args, name), f"--{name}")
        for name in FIELDS_BY_NAME
        if hasattr(args, name)
    }

    values = {f.name: f.default for f in FIELDS}
    project_path = args.project_file
    project_set = select_set(load_sets(project_path), args.config_set, project_path)
    where = f"{project_path} [{args.config_set}]"
    values.update(_check_set(project_set, PROJECT, where))
    values.update({k: v for k, v in overrides.items() if FIELDS_BY_NAME[k].file == PROJECT})

    hp_path = os.path.join(os.path.dirname(project_path), values["hyperparameter_file"])
    hp_sets = load_sets(hp_path)
    hp_set = select_set(hp_sets, values["hyperparameter_set"], hp_path)
    where = f"{hp_path} [{values['hyperparameter_set']}]"
    values.update(_check_set(hp_set, HYPERPARAMETERS, where))
    values.update(overrides)
    return Params(values, args.config_set), args


def to_yaml(params: Params) -> str:
    """The resolved configuration as YAML, project and hyperparameter sections."""
    data = {
        PROJECT: params.section(PROJECT),
        HYPERPARAMETERS: params.section(HYPERPARAMETERS),
    }
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def save_config(params: Params, model_dir: str) -> list[str]:
    """Writes the resolved sets into ``model_dir`` as loadable config files.

    ``model_dir/project.yaml`` and ``model_dir/hyperparameters.yaml`` each hold one set
    named like the run's set, so ``run.py --project_file model_dir/project.yaml
    --config_set NAME`` reproduces the run.

    Returns:
        One line per key whose value differs from a configuration saved there before.
    """
    project = dict(params.section(PROJECT), hyperparameter_file="hyperparameters.yaml")
    project["hyperparameter_set"] = params.hyperparameter_set
    files = {
        "project.yaml": {params.config_set: project},
        "hyperparameters.yaml": {params.hyperparameter_set: params.section(HYPERPARAMETERS)},
    }
    differences = []
    for name, data in files.items():
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            try:
                previous = next(iter(load_sets(path).values()), {})
            except ConfigError:
                previous = {}
            current = next(iter(data.values()))
            for key in current:
                if (
                    key in previous
                    and previous[key] != current[key]
                    and key != "hyperparameter_file"
                ):
                    differences.append(f"{key}: {previous[key]!r} -> {current[key]!r}")
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return differences


def markdown_reference() -> str:
    """The configuration reference table used in README.md."""
    out = io.StringIO()
    for file in (PROJECT, HYPERPARAMETERS):
        out.write(f"\n`{file}.yaml`\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for field in (f for f in FIELDS if f.file == file):
            choices = f" ({', '.join(field.choices)})" if field.choices else ""
            out.write(
                f"| `{field.name}` | {field.type.__name__} | `{field.default!r}` | {field.help}{choices} |\n"
            )
    return out.getvalue()


def update_readme(path: str) -> None:
    """Rewrites the reference between the ``config-reference`` markers of ``path``."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    head, rest = text.split(start, 1)
    atomic_write_text(path, head + start + markdown_reference() + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    # python -m library.config [README.md]: print the reference, or update it in place.
    if len(sys.argv) > 1:
        update_readme(sys.argv[1])
    else:
        sys.stdout.write(markdown_reference())
