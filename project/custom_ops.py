"""A custom op with a hand-written gradient (the notes seed's sigmoid), and a layer using it.

TensorFlow differentiates any composition of its ops by itself; ``tf.custom_gradient`` is for
when you want to supply the gradient: a numerically safer or cheaper formula, or an op built
outside TensorFlow's primitives. Here the gradient reuses the forward result,
sigma'(x) = sigma(x) * (1 - sigma(x)), instead of differentiating exp and division.
"""

import keras
import tensorflow as tf


@tf.custom_gradient
def custom_sigmoid(x):
    y = 1.0 / (1.0 + tf.exp(-x))

    def grad(upstream):
        return upstream * y * (1.0 - y)

    return y, grad


class SigmoidGate(keras.layers.Layer):
    """``features * custom_sigmoid(dense(features))``: a learned, per-feature gate."""

    def build(self, input_shape):
        self.dense = keras.layers.Dense(input_shape[-1])
        self.dense.build(input_shape)

    def call(self, features):
        return features * custom_sigmoid(self.dense(features))
