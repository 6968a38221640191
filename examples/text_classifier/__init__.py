"""A text classifier of real text that ships with Python: the docstrings of eight packages of
the standard library, each labelled by its package (nothing is downloaded).

    python -m examples.text_classifier   # data, train, evaluate, export, reload, predict

The model takes raw strings (``{"text": ...}``): a ``TextVectorization`` layer inside it,
whose vocabulary ``prepare_fn`` adapts on the training texts and the library keeps in every
checkpoint, so that evaluate, predict and the exported SavedModel (its lookup table inside)
need no training data. The class names come from the records' manifest the same way.
``hyperparameters.py``, ``functions.py``, ``data.py`` and the two YAML files are what a user
writes in ``project/`` for this task; no file of ``library/`` names its features.
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS

__all__ = ["HYPERPARAMETERS", "METRICS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
TEXT = "text"  # the feature: one docstring, a raw string
LABEL = "module"  # the label: the id of its package among the manifest's classes


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
        prepare_fn=own.prepare_fn,
        sample_fn=own.sample_fn,
    )
