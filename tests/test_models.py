"""Mix-and-match models, the custom-gradient op and per-example gradients."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from examples.per_example_gradients import per_example_gradients
from library import steps
from library.config import default_params
from project import custom_ops, losses, model, optimizers

ENCODERS = {
    "small_cnn": {},
    "resnet": {"resnet_depth": 8},
    "resnet-preactivation": {"resnet_depth": 8, "resnet_preactivation": True},
}
HEADS = ("classifier", "gated_classifier")


@pytest.mark.parametrize("encoder, head", list(itertools.product(ENCODERS, HEADS)))
def test_every_encoder_and_head_pair_trains_a_step(encoder, head):
    params = default_params(
        encoder=encoder.split("-")[0], head=head, image_size=16, num_classes=3, **ENCODERS[encoder]
    )
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, 10)
    optimizer.build(net.trainable_variables)
    state = steps.StepState()
    train_step = tf.function(steps.build_train_step(net, losses.loss_fn, optimizer, params, state))
    before = [v.numpy().copy() for v in net.trainable_variables]
    train_step({"image": tf.random.uniform([4, 16, 16, 3])}, tf.constant([0, 1, 2, 0]))
    assert int(optimizer.iterations) == 1 and np.isfinite(float(state.train_loss.result()))
    changed = [
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, net.trainable_variables, strict=True)
    ]
    assert all(changed)  # every variable, the custom-gradient gate included, got a gradient
    assert net.output_shape == (None, 3)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        model.model_fn(
            default_params(encoder="resnet", resnet_depth=10, num_classes=2, image_size=8)
        )


def test_custom_gradient_matches_automatic_differentiation():
    x = tf.constant(np.linspace(-8, 8, 41), tf.float32)
    upstream = tf.constant(np.random.default_rng(0).normal(size=41), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        custom = custom_ops.custom_sigmoid(x)
        reference = tf.sigmoid(x)
    np.testing.assert_allclose(custom.numpy(), reference.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        tape.gradient(custom, x, upstream).numpy(),
        tape.gradient(reference, x, upstream).numpy(),
        rtol=1e-5,
        atol=1e-7,
    )


def test_custom_gradient_is_the_one_used():
    calls = []

    @tf.custom_gradient
    def spy(x):
        def grad(upstream):
            calls.append(True)
            return upstream * 2.0

        return tf.identity(x), grad

    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = spy(x)
    assert float(tape.gradient(y, x)) == 2.0 and calls  # our gradient, not identity's 1.0


def test_per_example_gradients_match_a_batch_size_one_loop():
    params = default_params(image_size=8, num_classes=3, dropout_rate=0.0)
    net = model.model_fn(params)
    images = tf.random.uniform([5, 8, 8, 3], seed=1)
    labels = tf.constant([0, 1, 2, 1, 0])
    batched = per_example_gradients(net, losses.loss_fn, {"image": images}, labels, params)
    for i in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(
                losses.loss_fn(labels[i : i + 1], net({"image": images[i : i + 1]}), params)
            )
        for per_example, single in zip(
            batched, tape.gradient(loss, net.trainable_variables), strict=True
        ):
            np.testing.assert_allclose(per_example[i].numpy(), single.numpy(), rtol=1e-4, atol=1e-6)
    # And their sum is the gradient of the summed loss: what a plain tape.gradient gives.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(losses.loss_fn(labels, net({"image": images}), params))
    for per_example, summed in zip(
        batched, tape.gradient(total, net.trainable_variables), strict=True
    ):
        np.testing.assert_allclose(
            tf.reduce_sum(per_example, 0).numpy(), summed.numpy(), rtol=1e-4, atol=1e-5
        )
