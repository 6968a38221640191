"""The exported model: a SavedModel whose ``serving_default`` takes the inputs the project
declares (``serving_inputs``) and returns what its ``predictions_fn`` returns."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from library.base.errors import ExportError
from library.base.files import move_tree, temporary_folder
from library.config import Params
from library.contract import Functions, ServingFn, ServingInputs, model_inputs


def _serving(functions: Functions) -> tuple[ServingInputs, ServingFn]:
    """The project's ``serving_inputs`` and ``serving_fn``.

    Raises:
        ExportError: the project does not declare both.
    """
    if functions.serving_inputs is None or functions.serving_fn is None:
        raise ExportError(
            "exporting needs the project's serving_inputs(params) -> {name: tf.TensorSpec} and "
            "serving_fn(inputs, params) -> features (library/contract.py)"
        )
    return functions.serving_inputs, functions.serving_fn


def serving_specs(functions: Functions, params: Params) -> dict[str, tf.TensorSpec]:
    """The declared serving inputs, each spec named after its key, sorted by name.

    Raises:
        ExportError: the project declares none.
    """
    serving_inputs, _ = _serving(functions)
    specs = dict(serving_inputs(params))
    return {
        name: tf.TensorSpec(specs[name].shape, specs[name].dtype, name=name)
        for name in sorted(specs)
    }


def predict_function(model: keras.Model, functions: Functions, params: Params) -> Callable:
    """``inputs -> predictions``: serving_fn, the model in inference mode, predictions_fn.

    Raises:
        ExportError: the project declares no serving function.
    """
    _, serving_fn = _serving(functions)

    def predict(inputs):
        features = model_inputs(model, serving_fn(inputs, params))
        return dict(functions.predictions_fn(model(features, training=False), params))

    return predict


def serving_module(model: keras.Model, functions: Functions, params: Params) -> tf.Module:
    """A module whose ``serve`` takes the declared serving inputs and returns the predictions.

    The module holds the model's variables, its resources (the lookup tables of
    ``TextVectorization`` or ``StringLookup``) and ``serve``, not the Keras model (as Keras'
    own ``ExportArchive`` does): saving the Keras layers as well took two to four times as
    long, and a best-model export runs at every new best.
    """
    specs = serving_specs(functions, params)
    predict = predict_function(model, functions, params)
    names = list(specs)

    @tf.function(input_signature=list(specs.values()))
    def serve(*tensors):
        return predict(dict(zip(names, tensors, strict=True)))

    module = tf.Module()
    module.model_variables, module.serve = list(model.variables), serve
    module.model_resources = model_resources(model)
    return module


def model_resources(model: keras.Model) -> list:
    """The resources the model holds besides its variables (lookup tables, hash tables),
    which a SavedModel must track for a function that uses them to be saved."""
    from tensorflow.saved_model.experimental import TrackableResource

    return [
        trackable
        for trackable in tf.train.TrackableView(model).descendants()
        if isinstance(trackable, TrackableResource)
    ]


def save_serving_module(module: tf.Module, directory: str) -> None:
    """Writes ``module`` as a SavedModel with ``serving_default`` = ``module.serve``."""
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})


def export_saved_model(module: tf.Module, export_dir: str) -> str:
    """Writes ``module`` to ``export_dir/<timestamp>`` through a temporary folder; the path."""
    final = os.path.join(export_dir, str(int(time.time())))
    temporary = temporary_folder(final)
    save_serving_module(module, temporary)
    move_tree(temporary, final)
    return final
