"""The keys of this project's hyperparameters.yaml (no TensorFlow here)."""

from library import Field
from library.vision import options as image_kit

RUN_OPTIONS = image_kit.RUN_OPTIONS
METRICS = ("accuracy", "box_iou")

HYPERPARAMETERS = (
    *image_kit.HYPERPARAMETERS,  # num_classes, class_names
    Field("image_size", int, 64, "side of the canvas the network sees", interval="[16, inf)"),
    Field(
        "filters",
        list[int],
        [32, 64, 128],
        "filters of each convolution block",
        interval="[1, inf)",
    ),
    Field("box_weight", float, 5.0, "weight of the box term in the loss", interval="[0, inf)"),
    Field(
        "crop_min_area",
        float,
        0.6,
        "smallest random crop (keeping the digit whole)",
        interval="(0, 1]",
    ),
    Field(
        "learning_rate", float, 3e-3, "peak learning rate (cosine decay to 0)", interval="(0, inf)"
    ),
)
