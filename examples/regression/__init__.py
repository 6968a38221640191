"""A project variant that is not image classification: disease progression a year on from ten
table columns (scikit-learn's diabetes data, which ships with it: nothing is downloaded).

    python -m examples.regression        # data, records, train, evaluate, export, predict

``hyperparameters.py``, ``functions.py`` and the two YAML files are what a user writes in
``project/`` for this task; ``run.py`` wires them into the library as the scaffold's run.py
does. No file of ``library/`` names these columns.
"""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
COLUMNS = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "progression"


def load_project() -> dict:
    """The functions by contract name (library/contract.py), imported late."""
    from examples.regression import functions

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
