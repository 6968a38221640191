"""A project variant that is not image classification: disease progression a year on from ten
table columns (scikit-learn's diabetes data, which ships with it: nothing is downloaded).

    python -m examples.regression        # data, records, train, evaluate, export, predict

``hyperparameters.py``, ``functions.py`` and the two YAML files are what a user writes in
``project/`` for this task; ``run.py`` wires them into the library as the scaffold's run.py
does. No file of ``library/`` names these columns.
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS

__all__ = ["HYPERPARAMETERS", "METRICS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
COLUMNS = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "progression"


def load_functions():
    """The functions by contract name (library/contract.py), imported late."""
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
        sample_fn=own.sample_fn,
    )
