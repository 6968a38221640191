"""A tiny image classifier: one convolution block on TFRecords of the image kit's converter,
using the kit through the contract's doors as the shipped project does.

A project package as ``project/`` is (``library/contract.py``): its declarations and its
functions here, its YAML sets (``PROJECT_FILE``). Importing it loads no TensorFlow.
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS, RUN_OPTIONS, check, onednn_off

__all__ = ["HYPERPARAMETERS", "METRICS", "RUN_OPTIONS", "check", "load_functions", "onednn_off"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
RUN_PY = os.path.join(FOLDER, "run.py")


def load_functions():
    """The functions by contract name, imported late."""
    from library import Functions
    from library.vision import classes, serving

    from . import functions as own

    return Functions(
        input_fn=own.input_fn,
        model_fn=own.model_fn,
        loss_fn=own.loss_fn,
        optimizer_fn=own.optimizer_fn,
        metrics_fn=own.metrics_fn,
        predictions_fn=own.predictions_fn,
        serving_inputs=serving.image_bytes_inputs,
        serving_fn=own.serving_fn,
        predict_reader=serving.read_image_file,
        callbacks_fn=own.callbacks_fn,
        prepare_fn=classes.prepare,
        diagnose_fn=serving.find_undecodable_image,
    )
