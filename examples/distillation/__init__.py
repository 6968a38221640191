"""Distillation on the handwritten digits: a residual network (the teacher) trained first, then
a small CNN (the student) trained on the teacher's softened answers beside the labels, the
teacher frozen inside the student's update (``train_step_fn``: ``library.TrainingStep``).

    python -m examples.distillation    # data, the teacher, the student alone, distilled

With ``teacher_checkpoint`` empty the project trains ``network`` by the library's own update;
given a checkpoint of the teacher, the student learns from it. A project package as
``project/`` is: copy it there (without ``__main__.py`` and ``run.py``) to start from it.
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS

__all__ = ["HYPERPARAMETERS", "METRICS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")


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
        train_step_fn=own.train_step_fn,
        sample_fn=own.sample_fn,
    )
