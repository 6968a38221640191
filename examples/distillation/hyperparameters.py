"""The distillation's hyperparameters (no TensorFlow)."""

from library import Field

METRICS = ("accuracy",)
NETWORKS = ("resnet", "small_cnn")

HYPERPARAMETERS = (
    Field(
        "network",
        str,
        "small_cnn",
        "the network trained: the teacher or the student",
        choices=NETWORKS,
    ),
    Field("width", int, 16, "filters of the first convolutions", interval="[1, inf)"),
    Field(
        "teacher_width",
        int,
        32,
        "the teacher's width (network resnet), to build it from its checkpoint",
        interval="[1, inf)",
    ),
    Field(
        "teacher_checkpoint",
        str,
        "",
        "a checkpoint of the teacher (network resnet); empty: no teacher, the library's own update",
    ),
    Field(
        "temperature",
        float,
        4.0,
        "the softness of both networks' answers in the distillation loss",
        interval="(0, inf)",
    ),
    Field(
        "distill_weight",
        float,
        0.9,
        "the share of the teacher's answers in the student's loss (the rest: the labels')",
        interval="[0, 1]",
    ),
    Field("learning_rate", float, 2e-3, "Adam's rate", interval="(0, inf)"),
)
