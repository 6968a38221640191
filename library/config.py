"""Strict YAML configuration: named sets, anchors, command-line overrides, frozen params.

Two files hold the configuration, each as named sets (top-level keys):

* ``project.yaml``: run options (data, durations, folders, checkpointing), declared below in
  ``RUN_OPTIONS``: they belong to the library.
* ``hyperparameters.yaml``: model hyperparameters, declared by the project
  (``project/hyperparameters.py``): a new encoder with a new hyperparameter never edits
  ``library/``.

A set inherits from another through a YAML anchor (``<<: *DEFAULT``) and overrides only what
differs. ``--config_set NAME`` picks the project set; its ``hyperparameter_set`` picks the
hyperparameter set. Any key can then be overridden on the command line (``--learning_rate
0.0001``; lists and mappings in YAML flow syntax: ``--lr_boundaries "[2, 4]"``).

Every key has a type, a default, a help line and optionally choices or an interval; an unknown
key, a wrong type or a value out of range is an error. This module imports no TensorFlow, so
that ``--help`` and configuration errors answer instantly.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import io
import json
import math
import os
import re
import sys
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from library.files import atomic_write_text

PROJECT = "project"
HYPERPARAMETERS = "hyperparameters"
MODES = (
    "train_and_evaluate",
    "train",
    "evaluate",
    "continuous_eval",
    "predict",
    "export",
    "export_encoder",
    "inspect",
)
TRAINING_MODES = ("train_and_evaluate", "train")
RENAMED = {"model": "checkpoint"}  # old key -> new key: a clear error instead of "unknown"


class ConfigError(Exception):
    """A configuration problem, reported as one line and exit status 2."""


@dataclass(frozen=True)
class Field:
    """One configuration key.

    Args:
        name: the key, as written in YAML and as ``--name`` on the command line.
        type: ``str``, ``int``, ``float``, ``bool``, ``list[T]`` or ``dict[str, T]``.
        default: its value when no set gives one.
        help: one line for ``--help`` and the README.
        choices: the allowed values (strings), checked with a did-you-mean.
        interval: the allowed range of a number (or of each item of a list or mapping), as
            ``"[0, 1)"`` or ``"(0, inf)"``; square brackets include the bound.
    """

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple = ()
    interval: str = ""
    file: str = HYPERPARAMETERS  # set by Schema: which YAML file the key belongs in

    @property
    def type_name(self) -> str:
        origin = typing.get_origin(self.type)
        if origin is None:
            return self.type.__name__
        return f"{origin.__name__}[{', '.join(a.__name__ for a in typing.get_args(self.type))}]"


# fmt: off
RUN_OPTIONS: tuple[Field, ...] = (
    # -- data ----------------------------------------------------------------------
    Field("train_files", str, "dataset/train/train-*.tfrecord", "glob of training TFRecord shards"),
    Field("eval_files", str, "dataset/test/test-*.tfrecord", "glob of evaluation TFRecord shards"),
    Field("predict_files", str, "", "image files or a glob for --mode predict"),
    Field("labels_file", str, "", "class names, one per line; empty: labels.txt beside train_files"),
    Field("train_batch_size", int, 32, "examples per training step (the global batch, over all replicas)", interval="[1, inf)"),
    Field("eval_batch_size", int, 64, "examples per evaluation step", interval="[1, inf)"),
    Field("shuffle_buffer", int, 1000, "records in the shuffle buffer (training)", interval="[1, inf)"),
    Field("interleave_cycle_length", int, 4, "shards read at once", interval="[1, inf)"),
    Field("skip_corrupt_records", bool, False, "skip the damaged rest of a corrupt shard instead of stopping"),
    Field("image_key", str, "image/encoded", "feature key of the encoded image"),
    Field("label_key", str, "image/class/label", "feature key of the int64 label"),
    # -- durations (epochs, or steps when > 0) ---------------------------------------
    Field("train_epochs", float, 10.0, "training length in epochs", interval="(0, inf)"),
    Field("train_steps", int, 0, "training length in steps; overrides train_epochs when > 0", interval="[0, inf)"),
    Field("epochs_between_evals", float, 1.0, "evaluate every this many epochs", interval="(0, inf)"),
    Field("steps_between_evals", int, 0, "evaluate every this many steps; overrides epochs_between_evals when > 0", interval="[0, inf)"),
    Field("eval_steps", int, 0, "batches per evaluation; 0: the whole eval set", interval="[0, inf)"),
    Field("steps_per_execution", int, 1, "training steps run inside one tf.function call", interval="[1, inf)"),
    Field("log_steps", int, 50, "log train loss and throughput every this many steps", interval="[1, inf)"),
    # -- checkpoints and outputs -----------------------------------------------------
    Field("hyperparameter_file", str, "hyperparameters.yaml", "hyperparameter file, relative to the project file"),
    Field("hyperparameter_set", str, "default", "set in hyperparameter_file"),
    Field("checkpoint", str, "latest", "checkpoint to evaluate/predict/export: latest, best or a path"),
    Field("model_dir", str, "out/current/checkpoints", "checkpoints, summaries, metrics.jsonl, plots"),
    Field("best_model_dir", str, "out/current/best", "best checkpoint, best.json and its SavedModel"),
    Field("export_dir", str, "", "SavedModel destination for --mode export; empty: <model_dir>/export"),
    Field("keep_checkpoints", int, 5, "checkpoints kept in model_dir", interval="[1, inf)"),
    Field("save_checkpoints_steps", int, 0, "save every this many steps; 0: at each evaluation", interval="[0, inf)"),
    Field("checkpoint_input_pipeline", bool, False, "save the input pipeline's position (shuffle buffer included) in checkpoints, so a resumed run continues the same data order; larger checkpoints"),
    Field("best_metric", str, "loss", "evaluation metric that picks the best checkpoint: loss or a name of METRICS in project/hyperparameters.py"),
    Field("best_mode", str, "min", "whether a lower or higher best_metric is better", choices=("min", "max")),
    Field("best_saved_model", bool, True, "also export the best checkpoint as a SavedModel in best_model_dir/saved_model (written in the background; needs a serving_fn)"),
    Field("plots", bool, True, "draw the matplotlib figures: curves from metrics.jsonl in model_dir/plots after each evaluation, and the best checkpoint's figures in best_model_dir"),
    Field("batch_norm_refresh_batches", int, 4, "before each checkpoint, re-estimate batch-norm statistics with the weights being saved from this many training batches (PreciseBN); 0: off", interval="[0, inf)"),
    Field("max_nonfinite_steps", int, 5, "stop after this many consecutive NaN/Inf steps", interval="[1, inf)"),
    Field("random_seed", int, 42, "seed for weights, shuffling and augmentation"),
    # -- scale (library/distribute.py, library/data_service.py; README "Scaling out") --------
    Field("distribution", str, "auto", "tf.distribute strategy: auto (mirrored over several GPUs, else one device), one_device, mirrored, multi_worker (the cluster from TF_CONFIG) or tpu", choices=("auto", "one_device", "mirrored", "multi_worker", "tpu")),
    Field("collective_timeout_secs", float, 300.0, "multi_worker: a collective (gradient all-reduce) waiting longer than this for a worker that died stops the run", interval="(0, inf)"),
    Field("tpu_address", str, "", "distribution tpu: the TPU's name or grpc:// address; empty: the local TPU"),
    Field("data_service_address", str, "", "grpc://HOST:PORT of a tf.data service dispatcher that runs the training input pipeline (python -m library.data_service); empty: in this process"),
    Field("mixed_precision", str, "none", "compute in 16 bits with float32 variables, logits and loss: none, mixed_float16 (with loss scaling; GPUs) or mixed_bfloat16 (TPUs, CPUs with AVX512-BF16 or AMX)", choices=("none", "mixed_float16", "mixed_bfloat16")),
    Field("xla", bool, False, "compile the train step with XLA"),
    Field("profile_steps", list[int], [], "[start, stop]: write a TensorBoard profile of these training steps to <model_dir>/profile; []: none", interval="[0, inf)"),
    Field("onednn", str, "auto", "TensorFlow's oneDNN CPU kernels: on, off, or auto (off where project/hyperparameters.py's onednn_off(params) says the model meets TF 2.21's crashing conv-gradient kernel)", choices=("auto", "on", "off")),
    Field("progress", str, "auto", "progress bar: auto (on a terminal), bar or log", choices=("auto", "bar", "log")),
    # -- workflows: plateau, early stopping, continuous evaluation ------------------------------
    Field("plateau_patience", int, 0, "multiply the learning rate by plateau_factor after this many evaluations without improvement of the eval loss; 0: off", interval="[0, inf)"),
    Field("plateau_factor", float, 0.1, "factor on the learning rate at a plateau", interval="(0, 1)"),
    Field("plateau_min_lr", float, 0.0, "the rate a plateau never lowers it below", interval="[0, inf)"),
    Field("plateau_min_delta", float, 1e-4, "an eval loss lower than the best by more than this is an improvement (plateau)", interval="[0, inf)"),
    Field("early_stopping_patience", int, 0, "stop after this many evaluations without improvement of the eval loss; 0: off", interval="[0, inf)"),
    Field("early_stopping_min_delta", float, 0.0, "an eval loss lower than the best by more than this is an improvement (early stopping)", interval="[0, inf)"),
    Field("eval_timeout_secs", float, 600.0, "--mode continuous_eval stops after this long without a new checkpoint", interval="(0, inf)"),
    # -- transfer learning (library/transfer.py; names as --mode inspect lists them) -----------
    Field("warm_start_from", str, "", "checkpoint prefix or folder (this project's, a TF1 one, or a SavedModel) whose variables start a new run; ignored once model_dir has a checkpoint"),
    Field("warm_start_vars", str, ".*", "regex: which of the model's variables the warm start takes"),
    Field("warm_start_name_map", dict[str, str], {}, "regex over our variable names -> the source's name (re.sub), e.g. {'^logits/': 'dense/'}"),
    Field("lr_mult", dict[str, float], {}, "regex over variable names -> factor on their updates (first match wins; 0: frozen)", interval="[0, inf)"),
    Field("export_encoder_dir", str, "", "--mode export_encoder destination; empty: <model_dir>/encoder"),
    Field("encoder_layer", str, "features", "--mode export_encoder: the layer whose output is the encoder's (project/model.py names it); empty: the input of the last layer"),
    Field("inspect_path", str, "", "--mode inspect: a checkpoint or SavedModel to list instead of the model"),
)
# fmt: on


class Schema:
    """Every key of a run: the library's run options and the project's hyperparameters."""

    def __init__(self, hyperparameters: Sequence[Field] = ()):
        fields = [dataclasses.replace(f, file=PROJECT) for f in RUN_OPTIONS]
        fields += [dataclasses.replace(f, file=HYPERPARAMETERS) for f in hyperparameters]
        self.fields: tuple[Field, ...] = tuple(fields)
        self.by_name: dict[str, Field] = {}
        for field in self.fields:
            if field.name in self.by_name:
                raise ConfigError(f"key {field.name!r} is declared twice (a run option too?)")
            self.by_name[field.name] = field
            _parse_interval(field)  # a malformed interval fails at import, not mid-run

    def defaults(self) -> dict[str, Any]:
        return {f.name: coerce(f, f.default, "schema") for f in self.fields}

    def file_fields(self, file: str) -> list[Field]:
        return [f for f in self.fields if f.file == file]

    def suggest(self, key: str, options: Sequence[str] | None = None) -> str:
        close = difflib.get_close_matches(key, options or list(self.by_name), n=1)
        return f" (did you mean {close[0]!r}?)" if close else ""

    def unknown(self, key: str, where: str) -> ConfigError:
        if key in RENAMED:
            return ConfigError(f"{where}: key {key!r} is now called {RENAMED[key]!r}; rename it")
        hint = (
            self.suggest(key) or " (a new hyperparameter is declared in project/hyperparameters.py)"
        )
        return ConfigError(f"{where}: unknown key {key!r}{hint}")

    def coerce(self, key: str, value: Any, where: str) -> Any:
        field = self.by_name.get(key)
        if field is None:
            raise self.unknown(key, where)
        return coerce(field, value, where)


class FrozenMap(Mapping):
    """A read-only mapping (a YAML mapping value in frozen params)."""

    def __init__(self, values: Mapping):
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return repr(dict(self._values))

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self._values) == dict(other)

    def __hash__(self):
        return hash(tuple(sorted(self._values.items())))


class Params(Mapping):
    """The resolved configuration: a read-only mapping with attribute access."""

    def __init__(self, values: Mapping[str, Any], config_set: str = "default", schema=None):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "config_set", config_set)
        object.__setattr__(self, "schema", schema or Schema())

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(
                f"params has no key {key!r}{self.schema.suggest(key)}; "
                "declare new hyperparameters in project/hyperparameters.py"
            ) from None

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
            values[key] = self.schema.coerce(key, value, "replace()")
        return Params(values, self.config_set, self.schema)

    def section(self, file: str) -> dict[str, Any]:
        """The keys that belong to ``file`` (PROJECT or HYPERPARAMETERS), as plain YAML data."""
        return {f.name: plain(self._values[f.name]) for f in self.schema.file_fields(file)}


def plain(value: Any) -> Any:
    """A frozen value as plain YAML data (tuples as lists, frozen mappings as dicts)."""
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def default_params(hyperparameters: Sequence[Field] = (), **overrides: Any) -> Params:
    """The schema's defaults with ``overrides`` applied: for notebooks and tests."""
    schema = Schema(hyperparameters)
    return Params(schema.defaults(), schema=schema).replace(**overrides)


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def _scalar(kind: type, value: Any) -> Any:
    """``value`` as ``kind``; strings (from flags, or PyYAML's 1e-4) are parsed."""
    if kind is bool:
        return value if isinstance(value, bool) else parse_bool(value)
    if isinstance(value, bool):
        raise ValueError
    if kind is float:
        if not isinstance(value, (int, float, str)):
            raise ValueError
        result = float(value)
        if math.isnan(result):
            raise ValueError
        return result
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, (int, str)):
            raise ValueError
        return int(value)
    if not isinstance(value, str):
        raise ValueError
    return value


