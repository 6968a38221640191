"""From the command line and the YAML sets to frozen ``Params``: defaults < project set <
hyperparameter set < command-line overrides, then the checks that tie keys together."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from library.config.options import MODES, RENAMED, TRAINING_MODES
from library.config.params import Params, Schema
from library.config.schema import HYPERPARAMETERS, PROJECT, ConfigError, Field, constraint, plain
from library.config.sets import load_sets, select_set


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
        "best_metric gets worse",
    )
    parser.add_argument("--sweep_all", action="store_true", help="with --sweep: train every value")
    for file in (PROJECT, HYPERPARAMETERS):
        group = parser.add_argument_group(f"{file}.yaml keys (override the chosen set)")
        for field in schema.file_fields(file):
            # A bool key given alone means true: --plots, as --plots true.
            flag: dict[str, Any] = {"nargs": "?", "const": "true"} if field.type is bool else {}
            group.add_argument(
                f"--{field.name}",
                default=argparse.SUPPRESS,
                metavar=field.type_name.upper(),
                help=f"{field.help}{constraint(field)} (default: {plain(field.default)!r})",
                **flag,
            )
    return parser


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
    run_options: Sequence[Field] = (),
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
        run_options: keys of project.yaml the project declares besides the library's.

    Returns:
        The frozen ``Params`` and the parsed namespace (``mode``, ``print_config``, ...).

    Raises:
        ConfigError: for any unknown key or set, wrong type or range, or unreadable file.
    """
    schema = Schema(hyperparameters, run_options)
    args, unknown = build_arg_parser(schema, prog).parse_known_args(argv)
    _refuse_unknown(unknown, schema)
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
    params = _check_best_metric(params, metrics)
    _check_patterns(params)
    _check_scale(params, getattr(args, "mode", None) in TRAINING_MODES)
    if check is not None:
        try:
            check(params)
        except ValueError as error:
            raise ConfigError(f"{args.config_set}: {error}") from None
    return params, args


def _refuse_unknown(tokens: Sequence[str], schema: Schema) -> None:
    """One line for the first argument the command line does not know (with a close name)."""
    for token in tokens:
        if not token.startswith("--"):
            raise ConfigError(
                f"unexpected argument {token!r} (options are --key value; quote glob patterns "
                "so the shell does not expand them)"
            )
        key = token[2:].split("=", 1)[0]
        if key in RENAMED:
            raise ConfigError(f"--{key} is now called --{RENAMED[key]}")
        options = [*schema.by_name, "config_set", "project_file", "mode", "print_config", "sweep"]
        close = difflib.get_close_matches(key, options, n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        raise ConfigError(f"unknown option --{key}{hint}; see --help")


def _check_best_metric(params: Params, metrics: Sequence[str]) -> Params:
    """``params``, its ``best_metric`` checked; with several evaluation sets, a bare metric
    becomes the first set's (``accuracy``: ``validation/accuracy``)."""
    known = ["loss", *metrics]
    sets = list(params.eval_sets)
    if sets and params.best_metric in known:
        return params.replace(best_metric=f"{sets[0]}/{params.best_metric}")
    if sets:
        known = [f"{name}/{metric}" for name in sets for metric in known]
    if params.best_metric not in known:
        close = difflib.get_close_matches(params.best_metric, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"best_metric must be one of the evaluation results {', '.join(known)}, "
            f"got {params.best_metric!r}{hint}"
        )
    return params


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
    """TF_CONFIG names the cluster and this task (docs/scaling.md, "Several hosts")."""
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
