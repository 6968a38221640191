"""What each ``--mode`` of run.py does, on top of the Estimator: files in, one-line errors out."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping

import tensorflow as tf

from library import (
    actions,
    data_service,
    distribute,
    export,
    hub,
    inputs,
    schedule,
    sweep,
    transfer,
)
from library.checkpoints import CheckpointError
from library.config import Params
from library.contract import Functions
from library.convert import IMAGE_EXTENSIONS, check_image
from library.estimator import (
    DivergedError,
    Estimator,
    EvalSpec,
    Interrupted,
    TrainSpec,
    train_and_evaluate,
)
from library.files import atomic_write_text
from library.lock import LockError
from library.modes import ModeKeys

DATA_ERRORS = (tf.errors.DataLossError, tf.errors.InvalidArgumentError)


class UsageError(Exception):
    """Bad input (files, checkpoints): one line, exit status 2."""


def run_mode(mode: str, params: Params, project: Mapping[str, Callable]) -> int:
    """Runs one mode; returns the exit status (0 done, 1 diverged, 2 bad input).

    Args:
        mode: one of ``library.config.MODES``.
        params: the resolved configuration.
        project: the project's functions by contract name (``library/contract.py``).
    """
    functions = Functions.from_mapping(project)
    try:
        return _MODES[mode](params, functions)
    except (
        inputs.InputError,
        CheckpointError,
        LockError,
        transfer.TransferError,
        hub.HubError,
        distribute.StrategyError,
        data_service.DataServiceError,
    ) as error:
        raise UsageError(str(error)) from None
    except DivergedError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 1
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        if params.distribution != "multi_worker":
            raise
        print(f"run.py: error: {distribute.lost_worker(error, params)}", file=sys.stderr)
        return 1
    except Interrupted as stop:
        print(
            f"run.py: stopped by {stop.signal_name} at step {stop.step}; checkpoint saved "
            f"({stop.checkpoint}): the same command resumes from step {stop.step}",
            file=sys.stderr,
        )
        return 128 + signal.Signals[stop.signal_name].value


def run_sweep(
    params: Params,
    project: Mapping[str, Callable],
    key: str,
    values: list,
    geometric: bool,
    sweep_all: bool = False,
) -> int:
    """Trains and evaluates each value of ``key`` in turn (``library/sweep.py``)."""
    import keras

    def train(value_params: Params) -> int:
        try:
            return run_mode("train_and_evaluate", value_params, project)
        finally:
            keras.backend.clear_session()  # the next value starts with a clean slate

    return sweep.run_sweep(params, key, values, train, sweep_all, geometric)


def build_estimator(
    params: Params, functions: Functions, plan=None, data_manifests=(), strategy=None
) -> Estimator:
    """The Estimator for ``params``; ``num_classes: 0`` is filled in from the labels file."""
    try:
        class_names = inputs.class_names(params)  # read once: class count and exported names
    except inputs.InputError:
        if not params.num_classes:
            raise
        class_names = None
    if not params.num_classes:
        params = params.replace(num_classes=len(class_names))
    if strategy is None and params.distribution == "multi_worker":
        # Only training runs on several workers; evaluating or exporting here is one process.
        strategy = distribute.create_strategy(params.replace(distribution="auto"))
    return Estimator(
        functions.model_fn,
        functions.loss_fn,
        functions.optimizer_fn,
        params,
        metrics_fn=functions.metrics_fn,
        predictions_fn=functions.predictions_fn,
        serving_fn=functions.serving_fn,
        plan=plan,
        class_names=class_names,
        strategy=strategy,
        data_manifests=data_manifests,
    )


def input_for(functions: Functions, pattern: str, mode: str, params: Params) -> Callable:
    """The project's ``input_fn`` for one file pattern and mode, as the Estimator takes it."""
    return lambda input_context=None: functions.input_fn(pattern, mode, params, input_context)


