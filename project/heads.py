"""Heads: ``head(features, params) -> outputs``. Label smoothing lives in the loss."""

import keras
from keras import layers


def classifier(features, params):
    """Dropout then a dense layer to one logit per class."""
    x = layers.Dropout(params.dropout_rate)(features)
    return layers.Dense(
        params.num_classes,
        kernel_regularizer=keras.regularizers.L2(params.l2_regularization),
        name="logits",
    )(x)
