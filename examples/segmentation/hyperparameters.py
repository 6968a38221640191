"""The keys of this project's hyperparameters.yaml and the rule that ties two of them (no
TensorFlow here)."""

from library import Field
from library.vision import options as image_kit

RUN_OPTIONS = image_kit.MASK_RUN_OPTIONS  # image_key, mask_key
METRICS = ("iou", "foreground_iou")

HYPERPARAMETERS = (
    Field("image_size", int, 64, "side of the picture the network sees", interval="[8, inf)"),
    Field(
        "filters",
        list[int],
        [16, 32, 64],
        "filters of each resolution, finest first (the last is the bottleneck's)",
        interval="[1, inf)",
    ),
    Field(
        "dice_weight",
        float,
        0.5,
        "weight of the dice term beside the per-pixel cross-entropy",
        interval="[0, inf)",
    ),
    Field("crop_min_area", float, 0.5, "smallest random crop of the canvas", interval="(0, 1]"),
    Field("augment_flip", bool, True, "flip image and mask left-right at random"),
    Field(
        "learning_rate", float, 3e-3, "peak learning rate (cosine decay to 0)", interval="(0, inf)"
    ),
)


def check(params) -> None:
    """The picture must halve evenly down to the bottleneck and back up to its size."""
    halvings = len(params.filters) - 1
    if params.image_size % 2**halvings:
        raise ValueError(
            f"image_size {params.image_size} must be a multiple of {2**halvings}: "
            f"{len(params.filters)} filters halve the picture {halvings} times"
        )
