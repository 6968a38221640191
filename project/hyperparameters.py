"""The keys of hyperparameters.yaml: every hyperparameter the project reads, declared once.

A new hyperparameter is one line here (name, type, default, help, and choices or an interval
when it has them); read it as ``params.name`` anywhere in ``project/``. Unknown keys, wrong
types and values out of range are errors before TensorFlow loads, which is why this module
imports nothing but the ``Field`` type and the image kit's keys (no TensorFlow either).

``METRICS`` names what ``model.metrics_fn`` returns, so that ``best_metric`` is checked before
TensorFlow loads too. ``ENCODERS`` and ``HEADS`` name the functions of ``encoders.py`` and
``heads.py`` (tests/project checks each of them). ``RUN_OPTIONS`` are keys of project.yaml
this project adds to the library's: the image kit's record keys and labels file.
"""

from library import Field
from library.vision import options as image_kit

RUN_OPTIONS = image_kit.RUN_OPTIONS

ENCODERS = ("small_cnn", "resnet", "hub")
HEADS = ("classifier", "gated_classifier")
SCHEDULES = ("constant", "cosine", "exponential", "piecewise")
METRICS = ("accuracy",)

# fmt: off
HYPERPARAMETERS = (
    # -- the model -------------------------------------------------------------------
    Field("encoder", str, "small_cnn", "encoder function in project/encoders.py", choices=ENCODERS),
    Field("head", str, "classifier", "head function in project/heads.py", choices=HEADS),
    Field("image_size", int, 224, "side of the square network input", interval="[8, inf)"),
    *image_kit.HYPERPARAMETERS,  # num_classes and class_names, from the labels file
    Field("dropout_rate", float, 0.5, "dropout before the classifier", interval="[0, 1)"),
    Field("batch_norm_momentum", float, 0.9, "batch-norm moving-average momentum (PyTorch's default; Keras' 0.99 lags on short runs)", interval="[0, 1)"),
    Field("resnet_depth", int, 20, "CIFAR ResNet depth (6n+2)", interval="[8, inf)"),
    Field("resnet_width", int, 16, "CIFAR ResNet width of the first stage", interval="[1, inf)"),
    Field("resnet_preactivation", bool, False, "pre-activation residual blocks"),
    Field("hub_handle", str, "", "encoder hub: a local reusable SavedModel folder, or a TF Hub / Kaggle handle (downloaded once by tensorflow_hub)"),
    Field("fine_tuning", bool, True, "encoder hub: train the module (batch norm in training mode, its regularization losses added); false: frozen"),
    # -- augmentation (project/inputs.py) -------------------------------------------------
    Field("augment_flip", bool, True, "random horizontal flips in training"),
    Field("train_crop_min_area", float, 0.25, "smallest random crop, as a fraction of the image area", interval="(0, 1]"),
    Field("eval_crop_fraction", float, 0.875, "central crop side, as a fraction of the shorter edge", interval="(0, 1]"),
    # -- loss and optimizer ---------------------------------------------------------------
    Field("learning_rate", float, 1e-3, "peak learning rate", interval="[0, inf)"),
    Field("lr_schedule", str, "constant", "learning-rate schedule", choices=SCHEDULES),
    Field("lr_boundaries", list[float], [], "piecewise: epochs at which the rate changes", interval="[0, inf)"),
    Field("lr_values", list[float], [], "piecewise: the rates, one more than lr_boundaries", interval="[0, inf)"),
    Field("lr_decay_rate", float, 0.9, "exponential: the factor on the rate per epoch", interval="(0, 1]"),
    Field("warmup_epochs", float, 0.0, "linear warm-up length in epochs (any schedule)", interval="[0, inf)"),
    Field("l2_regularization", float, 1e-8, "L2 weight decay added to the loss", interval="[0, inf)"),
    Field("xentropy_label_smoothing", float, 0.0, "label smoothing of the cross-entropy", interval="[0, 1)"),
    Field("adam_beta1", float, 0.9, "Adam beta_1", interval="[0, 1)"),
    Field("adam_beta2", float, 0.999, "Adam beta_2", interval="[0, 1)"),
    Field("adam_epsilon", float, 1e-8, "Adam epsilon", interval="(0, inf)"),
    Field("weight_decay", float, 0.0, "decoupled weight decay of Adam (AdamW), apart from the loss; 0: none", interval="[0, inf)"),
)
# fmt: on


def onednn_off(params) -> bool:
    """Whether training must run without oneDNN (run option ``onednn: auto``).

    Fine-tuning a pretrained module: TF 2.21's oneDNN filter gradient of 1x1 stride-2
    convolutions with few input channels (3-8, early layers of Xception-style modules)
    crashes the process on some CPUs (this machine's among them). Our own encoders have no
    such layer (resnet's 1x1 stride-2 shortcuts see 16 or more channels, which did not
    crash here) and keep oneDNN's speed.
    """
    return params.encoder == "hub" and params.fine_tuning


def check(params) -> None:
    """Rules that tie keys together, checked before TensorFlow loads (ValueError: one line)."""
    if params.encoder == "hub" and not params.hub_handle:
        raise ValueError("encoder hub needs hub_handle: a SavedModel folder or a hub handle")
    if params.lr_schedule == "piecewise":
        boundaries, values = list(params.lr_boundaries), list(params.lr_values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"lr_schedule piecewise needs one more lr_values than lr_boundaries, got "
                f"{len(values)} values for {len(boundaries)} boundaries"
            )
        if boundaries != sorted(set(boundaries)):
            raise ValueError(f"lr_boundaries must increase, got {boundaries}")
