"""Per-example gradients with ``tf.vectorized_map``.

The gradient of a summed (or averaged) loss is the sum of the per-example gradients, so
``tape.gradient`` on a batch loss loses them. Differential privacy, influence functions and
gradient-noise diagnostics need them one by one: ``vectorized_map`` computes the gradient of
each example's loss as if the batch size were 1, in one vectorised graph instead of a loop.

    python -m examples.per_example_gradients
"""

import tensorflow as tf


def per_example_gradients(model, loss_fn, features, labels, params):
    """One gradient per example: a list, per trainable variable, of ``[batch, *shape]``."""

    def one(example):
        feature, label = example
        with tf.GradientTape() as tape:
            inputs = tf.nest.map_structure(lambda t: t[None], feature)
            loss = tf.reduce_sum(loss_fn(label[None], model(inputs, training=False), params))
        return tape.gradient(loss, model.trainable_variables)

    return tf.vectorized_map(one, (features, labels))


def main():
    from library import default_params
    from project import losses, model
    from project.hyperparameters import HYPERPARAMETERS, RUN_OPTIONS

    params = default_params(
        HYPERPARAMETERS, RUN_OPTIONS, image_size=8, num_classes=3, dropout_rate=0.0
    )
    net = model.model_fn(params)
    features = {"image": tf.random.uniform([4, 8, 8, 3])}
    labels = tf.constant([0, 1, 2, 1])
    grads = per_example_gradients(net, losses.loss_fn, features, labels, params)
    norms = tf.sqrt(tf.add_n([tf.reduce_sum(tf.reshape(g, [4, -1]) ** 2, axis=1) for g in grads]))
    print("per-example gradient norms:", norms.numpy())


if __name__ == "__main__":
    main()
