"""A tiny text classifier whose model takes raw strings: a ``TextVectorization`` layer inside
it, its vocabulary adapted on the training texts by ``prepare_fn`` (what the data decides),
so that the exported model holds a lookup table. A project package as ``project/`` is.
Importing it loads no TensorFlow."""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS

__all__ = ["HYPERPARAMETERS", "METRICS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")


def load_functions():
    """The functions by contract name, imported late."""
    from library import Functions

    from . import functions as own

    return Functions(
        input_fn=own.input_fn,
        model_fn=own.model_fn,
        loss_fn=own.loss_fn,
        optimizer_fn=own.optimizer_fn,
        metrics_fn=own.metrics_fn,
        predictions_fn=own.predictions_fn,
        serving_inputs=own.serving_inputs,
        serving_fn=own.serving_fn,
        prepare_fn=own.prepare_fn,
    )
