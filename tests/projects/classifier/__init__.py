"""A tiny image classifier: one convolution block on TFRecords of the image kit's converter,
using the kit through the contract's doors as the shipped project does.

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
    from library.vision import classes, serving
    from projects.classifier import functions

    return {
        "input_fn": functions.input_fn,
        "model_fn": functions.model_fn,
        "loss_fn": functions.loss_fn,
        "optimizer_fn": functions.optimizer_fn,
        "metrics_fn": functions.metrics_fn,
        "predictions_fn": functions.predictions_fn,
        "serving_inputs": serving.image_bytes_inputs,
        "serving_fn": functions.serving_fn,
        "predict_reader": serving.read_image_file,
        "callbacks_fn": functions.callbacks_fn,
        "prepare_fn": classes.prepare,
        "diagnose_fn": serving.find_undecodable_image,
    }
