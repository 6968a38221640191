"""What each ``--mode`` of run.py does, on top of the Estimator: files in, one-line errors out."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable, Sequence

import tensorflow as tf

from library.base.errors import (
    CompileError,
    DivergedError,
    Interrupted,
    ProjectError,
    UserError,
)
from library.cli import predict
from library.config import MODES, Params
from library.contract import Functions, ModeKeys, call_input_fn
from library.data import diagnose, files, records
from library.data import service as data_service
from library.data.service import check_reachable
from library.engine import actions, distribute, schedule, steps
from library.engine.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate
from library.transfer import hub, names

DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


def run_mode(mode: str, params: Params, functions: Functions) -> int:
    """Runs one mode; returns the exit status a scheduler can act on: 0 done, 1 a failure
    (diverged, a lost worker), 2 usage or bad input, 130 interrupted (Ctrl-C), 143 preempted
    (SIGTERM, to this worker or another: resumable).

    Args:
        mode: one of ``library.config.MODES``.
        params: the resolved configuration.
        functions: the project's functions (``library/contract.py``).

    Raises:
        UserError: bad input, or a request that cannot be done as asked (one line, status 2).
    """
    try:
        return _MODES[mode](params, functions)
    except DivergedError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 1
    except tf.errors.OpError as error:
        uncompiled = params.xla and steps.xla_problem(error)
        if uncompiled:
            raise CompileError(uncompiled) from None
        lost = params.data_service_address and data_service.failure_line(
            error, params.data_service_address, params.model_dir
        )
        if lost:
            print(f"run.py: error: {lost}", file=sys.stderr)
            return 1
        multi_worker = params.distribution == "multi_worker"
        if not multi_worker or not isinstance(
            error, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)
        ):
            raise
        print(f"run.py: error: {distribute.lost_worker(error, params)}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        where = " to another worker" if stop.elsewhere else ""
        print(
            f"run.py: stopped by {stop.signal_name}{where} at step {stop.step}; checkpoint "
            f"saved ({stop.checkpoint}): the same command resumes from step {stop.step}",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stop.signal_name].value


def run_sweep(
    params: Params,
    functions: Functions,
    key: str,
    values: list,
    geometric: bool,
    sweep_all: bool = False,
) -> int:
    """Trains and evaluates each value of ``key`` in turn, on Optuna
    (``library.search.study.run_sweep``)."""
    import keras

    from library.search import study

    def train(value_params: Params) -> int:
        try:
            return run_mode("train_and_evaluate", value_params, functions)
        finally:
            keras.backend.clear_session()  # the next value starts with a clean slate

    return study.run_sweep(params, key, values, geometric, train, sweep_all=sweep_all)


def run_search(params: Params, functions: Functions) -> int:
    """Trials of a search on Optuna, each an ordinary train_and_evaluate
    (``library/search/study.py``)."""
    import keras

    from library.search import study

    def train(trial_params: Params, reporter) -> int:
        own = functions.callbacks_fn
        with_reporter = functions.replace(callbacks_fn=lambda p: [*own(p), reporter])
        try:
            return run_mode("train_and_evaluate", trial_params, with_reporter)
        finally:
            keras.backend.clear_session()  # the next trial starts with a clean slate

    return study.run_search(params, train)


def build_estimator(
    params: Params,
    functions: Functions,
    plan=None,
    data_manifests=(),
    strategy=None,
    data_from: str | None = None,
) -> Estimator:
    """The Estimator for ``params``; what the data decides comes from ``prepare_fn`` when it
    trains (``data_from`` None), else from the checkpoint ``data_from`` names (see
    ``Estimator``)."""
    if strategy is None and params.distribution == "multi_worker":
        # Only training runs on several workers; evaluating or exporting here is one process.
        strategy = distribute.create_strategy(params.replace(distribution="auto"))
    return Estimator.from_functions(
        functions,
        params,
        plan=plan,
        strategy=strategy,
        data_manifests=data_manifests,
        data_from=data_from,
    )


def train_records(params: Params) -> int | None:
    """The examples of one epoch of ``train_files``: ``train_records`` when given, else
    counted from the manifests beside the files (or, when a length in epochs needs the
    count, by reading TFRecord shards once). None when nothing needs it and it is not known
    cheaply: an input_fn may read no files at all.

    Raises:
        InputError: a length in epochs, and ``train_files`` are not records that can be
            counted (naming what they are).
    """
    if params.train_records:
        return params.train_records
    in_epochs = not params.train_steps or not params.steps_between_evals
    try:
        counted = records.count_records(params.train_files, read_shards=in_epochs)
    except files.InputError:
        if in_epochs:
            raise
        return None
    stranger = files.not_tfrecord(params.train_files) if counted is None and in_epochs else None
    if stranger:
        path, what = stranger
        raise files.InputError(
            f"{path}: {what}, no records the library can count, and a length in epochs needs "
            "the examples of an epoch: set train_records, give lengths in steps, or write "
            "records with a manifest (library.data.records.RecordWriter)"
        )
    return counted


def _manifests(patterns) -> list[str]:
    """The manifests of the datasets read (for provenance); none for an input that is no
    files of the library's writer."""
    found = []
    for pattern in patterns:
        try:
            found += records.manifest_paths(pattern)
        except files.InputError:
            continue
    return found


