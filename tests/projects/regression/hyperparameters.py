"""The regression's hyperparameters (no TensorFlow)."""

from library import Field

METRICS = ("mae", "labels_mean")

HYPERPARAMETERS = (
    Field("units", int, 16, "hidden units", interval="[1, inf)"),
    Field("learning_rate", float, 0.02, "Adam's learning rate", interval="(0, inf)"),
    Field(
        "quantile_weight",
        float,
        0.5,
        "weight of the quantile term of the loss",
        interval="[0, inf)",
    ),
)
