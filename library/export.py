"""Using a trained model: SavedModel export with a serving signature, and prediction."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence

import keras
import tensorflow as tf

from library import steps
from library.config import Params
from library.contract import Functions


def serving_module(
    model: keras.Model,
    functions: Functions,
    params: Params,
    class_names: Sequence[str] | None = None,
) -> tf.Module:
    """A module whose ``serve`` takes encoded image bytes and returns the predictions.

    ``class_name`` is added beside ``class`` when class names are known. The module holds the
    model's variables and ``serve``, not the Keras model (as Keras' own ``ExportArchive``
    does): saving the Keras layers as well took two to four times as long, and a best-model
    export runs at every new best.
    """
    if functions.serving_fn is None:
        raise ValueError("export needs a serving_fn(encoded_images, params) -> features")
    serving_fn, predictions_fn = functions.serving_fn, functions.predictions_fn
    names = tf.constant(list(class_names)) if class_names else None

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(image_bytes):
        features = steps.model_inputs(model, serving_fn(image_bytes, params))
        predictions = dict(predictions_fn(model(features, training=False)))
        if names is not None and "class" in predictions:
            predictions["class_name"] = tf.gather(names, predictions["class"])
        return predictions

    module = tf.Module()
    module.model_variables, module.serve = list(model.variables), serve
    return module


def save_serving_module(module: tf.Module, directory: str) -> None:
    """Writes ``module`` as a SavedModel with ``serving_default`` = ``module.serve``."""
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})


def export_saved_model(module: tf.Module, export_dir: str) -> str:
    """Writes ``module`` to ``export_dir/<timestamp>`` through a temporary folder; the path."""
    final = os.path.join(export_dir, str(int(time.time())))
    temporary = f"{final}.tmp-{os.getpid()}"
    save_serving_module(module, temporary)
    tf.io.gfile.rename(temporary, final)
    return final


def predict(
    model: keras.Model, input_fn: Callable[[], tf.data.Dataset], predictions_fn: Callable
) -> Iterator[dict]:
    """Yields one dict of predictions per example (plus ``filename`` when the input has it)."""
    predict_batch = tf.function(
        lambda f: predictions_fn(model(steps.model_inputs(model, f), training=False)),
        reduce_retracing=True,
    )
    for element in input_fn():
        features = element[0] if isinstance(element, tuple) else element
        batch = {k: v.numpy() for k, v in predict_batch(features).items()}
        if "filename" in features:
            batch["filename"] = features["filename"].numpy()
        for i in range(len(next(iter(batch.values())))):
            yield {k: v[i] for k, v in batch.items()}
