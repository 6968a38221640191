"""The keys of this project's hyperparameters.yaml (no TensorFlow here)."""

from library import Field

METRICS = ("accuracy",)

HYPERPARAMETERS = (
    Field(
        "modules",
        list[str],
        [],
        "the classes, package names by id; []: read from the training records' manifest",
    ),
    Field(
        "vocabulary",
        list[str],
        [],
        "the tokens the model knows; []: adapted on the training texts (the most frequent)",
    ),
    Field(
        "max_tokens",
        int,
        5000,
        "tokens the adaptation keeps, padding and unknown included",
        interval="[3, inf)",
    ),
    Field(
        "sequence_length",
        int,
        128,
        "tokens of each text the model reads (the rest is cut off)",
        interval="[1, inf)",
    ),
    Field("embedding_dim", int, 64, "size of each token's vector", interval="[1, inf)"),
    Field(
        "conv_filters",
        int,
        0,
        "filters of a 1-D convolution over the token vectors, max-pooled; 0: none, their mean "
        "(a bag of words)",
        interval="[0, inf)",
    ),
    Field("conv_width", int, 3, "tokens each filter of the convolution sees", interval="[1, inf)"),
    Field("dropout_rate", float, 0.2, "dropout before the class layer", interval="[0, 1)"),
    Field(
        "learning_rate", float, 5e-3, "peak learning rate (cosine decay to 0)", interval="(0, inf)"
    ),
)
