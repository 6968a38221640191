"""Heads: ``head(features, params) -> outputs``. Label smoothing lives in the loss."""

import keras
from keras import layers


def classifier(features, params):
    """Dropout then a dense layer to one logit per class."""
    x = layers.Dropout(params.dropout_rate)(features)
    return layers.Dense(
        params.num_classes,
        kernel_regularizer=keras.regularizers.L2(params.l2_regularization),
        dtype="float32",  # float32 logits under mixed precision: a stable softmax and loss
        name="logits",
    )(x)


def gated_classifier(features, params):
    """A classifier behind a gate whose op has a hand-written gradient (custom_ops.py)."""
    from .custom_ops import SigmoidGate

    return classifier(SigmoidGate(name="gate")(features), params)
