"""A GAN on the handwritten digits: a generator and a discriminator, two optimizers, the update
a step of the project's own (``train_step_fn``: ``library.TrainingStep``), everything around
it the library's (checkpoints of both models and optimizers, exact resume, the NaN guard,
logging of both losses, evaluation, the best generator, its export).

    python -m examples.gan       # data, train, export, reload, generate, figure

The generator is the model the library evaluates and exports (``model_fn``): it turns noise
into a 16-px digit; the discriminator is the step's own. A project package as ``project/``
is: copy it there (without ``__main__.py`` and ``run.py``) to start from it.
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
        predictions_fn=own.predictions_fn,
        serving_inputs=own.serving_inputs,
        serving_fn=own.serving_fn,
        callbacks_fn=own.callbacks_fn,
        train_step_fn=own.train_step_fn,
        sample_fn=own.sample_fn,
    )
