"""A project variant with one encoder and two heads: which digit, and where (its bounding box),
on a 64-px canvas made from scikit-learn's handwritten digits (nothing is downloaded).

    python -m examples.digit_boxes       # data, train, evaluate, export, reload, predict

A loss of two named terms (``class``, ``box``), each logged beside the total; a box metric
(``box_iou``) that picks the best checkpoint; a random crop that keeps the digit whole and
moves its box with it (the image kit's ``decode_and_random_crop`` returns its window). The
kit's pieces (records, decoding, the ``image_bytes`` serving input, image files for predict,
the figures of a classifier, the figure of true and predicted boxes) come in through the
contract's doors; ``data.py`` writes the canvases, for the journey and the project's sample
(``sample_fn``).
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS, RUN_OPTIONS

__all__ = ["HYPERPARAMETERS", "METRICS", "RUN_OPTIONS", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")
BOX_KEY = "image/object/bbox"  # [ymin, xmin, ymax, xmax], fractions of the canvas


def load_functions():
    """The functions by contract name (library/contract.py), imported late."""
    from library import Functions
    from library.vision import serving

    from . import data
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
        sample_fn=data.sample_fn,
    )
