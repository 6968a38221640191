"""What each ``--mode`` of run.py does, on top of the Estimator: files in, one-line errors out."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping

import tensorflow as tf

from library import actions, inputs, schedule
from library.checkpoints import CheckpointError
from library.config import Params
from library.contract import Functions
from library.estimator import DivergedError, Estimator, EvalSpec, TrainSpec, train_and_evaluate
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
    except (inputs.InputError, CheckpointError) as error:
        raise UsageError(str(error)) from None
    except DivergedError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 1


def build_estimator(params: Params, functions: Functions, plan=None) -> Estimator:
    """The Estimator for ``params``; ``num_classes: 0`` is filled in from the labels file."""
    try:
        class_names = inputs.class_names(params)  # read once: class count and exported names
    except inputs.InputError:
        if not params.num_classes:
            raise
        class_names = None
    if not params.num_classes:
        params = params.replace(num_classes=len(class_names))
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
    )


def input_for(functions: Functions, pattern: str, mode: str, params: Params) -> Callable:
    """The project's ``input_fn`` for one file pattern and mode, as the Estimator takes it."""
    return lambda input_context=None: functions.input_fn(pattern, mode, params, input_context)


def _train(params: Params, functions: Functions, evaluate: bool) -> int:
    plan = schedule.make_plan(params, inputs.count_records(params.train_files))
    print(actions.describe(plan))
    if params.skip_corrupt_records:
        for line in inputs.report_lost_records(params.train_files):
            print(f"warning: {line}")
    estimator = build_estimator(params, functions, plan)
    params = estimator.params  # num_classes filled in: the input_fn may need it too
    train_spec = TrainSpec(
        input_for(functions, params.train_files, ModeKeys.TRAIN, params), plan.train_steps
    )
    eval_spec = EvalSpec(
        input_for(functions, params.eval_files, ModeKeys.EVAL, params), params.eval_steps or None
    )
    try:
        if evaluate:
            inputs.match_files(params.eval_files)
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


def predict_files_input_fn(pattern: str, params: Params, serving_fn: Callable) -> Callable:
    paths = inputs.match_files(pattern)

    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(paths)
        dataset = dataset.map(lambda path: (tf.io.read_file(path), path)).batch(
            params.eval_batch_size
        )
        return dataset.map(lambda encoded, path: {**serving_fn(encoded, params), "filename": path})

    return input_fn


def _predict(params: Params, functions: Functions) -> int:
    if not params.predict_files:
        raise UsageError("--mode predict needs --predict_files (image files or a glob)")
    estimator = build_estimator(params, functions)
    params = estimator.params
    names = estimator.class_names
    input_fn = predict_files_input_fn(params.predict_files, params, functions.serving_fn)
    try:
        for prediction in estimator.predict(input_fn, params.checkpoint):
            label = int(prediction["class"])
            name = names[label] if names and label < len(names) else str(label)
            print(
                f"{prediction['filename'].decode()}: {name} ({float(prediction['probability']):.3f})"
            )
    except DATA_ERRORS as error:
        raise inputs.InputError(
            f"{params.predict_files}: an image does not decode ({error.message})"
        ) from None
    return 0


def _export(params: Params, functions: Functions) -> int:
    estimator = build_estimator(params, functions)
    params = estimator.params
    export_dir = params.export_dir or os.path.join(params.model_dir, "export")
    path = estimator.export_saved_model(export_dir, params.checkpoint)
    print(f"exported SavedModel: {path}  (saved_model_cli show --all --dir {path})")
    return 0


_MODES = {
    "train_and_evaluate": lambda params, functions: _train(params, functions, evaluate=True),
    "train": lambda params, functions: _train(params, functions, evaluate=False),
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
}