def input_for(functions: Functions, pattern: str, mode: str, params: Params) -> Callable:
    """The project's ``input_fn`` for one file pattern and mode, as the Estimator takes it.

    Raises:
        ProjectError: the project declares no ``input_fn``.
    """
    input_fn = functions.input_fn
    if input_fn is None:
        raise ProjectError(
            "training and evaluating need the project's input_fn(file_pattern, mode, params, "
            "input_context=None) -> tf.data.Dataset (library/contract.py)"
        )
    return lambda input_context=None: input_fn(pattern, mode, params, input_context)


def _train(params: Params, functions: Functions, evaluate: bool) -> int:
    # Before any other TensorFlow work: multi_worker configures the collectives at start.
    strategy = distribute.create_strategy(params)
    if params.data_service_address:
        check_reachable(params.data_service_address)
        print(f"training input from the tf.data service at {params.data_service_address}")
    plan = schedule.make_plan(params, train_records(params))
    patterns = [params.train_files, *(_eval_patterns(params) if evaluate else [])]
    print(actions.describe(plan))
    if not evaluate and (params.plateau_patience or params.early_stopping_patience):
        print("warning: plateau and early stopping act on evaluations: --mode train makes none")
    if params.skip_corrupt_records:
        for line in diagnose.report_lost_records(params.train_files):
            print(f"warning: {line}")
    estimator = build_estimator(params, functions, plan, _manifests(patterns), strategy)
    params = estimator.params  # prepared: the input_fn may need what prepare_fn filled in
    train_spec = TrainSpec(
        input_for(functions, params.train_files, ModeKeys.TRAIN, params), plan.train_steps
    )
    inputs = _eval_inputs(functions, params)
    eval_spec = EvalSpec(inputs, params.eval_steps or None)
    try:
        if evaluate:  # built once now: files that do not suit it are named before training
            for input_fn in inputs.values() if isinstance(inputs, dict) else [inputs]:
                call_input_fn(input_fn)
        if evaluate:
            train_and_evaluate(estimator, train_spec, eval_spec)
        else:
            estimator.train(train_spec.input_fn, train_spec.max_steps)
    except DATA_ERRORS as error:
        raise _explain(error, params, functions, patterns) from None
    _print_outputs(params)
    return 0


def _explain(
    error: tf.errors.OpError, params: Params, functions: Functions, patterns: Sequence[str]
) -> Exception:
    """The data error named by file, when the files are to blame (none match, a corrupt
    TFRecord shard, or what the project's ``diagnose_fn`` finds); else the error itself."""
    asserted = _assertion(error.message)
    if asserted:
        return files.InputError(asserted)
    for pattern in patterns:
        line = None
        if "No files matched pattern" in error.message and pattern in error.message:
            line = f"{pattern}: no files match (fix the pattern, or write the files)"
        elif isinstance(error, tf.errors.DataLossError) and _tfrecords(pattern):
            line = diagnose.find_corrupt_shard(pattern)
        if line is None and functions.diagnose_fn is not None:
            line = functions.diagnose_fn(pattern, params, error)
        if line:
            return files.InputError(line)
    return error


def _assertion(message: str) -> str | None:
    """The message of a failed ``tf.debugging.Assert`` of the project's (its data list
    joined: ``["label", bad, "is outside ..."]``), or None."""
    found = re.search(r"assertion failed: (.*)", message)
    if not found:
        return None
    return " ".join(re.findall(r"\[([^\]]*)\]", found.group(1))) or None


