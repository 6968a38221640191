"""A tiny tabular regression: three float columns in, one number and two quantiles out, a
loss of two named terms. No image, no class: what the library must serve through
``project/`` alone. Importing it loads no TensorFlow."""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
RUN_PY = os.path.join(FOLDER, "run.py")
COLUMNS = ("a", "b", "c")


def load_project() -> dict:
    from projects.regression import functions

    return {
        "input_fn": functions.input_fn,
        "model_fn": functions.model_fn,
        "loss_fn": functions.loss_fn,
        "optimizer_fn": functions.optimizer_fn,
        "metrics_fn": functions.metrics_fn,
        "predictions_fn": functions.predictions_fn,
        "serving_inputs": functions.serving_inputs,
        "serving_fn": functions.serving_fn,
        "callbacks_fn": functions.callbacks_fn,
    }
