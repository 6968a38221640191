"""The tiny classifier's hyperparameters (no TensorFlow: read before it loads)."""

from library import Field
from library.vision import options as image_kit

RUN_OPTIONS = image_kit.RUN_OPTIONS
ENCODERS = ("conv", "hub")
METRICS = ("accuracy",)

HYPERPARAMETERS = (
    Field("encoder", str, "conv", "conv: one convolution block; hub: a module", choices=ENCODERS),
    Field("width", int, 8, "filters of the convolution block", interval="[1, inf)"),
    Field("hub_handle", str, "", "encoder hub: a reusable SavedModel folder"),
    Field("fine_tuning", bool, True, "encoder hub: train the module"),
    Field("image_size", int, 16, "side of the network input", interval="[8, inf)"),
    *image_kit.HYPERPARAMETERS,
    Field("dropout_rate", float, 0.0, "dropout before the logits", interval="[0, 1)"),
    Field("learning_rate", float, 3e-3, "Adam's learning rate", interval="[0, inf)"),
    Field(
        "lr_schedule", str, "constant", "constant, or cosine to 0", choices=("constant", "cosine")
    ),
)


def onednn_off(params) -> bool:
    return params.encoder == "hub" and params.fine_tuning


def check(params) -> None:
    if params.encoder == "hub" and not params.hub_handle:
        raise ValueError("encoder hub needs hub_handle: a SavedModel folder")
