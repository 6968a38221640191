"""``loss_fn(labels, logits, params) -> per-example loss``."""

import tensorflow as tf


def loss_fn(labels, logits, params):
    """Softmax cross-entropy with optional label smoothing, one value per example; a label
    outside the classes stops the run in one line (one_hot would give it a loss of 0)."""
    logits = tf.cast(logits, tf.float32)
    with tf.control_dependencies([check_labels(labels, params.num_classes)]):
        one_hot = tf.one_hot(labels, tf.shape(logits)[-1])
    smoothing = params.xentropy_label_smoothing
    if smoothing:
        one_hot = one_hot * (1.0 - smoothing) + smoothing / tf.cast(
            tf.shape(logits)[-1], tf.float32
        )
    return tf.nn.softmax_cross_entropy_with_logits(one_hot, logits)


def check_labels(labels, num_classes):
    """An assertion that every label is a class (the library prints its message as the
    run's one-line error)."""
    outside = (labels < 0) | (labels >= num_classes)
    return tf.debugging.Assert(
        ~tf.reduce_any(outside),
        [
            "label",
            tf.boolean_mask(labels, outside)[:1],
            f"is outside the {num_classes} classes (num_classes): labels are 0 to "
            f"{num_classes - 1}; check the records' labels or the labels file",
        ],
    )