def _train(params: Params, functions: Functions, evaluate: bool) -> int:
    # Before any other TensorFlow work: multi_worker configures the collectives at start.
    strategy = distribute.create_strategy(params)
    if params.data_service_address:
        data_service.check_reachable(params.data_service_address)
        print(f"training input from the tf.data service at {params.data_service_address}")
    plan = schedule.make_plan(params, inputs.count_records(params.train_files))
    patterns = [params.train_files]
    if evaluate:
        inputs.check_tfrecords(params.eval_files)
        patterns.append(params.eval_files)
    print(actions.describe(plan))
    if not evaluate and (params.plateau_patience or params.early_stopping_patience):
        print("warning: plateau and early stopping act on evaluations: --mode train makes none")
    if params.skip_corrupt_records:
        for line in inputs.report_lost_records(params.train_files):
            print(f"warning: {line}")
    manifests = [m for pattern in patterns for m in inputs.manifest_paths(pattern)]
    estimator = build_estimator(params, functions, plan, manifests, strategy)
    params = estimator.params  # num_classes filled in: the input_fn may need it too
    train_spec = TrainSpec(
        input_for(functions, params.train_files, ModeKeys.TRAIN, params), plan.train_steps
    )
    eval_spec = EvalSpec(
        input_for(functions, params.eval_files, ModeKeys.EVAL, params), params.eval_steps or None
    )
    try:
        if evaluate:
            train_and_evaluate(estimator, train_spec, eval_spec)
        else:
            estimator.train(train_spec.input_fn, train_spec.max_steps)
    except DATA_ERRORS as error:
        raise _explain(error, params, [params.train_files, params.eval_files]) from None
    _print_outputs(params)
    return 0


def _explain(error: Exception, params: Params, patterns: list[str]) -> Exception:
    """The data error named by file, when the files are to blame; else the error itself."""
    about_images = re.search(r"jpeg|decode|image", str(error), re.IGNORECASE)
    if isinstance(error, tf.errors.InvalidArgumentError) and not about_images:
        return error  # a model or shape bug: scanning every record would not find it
    for pattern in patterns:
        line = inputs.diagnose(pattern, params)
        if line:
            return inputs.InputError(line)
    return error


def _print_outputs(params: Params) -> None:
    print(
        f"checkpoints and TensorBoard logs: {params.model_dir}  (tensorboard --logdir {params.model_dir})"
    )
    print(f"plots: {os.path.join(params.model_dir, 'plots')}")
    print(f"best model: {params.best_model_dir}")


def _evaluate(params: Params, functions: Functions) -> int:
    inputs.check_tfrecords(params.eval_files)
    estimator = build_estimator(params, functions)
    params = estimator.params
    try:
        results = estimator.evaluate(
            input_for(functions, params.eval_files, ModeKeys.EVAL, params),
            params.eval_steps or None,
            params.checkpoint,
        )
    except DATA_ERRORS as error:
        raise _explain(error, params, [params.eval_files]) from None
    checkpoint = results.pop("checkpoint")
    print(
        f"evaluated {checkpoint} on {params.eval_files}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in results.items())
    )
    return 0


def _continuous_eval(params: Params, functions: Functions) -> int:
    plan = schedule.make_plan(params, inputs.count_records(params.train_files))
    inputs.check_tfrecords(params.eval_files)
    estimator = build_estimator(params, functions, plan)
    params = estimator.params
    try:
        estimator.evaluate_continuously(
            input_for(functions, params.eval_files, ModeKeys.EVAL, params),
            params.eval_steps or None,
        )
    except DATA_ERRORS as error:
        raise _explain(error, params, [params.eval_files]) from None
    return 0


def images_input_fn(paths: list[str], params: Params, serving_fn: Callable) -> Callable:
    """Batches of ``serving_fn`` features (plus ``filename``) for image files."""

    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(paths)
        dataset = dataset.map(lambda path: (tf.io.read_file(path), path))
        dataset = dataset.batch(params.eval_batch_size)
        return dataset.map(lambda encoded, path: {**serving_fn(encoded, params), "filename": path})

    return input_fn