def _structure(value: Any, container: type) -> Any:
    """A list or mapping given as YAML flow text on the command line, parsed safely."""
    if isinstance(value, str):
        try:
            value = yaml.load(value, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError:
            raise ValueError from None
    if not isinstance(value, container):
        raise ValueError
    return value


def coerce(field: Field, value: Any, where: str) -> Any:
    """Checks ``value`` against ``field`` (type, choices, interval); returns it frozen."""
    origin = typing.get_origin(field.type)
    try:
        if origin is list:
            (item,) = typing.get_args(field.type)
            result = tuple(_scalar(item, v) for v in _structure(value, list))
            items = result
        elif origin is dict:
            _, item = typing.get_args(field.type)
            mapping = _structure(value, dict)
            if not all(isinstance(k, str) for k in mapping):
                raise ValueError
            result = FrozenMap({k: _scalar(item, v) for k, v in mapping.items()})
            items = tuple(result.values())
        else:
            result = _scalar(field.type, value)
            items = (result,)
    except ValueError:
        example = {list: " in YAML flow syntax, e.g. [1, 2]", dict: " such as {'a': 1}"}
        raise ConfigError(
            f"{where}: {field.name} must be {field.type_name}{example.get(origin, '')}, "
            f"got {plain(value)!r}"
        ) from None
    if field.choices and result not in field.choices:
        hint = ""
        close = difflib.get_close_matches(str(result), [str(c) for c in field.choices], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        raise ConfigError(
            f"{where}: {field.name} must be one of {', '.join(map(str, field.choices))}, "
            f"got {result!r}{hint}"
        )
    if field.interval:
        low, high, closed_low, closed_high = _parse_interval(field)
        for number in items:
            inside = (number >= low if closed_low else number > low) and (
                number <= high if closed_high else number < high
            )
            if not inside:
                raise ConfigError(
                    f"{where}: {field.name} must be in {field.interval}, got {plain(result)!r}"
                )
    return result


_INTERVAL = re.compile(r"^([\[(])\s*(-?[\w.]+)\s*,\s*(-?[\w.]+)\s*([\])])$")


def _parse_interval(field: Field) -> tuple[float, float, bool, bool]:
    if not field.interval:
        return -math.inf, math.inf, False, False
    match = _INTERVAL.match(field.interval)
    if not match:
        raise ValueError(f"{field.name}: malformed interval {field.interval!r}")
    opening, low, high, closing = match.groups()
    return float(low), float(high), opening == "[", closing == "]"


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, except lists, which read better in one line: ``[2, 4]``."""


_Dumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


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


def _check_set(schema: Schema, values: dict[str, Any], file: str, where: str) -> dict[str, Any]:
    checked = {}
    for key, value in values.items():
        field = schema.by_name.get(key)
        if field is not None and field.file != file:
            raise ConfigError(f"{where}: key {key!r} belongs in {field.file}.yaml, not here")
        checked[key] = schema.coerce(key, value, where)
    return checked


def build_arg_parser(schema: Schema, prog: str = "run.py") -> argparse.ArgumentParser:
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
    parser.add_argument(
        "--sweep",
        metavar="KEY=V1,V2|KEY=START:STOP:FACTOR",
        help="train each value of one key in turn, in <model_dir>/sweep/KEY=V/, until the best "
        "validation loss gets worse",
    )
    parser.add_argument("--sweep_all", action="store_true", help="with --sweep: train every value")
    for file in (PROJECT, HYPERPARAMETERS):
        group = parser.add_argument_group(f"{file}.yaml keys (override the chosen set)")
        for field in schema.file_fields(file):
            group.add_argument(
                f"--{field.name}",
                default=argparse.SUPPRESS,
                metavar=field.type_name.upper(),
                help=f"{field.help}{_constraint(field)} (default: {plain(field.default)!r})",
                **({"nargs": "?", "const": "true"} if field.type is bool else {}),
            )
    return parser


def _constraint(field: Field) -> str:
    if field.choices:
        return f" [{'|'.join(map(str, field.choices))}]"
    return f" in {field.interval}" if field.interval else ""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ConfigError: the caller prints one line, exits 2."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def resolve(
    argv: Sequence[str] | None = None,
    hyperparameters: Sequence[Field] = (),
    prog: str = "run.py",
    metrics: Sequence[str] = (),
    check: Callable[[Params], None] | None = None,
) -> tuple[Params, argparse.Namespace]:
    """Resolves defaults < project set < hyperparameter set < command-line overrides.

    Args:
        argv: command-line arguments (without the program name).
        hyperparameters: the project's hyperparameter schema (``project/hyperparameters.py``).
        prog: program name shown in usage and errors.
        metrics: the names of the project's evaluation metrics (``best_metric`` is ``loss``
            or one of them).
        check: the project's rules that tie keys together (``check(params)`` raises
            ValueError with a one-line message), run on the resolved configuration.

    Returns:
        The frozen ``Params`` and the parsed namespace (``mode``, ``print_config``, ...).

    Raises:
        ConfigError: for any unknown key or set, wrong type or range, or unreadable file.
    """
    schema = Schema(hyperparameters)
    parser = build_arg_parser(schema, prog)
    args, unknown = parser.parse_known_args(argv)
    for token in unknown:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key in RENAMED:
                raise ConfigError(f"--{key} is now called --{RENAMED[key]}")
            options = [
                *schema.by_name,
                "config_set",
                "project_file",
                "mode",
                "print_config",
                "sweep",
            ]
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise ConfigError(f"unknown option --{key}{hint}; see --help")
        raise ConfigError(
            f"unexpected argument {token!r} (options are --key value; quote glob patterns "
            "so the shell does not expand them)"
        )
    overrides = {
        name: schema.coerce(name, getattr(args, name), f"--{name}")
        for name in schema.by_name
        if hasattr(args, name)
    }

    values = schema.defaults()
    project_path = args.project_file
    project_set = select_set(load_sets(project_path), args.config_set, project_path)
    where = f"{project_path} [{args.config_set}]"
    values.update(_check_set(schema, project_set, PROJECT, where))
    values.update({k: v for k, v in overrides.items() if schema.by_name[k].file == PROJECT})

    hp_path = os.path.join(os.path.dirname(project_path), values["hyperparameter_file"])
    hp_set = select_set(load_sets(hp_path), values["hyperparameter_set"], hp_path)
    where = f"{hp_path} [{values['hyperparameter_set']}]"
    values.update(_check_set(schema, hp_set, HYPERPARAMETERS, where))
    values.update(overrides)
    params = Params(values, args.config_set, schema)
    _check_best_metric(params, metrics)
    _check_patterns(params)
    _check_scale(params, getattr(args, "mode", None) in TRAINING_MODES)
    if check is not None:
        try:
            check(params)
        except ValueError as error:
            raise ConfigError(f"{args.config_set}: {error}") from None
    return params, args


def _check_best_metric(params: Params, metrics: Sequence[str]) -> None:
    known = ["loss", *metrics]
    if params.best_metric not in known:
        close = difflib.get_close_matches(params.best_metric, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"best_metric must be one of the evaluation results {', '.join(known)}, "
            f"got {params.best_metric!r}{hint}"
        )


def _check_scale(params: Params, training: bool) -> None:
    """The scale keys that no type can check: a step range, an address, what excludes what.
    (Only training runs on several workers: other modes run on one device.)"""
    if params.profile_steps and (
        len(params.profile_steps) != 2 or params.profile_steps[0] >= params.profile_steps[1]
    ):
        raise ConfigError(
            f"profile_steps must be [start, stop] with start < stop, got {params.profile_steps}"
        )
    if training and params.distribution == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG", ""))
    address = params.data_service_address
    if address and not re.fullmatch(r"grpc://[^:/\s]+:\d+", address):
        raise ConfigError(
            f"data_service_address must be grpc://HOST:PORT (the dispatcher's), got {address!r}"
        )
    if address and params.checkpoint_input_pipeline:
        raise ConfigError(
            "checkpoint_input_pipeline: the tf.data service holds the input pipeline, its "
            "position cannot be saved; set checkpoint_input_pipeline: false"
        )


def _check_tf_config(text: str) -> None:
    """TF_CONFIG names the cluster and this task (README "Scaling out")."""
    example = (
        'e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    if not text:
        raise ConfigError(
            f"distribution multi_worker needs TF_CONFIG in the environment, {example}"
        )
    try:
        tf_config = json.loads(text)
        task = tf_config["task"]
        addresses = tf_config["cluster"][task["type"]]
        addresses[int(task["index"])]
    except (ValueError, KeyError, TypeError, IndexError):
        raise ConfigError(
            f"TF_CONFIG must name the cluster and this task in it, {example}; got {text!r}"
        ) from None


def _check_patterns(params: Params) -> None:
    """The regular expressions of the transfer keys compile (names: ``--mode inspect``)."""
    patterns = [("warm_start_vars", params.warm_start_vars)]
    patterns += [("warm_start_name_map", p) for p in params.warm_start_name_map]
    patterns += [("lr_mult", p) for p in params.lr_mult]
    for key, pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"{key}: {pattern!r} is not a regular expression ({error})") from None


def to_yaml(params: Params) -> str:
    """The resolved configuration as YAML, project and hyperparameter sections."""
    data = {
        PROJECT: params.section(PROJECT),
        HYPERPARAMETERS: params.section(HYPERPARAMETERS),
    }
    return dump_yaml(data)


CHANGES_FILE = "config_changes.yaml"


def save_config(params: Params, model_dir: str, resumed_at: int | None = None) -> list[str]:
    """Records in ``model_dir`` the configuration that trains it: history, not a snapshot.

    At a fresh start, writes the resolved sets as ``project.yaml`` and ``hyperparameters.yaml``
    (one set each, named like the run's), so ``run.py --project_file model_dir/project.yaml
    --config_set NAME`` reproduces the run as it started. At a resume (``resumed_at``: the
    step it resumes from) those files stay as they are; each difference from the
    configuration in force (the files and the changes recorded so far) is appended to
    ``config_changes.yaml`` with the step from which it applies.

    Returns:
        One line per key that differs from the configuration in force.
    """
    project = dict(params.section(PROJECT), hyperparameter_file="hyperparameters.yaml")
    project["hyperparameter_set"] = params.hyperparameter_set
    files = {
        "project.yaml": {params.config_set: project},
        "hyperparameters.yaml": {params.hyperparameter_set: params.section(HYPERPARAMETERS)},
    }
    paths = {name: os.path.join(model_dir, name) for name in files}
    if resumed_at is None or not all(os.path.isfile(p) for p in paths.values()):
        for name, data in files.items():
            atomic_write_text(paths[name], dump_yaml(data))
        changes_path = os.path.join(model_dir, CHANGES_FILE)
        if os.path.exists(changes_path):  # the history of an earlier run in this folder
            os.remove(changes_path)
        return []
    in_force = configuration_in_force(model_dir)
    current = {k: v for data in files.values() for k, v in next(iter(data.values())).items()}
    changes = {
        key: [in_force[key], value]
        for key, value in current.items()
        if key in in_force and in_force[key] != value and key != "hyperparameter_file"
    }
    if changes:
        history = _read_changes(model_dir)
        history.append(
            {
                "step": resumed_at,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv),
                "changes": {k: {"from": old, "to": new} for k, (old, new) in changes.items()},
            }
        )
        atomic_write_text(os.path.join(model_dir, CHANGES_FILE), dump_yaml(history))
    return [f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items()]


def configuration_in_force(model_dir: str) -> dict[str, Any]:
    """The saved sets of ``model_dir`` with the recorded changes applied, in order."""
    values: dict[str, Any] = {}
    for name in ("project.yaml", "hyperparameters.yaml"):
        try:
            values.update(next(iter(load_sets(os.path.join(model_dir, name)).values()), {}))
        except ConfigError:
            continue
    for entry in _read_changes(model_dir):
        for key, change in entry.get("changes", {}).items():
            values[key] = change.get("to")
    return values


def _read_changes(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, CHANGES_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as stream:
        history = yaml.safe_load(stream)
    return history if isinstance(history, list) else []


def markdown_reference(hyperparameters: Sequence[Field] = ()) -> str:
    """The configuration reference table used in README.md."""
    schema = Schema(hyperparameters)
    out = io.StringIO()
    for file in (PROJECT, HYPERPARAMETERS):
        out.write(f"\n`{file}.yaml`\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for field in schema.file_fields(file):
            constraint = _constraint(field).replace("|", ", ")
            out.write(
                f"| `{field.name}` | {field.type_name} | `{plain(field.default)!r}` | "
                f"{field.help}{constraint} |\n"
            )
    return out.getvalue()


def update_readme(path: str, hyperparameters: Sequence[Field] = ()) -> None:
    """Rewrites the reference between the ``config-reference`` markers of ``path``."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    start, end = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"
    head, rest = text.split(start, 1)
    reference = markdown_reference(hyperparameters)
    atomic_write_text(path, head + start + reference + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    # python -m library.config project.hyperparameters [README.md]: print the reference for
    # that hyperparameter module (it must define HYPERPARAMETERS), or update README.md in place.
    import importlib

    sys.path.insert(0, os.getcwd())
    fields = importlib.import_module(sys.argv[1]).HYPERPARAMETERS
    if len(sys.argv) > 2:
        update_readme(sys.argv[2], fields)
    else:
        sys.stdout.write(markdown_reference(fields))
