"""A tiny tabular regression: three float columns in, one number and two quantiles out, a
loss of two named terms. No image, no class: what the library must serve through
``project/`` alone. Importing it loads no TensorFlow."""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS

__all__ = ["HYPERPARAMETERS", "METRICS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
RUN_PY = os.path.join(FOLDER, "run.py")
COLUMNS = ("a", "b", "c")


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
        callbacks_fn=own.callbacks_fn,
    )