def _predict(params: Params, functions: Functions) -> int:
    if not params.predict_files:
        raise UsageError("--mode predict needs --predict_files (a glob, a folder or a comma list)")
    paths = inputs.expand_files(params.predict_files, IMAGE_EXTENSIONS)
    estimator = build_estimator(params, functions)
    params = estimator.params
    prefix = estimator.resolve_checkpoint(params.checkpoint)
    good = []
    for path in paths:  # decoded once here, so a bad file is named instead of failing a batch
        problem = check_image(path)
        if problem:
            print(f"skipped {path}: {problem}", file=sys.stderr)
        else:
            good.append(path)
    if not good:
        raise UsageError(f"{params.predict_files}: none of {len(paths)} files is a readable image")
    print(f"predicting {len(good)} images with {prefix}")
    model, _ = estimator.restore_model(prefix)
    rows = _predictions(model, good, params, functions, estimator.class_names)
    out = os.path.join(os.path.dirname(prefix), "predictions.csv")
    atomic_write_text(out, _csv(rows))
    print(f"predictions of {len(rows)} images written to {out}")
    return 0


def _predictions(model, paths, params, functions, names) -> list[dict]:
    """One row per image (file, class, class_name, probability), printed as it comes.

    An image TensorFlow cannot decode although PIL could fails its batch: the batch is then
    predicted one image at a time and the culprit named and skipped.
    """
    rows: list[dict] = []
    pending = list(paths)
    while pending:
        batch, pending = pending[: params.eval_batch_size], pending[params.eval_batch_size :]
        try:
            rows += _predict_batch(model, batch, params, functions, names)
        except DATA_ERRORS:
            for path in batch:
                try:
                    rows += _predict_batch(model, [path], params, functions, names)
                except DATA_ERRORS as error:
                    reason = error.message.strip().splitlines()[0]
                    print(
                        f"skipped {path}: TensorFlow cannot decode it ({reason})", file=sys.stderr
                    )
    return rows


def _predict_batch(model, paths, params, functions, names) -> list[dict]:
    input_fn = images_input_fn(paths, params, functions.serving_fn)
    rows = []
    for prediction in list(export.predict(model, input_fn, functions.predictions_fn)):
        label = int(prediction["class"])
        row = {
            "file": prediction["filename"].decode(),
            "class": label,
            "class_name": names[label] if names and label < len(names) else str(label),
            "probability": round(float(prediction["probability"]), 6),
        }
        print(f"{row['file']}: {row['class_name']} ({row['probability']:.3f})")
        rows.append(row)
    return rows


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["file", "class", "class_name", "probability"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _export(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions)
    params = estimator.params
    export_dir = params.export_dir or os.path.join(params.model_dir, "export")
    path = estimator.export_saved_model(export_dir, params.checkpoint)
    print(f"exported SavedModel: {path}  (saved_model_cli show --all --dir {path})")
    return 0


def _export_encoder(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions)
    params = estimator.params
    model, prefix = estimator.restore_model(params.checkpoint)
    directory = params.export_encoder_dir or os.path.join(params.model_dir, "encoder")
    encoder = hub.encoder_of(model, params.encoder_layer)
    hub.export_module(encoder, directory)
    print(
        f"exported the encoder of {prefix} ({len(encoder.variables)} variables, output "
        f"{encoder.output.shape[1:]}) as a reusable SavedModel: {directory}  (encoder: hub, "
        f"hub_handle: {directory})"
    )
    return 0


def _inspect(params: Params, functions: Functions) -> int:
    if params.inspect_path:
        lines = transfer.inspect_path(params.inspect_path)
    else:
        params = build_estimator(params, functions).params
        lines = transfer.inspect_model(functions.model_fn(params))
    print("\n".join(lines))
    return 0


_MODES = {
    "train_and_evaluate": lambda params, functions: _train(params, functions, evaluate=True),
    "train": lambda params, functions: _train(params, functions, evaluate=False),
    "evaluate": _evaluate,
    "continuous_eval": _continuous_eval,
    "predict": _predict,
    "export": _export,
    "export_encoder": _export_encoder,
    "inspect": _inspect,
}
