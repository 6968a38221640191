"""Your project: an image classifier (a head on an encoder) on the library's image kit.

This file is its wiring, the one place the library reads (library/contract.py): the keys it
declares (``hyperparameters.py``, no TensorFlow) and its functions by contract name. Modules
import each other relatively, so another task's package can take this folder's place.
Where each change goes: README.md, "Where does my change go".
"""

from .hyperparameters import HYPERPARAMETERS, METRICS, RUN_OPTIONS, check, onednn_off

__all__ = ["HYPERPARAMETERS", "METRICS", "RUN_OPTIONS", "check", "load_functions", "onednn_off"]


def load_functions():
    """The functions by contract name; imported here, late (TensorFlow takes seconds)."""
    from library import Functions
    from library.vision import classes, serving

    from . import inputs, losses, model, optimizers, sample

    return Functions(
        input_fn=inputs.input_fn,
        model_fn=model.model_fn,
        loss_fn=losses.loss_fn,
        optimizer_fn=optimizers.optimizer_fn,
        metrics_fn=model.metrics_fn,
        predictions_fn=model.predictions_fn,
        serving_inputs=serving.image_bytes_inputs,
        serving_fn=inputs.serving_fn,
        predict_reader=serving.read_image_file,
        callbacks_fn=model.callbacks_fn,
        prepare_fn=classes.prepare,
        diagnose_fn=serving.find_undecodable_image,
        sample_fn=sample.sample_fn,
    )
