"""The text classifier's hyperparameters (no TensorFlow)."""

from library import Field

METRICS = ("accuracy",)

HYPERPARAMETERS = (
    Field("vocabulary", list[str], [], "the tokens; []: adapted on the training texts"),
    Field("max_tokens", int, 64, "tokens kept by the adaptation", interval="[2, inf)"),
    Field("sequence_length", int, 12, "tokens per text the model reads", interval="[1, inf)"),
    Field("embedding_dim", int, 8, "size of each token's vector", interval="[1, inf)"),
    Field("num_classes", int, 2, "classes", interval="[2, inf)"),
    Field("learning_rate", float, 0.02, "Adam's learning rate", interval="(0, inf)"),
)
