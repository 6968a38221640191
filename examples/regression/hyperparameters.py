"""The keys of this project's hyperparameters.yaml (no TensorFlow here)."""

from library import Field

METRICS = ("mae",)

HYPERPARAMETERS = (
    Field("hidden_units", list[int], [32, 16], "units of each hidden layer", interval="[1, inf)"),
    Field("dropout_rate", float, 0.1, "dropout after each hidden layer", interval="[0, 1)"),
    Field(
        "learning_rate", float, 3e-3, "peak learning rate (cosine decay to 0)", interval="(0, inf)"
    ),
    Field("l2_regularization", float, 1e-4, "L2 weight decay", interval="[0, inf)"),
    Field(
        "target_scale", float, 100.0, "the target is learned divided by this", interval="(0, inf)"
    ),
)
