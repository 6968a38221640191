"""Encoders: ``encoder(images, params) -> features``, built from plain functions.

Mix and match with a head: ``logits = head(encoder(images, params), params)``. Choose one by
name with ``encoder:`` in hyperparameters.yaml.
"""

import keras
from keras import layers

from library import HubModule


def conv_bn_relu(x, filters, params, strides=1, name=None):
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(params.l2_regularization),
        name=name,
    )(x)
    x = layers.BatchNormalization(momentum=params.batch_norm_momentum)(x)
    return layers.ReLU()(x)


def small_cnn(images, params):
    """A few conv blocks (conv, batch norm, ReLU, pooling) and global average pooling.

    A layer named ``block...`` ends an encoder block: its output's histogram goes to
    TensorBoard at each evaluation.
    """
    x = images
    for index, filters in enumerate((32, 64, 128), 1):
        x = conv_bn_relu(x, filters, params)
        x = conv_bn_relu(x, filters, params)
        x = layers.MaxPooling2D(name=f"block{index}")(x)
    return layers.GlobalAveragePooling2D()(x)


def residual_block(x, filters, params, strides=1, name=None):
    """The basic ResNet block: two 3x3 convolutions and a shortcut (projected when needed)."""
    regularizer = keras.regularizers.L2(params.l2_regularization)
    shortcut = x
    y = conv_bn_relu(x, filters, params, strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizer)(y)
    y = layers.BatchNormalization(momentum=params.batch_norm_momentum)(y)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, kernel_regularizer=regularizer
        )(x)
        shortcut = layers.BatchNormalization(momentum=params.batch_norm_momentum)(shortcut)
    return layers.ReLU(name=name)(layers.Add()([y, shortcut]))


def preactivation_block(x, filters, params, strides=1, name=None):
    """The full pre-activation block (He et al. 2016): BN and ReLU before each convolution."""
    regularizer = keras.regularizers.L2(params.l2_regularization)
    y = layers.ReLU()(layers.BatchNormalization(momentum=params.batch_norm_momentum)(x))
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, kernel_regularizer=regularizer
        )(y)
    y = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, kernel_regularizer=regularizer
    )(y)
    y = layers.ReLU()(layers.BatchNormalization(momentum=params.batch_norm_momentum)(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizer)(y)
    return layers.Add(name=name)([y, shortcut])


def resnet(images, params):
    """CIFAR-style ResNet: depth 6n+2, three stages of n blocks, widths w, 2w, 4w."""
    if (params.resnet_depth - 2) % 6:
        raise ValueError(
            f"resnet_depth must be 6n+2 (20, 32, 44, 56...), got {params.resnet_depth}"
        )
    blocks = (params.resnet_depth - 2) // 6
    block = preactivation_block if params.resnet_preactivation else residual_block
    x = layers.Conv2D(params.resnet_width, 3, padding="same", use_bias=False)(images)
    if not params.resnet_preactivation:
        x = layers.ReLU()(layers.BatchNormalization(momentum=params.batch_norm_momentum)(x))
    for stage in range(3):
        for index in range(blocks):
            strides = 2 if stage > 0 and index == 0 else 1
            name = f"block{stage + 1}_{index + 1}"
            x = block(x, params.resnet_width * 2**stage, params, strides, name=name)
    if params.resnet_preactivation:
        x = layers.ReLU()(layers.BatchNormalization(momentum=params.batch_norm_momentum)(x))
    return layers.GlobalAveragePooling2D()(x)


def hub(images, params):
    """A pretrained module (``hub_handle``) as the encoder, fine-tuned or frozen (``fine_tuning``).

    Images reach it as RGB floats in [0, 1], the TF Hub convention for image modules, at
    ``image_size``; its variables are named ``hub/...`` (see ``--mode inspect``).
    """
    return HubModule(params.hub_handle, trainable=params.fine_tuning, name="hub")(images)
