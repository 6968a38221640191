"""A tiny image classifier: one convolution block on TFRecords of the library's converter.

What ``run.py`` is to the scaffold, this package is to the library's tests: its declarations
(``hyperparameters``), its functions (``load_project``) and its YAML sets (``PROJECT_FILE``).
Importing it loads no TensorFlow.
"""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
RUN_PY = os.path.join(FOLDER, "run.py")


def load_project() -> dict:
    """The functions by contract name, as ``run.py`` wires them (imported late)."""
    from projects.classifier import functions

    return {
        "input_fn": functions.input_fn,
        "model_fn": functions.model_fn,
        "loss_fn": functions.loss_fn,
        "optimizer_fn": functions.optimizer_fn,
        "metrics_fn": functions.metrics_fn,
        "predictions_fn": functions.predictions_fn,
        "serving_fn": functions.serving_fn,
    }