def _tfrecords(pattern: str) -> bool:
    try:
        files.check_tfrecords(pattern)
    except files.InputError:
        return False
    return True


def _print_outputs(params: Params) -> None:
    print(
        f"checkpoints and TensorBoard logs: {params.model_dir}  (tensorboard --logdir "
        f"{params.model_dir})"
    )
    if params.plots:
        print(f"plots: {os.path.join(params.model_dir, 'plots')}")
    print(f"best model: {params.best_model_dir}")


def _evaluate(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions, data_from=params.checkpoint)
    params = estimator.params
    try:
        results = estimator.evaluate(
            input_for(functions, params.eval_files, ModeKeys.EVAL, params),
            params.eval_steps or None,
            params.checkpoint,
        )
    except DATA_ERRORS as error:
        raise _explain(error, params, functions, [params.eval_files]) from None
    checkpoint = results.pop("checkpoint")
    print(
        f"evaluated {checkpoint} on {params.eval_files}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in results.items())
    )
    return 0


def _eval_patterns(params: Params) -> list[str]:
    return list(params.eval_sets.values()) or [params.eval_files]


def _eval_inputs(functions: Functions, params: Params) -> Callable | dict[str, Callable]:
    """The evaluation input of training: ``eval_files``'s input function, or one per set of
    ``eval_sets`` by name."""
    if not params.eval_sets:
        return input_for(functions, params.eval_files, ModeKeys.EVAL, params)
    return {
        name: input_for(functions, pattern, ModeKeys.EVAL, params)
        for name, pattern in params.eval_sets.items()
    }


def _continuous_eval(params: Params, functions: Functions) -> int:
    plan = schedule.make_plan(params, train_records(params))
    estimator = build_estimator(params, functions, plan, data_from="latest")
    params = estimator.params
    try:
        estimator.evaluate_continuously(_eval_inputs(functions, params), params.eval_steps or None)
    except DATA_ERRORS as error:
        raise _explain(error, params, functions, _eval_patterns(params)) from None
    return 0


def _predict(params: Params, functions: Functions) -> int:
    if not params.predict_files:
        raise UserError("--mode predict needs --predict_files (a glob, a folder or a comma list)")
    paths = files.expand_files(params.predict_files, recursive=params.predict_recursive)
    estimator = build_estimator(params, functions, data_from=params.checkpoint)
    prefix = estimator.resolve_checkpoint(estimator.params.checkpoint)
    out = params.predictions_file or os.path.join(os.path.dirname(prefix), "predictions.csv")
    predict.predict_to_csv(estimator, functions, prefix, paths, out)
    return 0


def _export(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions, data_from=params.checkpoint)
    params = estimator.params
    export_dir = params.export_dir or os.path.join(params.model_dir, "export")
    path = estimator.export_saved_model(export_dir, params.checkpoint)
    print(f"exported SavedModel: {path}  (saved_model_cli show --all --dir {path})")
    return 0


def _export_encoder(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions, data_from=params.checkpoint)
    params = estimator.params
    model, prefix = estimator.restore_model(params.checkpoint)
    directory = params.export_encoder_dir or os.path.join(params.model_dir, "encoder")
    encoder = hub.encoder_of(model, params.encoder_layer)
    hub.export_module(encoder, directory)
    layer = params.encoder_layer or "the input of the last layer"
    print(
        f"exported {prefix} up to {layer} ({len(encoder.variables)} variables, output "
        f"{encoder.output.shape[1:]}) as a reusable SavedModel: {directory}  (a module for "
        "HubModule / TF Hub)"
    )
    return 0


def _inspect(params: Params, functions: Functions) -> int:
    if params.inspect_path:
        lines = names.inspect_path(params.inspect_path)
    else:
        params = build_estimator(params, functions, data_from="latest").params
        lines = names.inspect_model(functions.model_fn(params))
    print("\n".join(lines))
    return 0


_MODES = {
    "search": run_search,
    "train_and_evaluate": lambda params, functions: _train(params, functions, evaluate=True),
    "train": lambda params, functions: _train(params, functions, evaluate=False),
    "evaluate": _evaluate,
    "continuous_eval": _continuous_eval,
    "predict": _predict,
    "export": _export,
    "export_encoder": _export_encoder,
    "inspect": _inspect,
}
# The one table of what each mode does; config.MODES names them for --mode before
# TensorFlow loads.
assert set(_MODES) == set(MODES), "config.MODES and the modes' table differ"
