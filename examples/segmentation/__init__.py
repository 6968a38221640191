"""A dense task: which pixels of a picture are the digit (a mask), on 64-px canvases made from
scikit-learn's handwritten digits among distracting ink dots (nothing is downloaded).

    python -m examples.segmentation      # data, train, evaluate, export, reload, predict

Records hold the image and its mask as PNGs (the image kit's ``serialize_image``); the kit
parses the mask as the label, decodes it to one channel beside the image, crops and flips
both alike and resizes the mask by its nearest pixel. A small encoder-decoder gives a logit
per pixel; the loss has two named terms (``cross_entropy`` and ``dice``); the best checkpoint
is picked by the mean IoU (``iou``). Predictions are the mask as a PNG per example and its
foreground fraction. The kit's ``MaskFigures`` shows image, true and predicted masks, and a
corrupt or missing mask is named by record and key (``serving.undecodable``). Modules import
each other relatively: this folder can take ``project/``'s place as it is.
"""

import os

from .hyperparameters import HYPERPARAMETERS, METRICS, RUN_OPTIONS, check

__all__ = ["HYPERPARAMETERS", "METRICS", "RUN_OPTIONS", "check", "load_functions"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
PROJECT_FILE = os.path.join(FOLDER, "project.yaml")


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
        diagnose_fn=serving.undecodable(options=("image_key", "mask_key")),
        sample_fn=data.sample_fn,
    )
