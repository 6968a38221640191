"""``loss_fn(labels, logits, params) -> per-example loss``."""

import tensorflow as tf


def loss_fn(labels, logits, params):
    """Softmax cross-entropy with optional label smoothing, one value per example."""
    logits = tf.cast(logits, tf.float32)
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1])
    smoothing = params.xentropy_label_smoothing
    if smoothing:
        one_hot = one_hot * (1.0 - smoothing) + smoothing / tf.cast(
            tf.shape(logits)[-1], tf.float32
        )
    return tf.nn.softmax_cross_entropy_with_logits(one_hot, logits)
