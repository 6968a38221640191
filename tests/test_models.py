"""Mix-and-match models, the custom-gradient op and per-example gradients."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from conftest import plan_for, project_params

from examples.per_example_gradients import per_example_gradients
from library import steps
from project import custom_ops, losses, model, optimizers

ENCODERS = {
    "small_cnn": {},
    "resnet": {"resnet_depth": 8},
    "resnet-preactivation": {"resnet_depth": 8, "resnet_preactivation": True},
}
HEADS = ("classifier", "gated_classifier")


@pytest.mark.parametrize("encoder, head", list(itertools.product(ENCODERS, HEADS)))
def test_every_encoder_and_head_pair_trains_a_step(encoder, head):
    params = project_params(
        encoder=encoder.split("-")[0], head=head, image_size=16, num_classes=3, **ENCODERS[encoder]
    )
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, plan_for(10))
    optimizer.build(net.trainable_variables)
    state = steps.StepState()
    train_step = tf.function(steps.build_train_step(net, losses.loss_fn, optimizer, params, state))
    before = [v.numpy().copy() for v in net.trainable_variables]
    train_step({"image": tf.random.uniform([4, 16, 16, 3])}, tf.constant([0, 1, 2, 0]))
    assert int(optimizer.iterations) == 1 and np.isfinite(float(state.log_loss.result()))
    changed = [
        not np.array_equal(a, b.numpy())
        for a, b in zip(before, net.trainable_variables, strict=True)
    ]
    assert all(changed)  # every variable, the custom-gradient gate included, got a gradient
    assert net.output_shape == (None, 3)


def test_resnet_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        model.model_fn(
            project_params(encoder="resnet", resnet_depth=10, num_classes=2, image_size=8)
        )


def test_custom_gradient_is_the_hand_written_one():
    # Where automatic differentiation works, the hand-written gradient agrees with it...
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
    # ...and where autodiff of the same formula fails, it does not: at x = -100, exp(100)
    # overflows float32 and d/dx 1 / (1 + exp(-x)) is inf * 0 = NaN; y * (1 - y) is 0.
    far = tf.constant([-100.0])
    with tf.GradientTape() as tape:
        tape.watch(far)
        y = custom_ops.custom_sigmoid(far)
    np.testing.assert_array_equal(tape.gradient(y, far).numpy(), [0.0])


def test_the_gated_head_trains_through_the_hand_written_gradient():
    """A gate saturated far off (pre-activation -100) still gives finite gradients."""
    gate = custom_ops.SigmoidGate()
    features = tf.ones([2, 3])
    gate.build(features.shape)
    gate.dense.kernel.assign(tf.fill([3, 3], -100.0 / 3))
    gate.dense.bias.assign(tf.zeros([3]))
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(gate(features))
    grads = tape.gradient(out, gate.trainable_variables)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # The gate's graph holds the op tf.custom_gradient registers its gradient on.
    graph = tf.function(gate).get_concrete_function(tf.TensorSpec([2, 3])).graph
    assert any("_gradient_op_type" in op.node_def.attr for op in graph.get_operations())


def test_per_example_gradients_match_a_batch_size_one_loop():
    params = project_params(image_size=8, num_classes=3, dropout_rate=0.0)
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


def rates(schedule, steps):
    return [float(schedule(step) if callable(schedule) else schedule) for step in steps]


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_warmup_ramps_up_with_every_schedule_and_with_train_steps(lr_schedule):
    from library import schedule

    params = project_params(
        learning_rate=0.1, lr_schedule=lr_schedule, warmup_epochs=1.0, train_steps=100
    )
    plan = schedule.make_plan(params, train_records=10 * params.train_batch_size)
    assert plan.steps_per_epoch == 10 and plan.train_steps == 100  # train_steps wins...
    warm = rates(optimizers.learning_rate_fn(params, plan), range(12))
    cold = rates(optimizers.learning_rate_fn(params.replace(warmup_epochs=0.0), plan), range(12))
    # ...and warm-up still lasts one epoch (10 steps): a ramp of (step + 1) / 10.
    np.testing.assert_allclose(
        warm[:10], [c * (s + 1) / 10 for s, c in enumerate(cold[:10])], rtol=1e-5
    )
    np.testing.assert_allclose(warm[9:], cold[9:], rtol=1e-6)
    assert warm[0] == pytest.approx(0.01, rel=1e-5)
    if lr_schedule == "cosine":
        assert rates(optimizers.learning_rate_fn(params, plan), [100])[0] < 1e-6  # decays to 0


def test_update_scales_and_the_multiplier_scale_each_update_not_the_gradient():
    params = project_params(image_size=8, num_classes=2, dropout_rate=0.0)
    features, labels = {"image": tf.random.uniform([4, 8, 8, 3], seed=2)}, tf.constant([0, 1, 0, 1])

    def moved(scales, multiplier, optimizer):
        keras_seeded = model.model_fn(params)
        keras_seeded.set_weights(reference.get_weights())
        optimizer.build(keras_seeded.trainable_variables)
        state = steps.StepState()
        state.lr_multiplier.assign(multiplier)
        step = tf.function(
            steps.build_train_step(
                keras_seeded, losses.loss_fn, optimizer, params, state,
                update_scales=scales, scale_updates=True,
            )
        )  # fmt: skip
        before = [v.numpy().copy() for v in keras_seeded.trainable_variables]
        step(features, labels)
        return [
            v.numpy() - b for v, b in zip(keras_seeded.trainable_variables, before, strict=True)
        ]

    import keras

    reference = model.model_fn(params)
    count = len(reference.trainable_variables)
    plain = moved([1.0] * count, 1.0, keras.optimizers.SGD(0.1))
    tenth = moved([0.1] * count, 1.0, keras.optimizers.SGD(0.1))
    halved = moved([1.0] * count, 0.5, keras.optimizers.SGD(0.1))
    for full, small, half in zip(plain, tenth, halved, strict=True):
        np.testing.assert_allclose(small, 0.1 * full, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(half, 0.5 * full, rtol=1e-4, atol=1e-7)
    # Under Adam a gradient scale would change nothing; the update scale does.
    adam_full = moved([1.0] * count, 1.0, keras.optimizers.Adam(0.01))
    adam_tenth = moved([0.1] * count, 1.0, keras.optimizers.Adam(0.01))
    np.testing.assert_allclose(adam_tenth[0], 0.1 * adam_full[0], rtol=1e-4, atol=1e-8)


def test_the_evaluation_pass_gives_the_first_batch_outputs_and_block_activations():
    """What the recorders draw and histogram comes from the evaluation pass itself, and that
    pass still counts its first batch in the loss and metrics."""
    import keras

    from library.contract import Functions
    from library.evaluator import Evaluator

    params = project_params(encoder="small_cnn", image_size=16, num_classes=3)
    net = model.model_fn(params)
    functions = Functions(
        model.model_fn,
        losses.loss_fn,
        optimizers.optimizer_fn,
        metrics_fn=model.metrics_fn,
        predictions_fn=model.predictions_fn,
    )
    images = tf.random.stateless_uniform([8, 16, 16, 3], [3, 4])
    labels = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])

    def input_fn():
        return tf.data.Dataset.from_tensor_slices(({"image": images}, labels)).batch(4)

    evaluator = Evaluator(functions, params, tf.distribute.get_strategy())
    results = evaluator.evaluate(net, input_fn)
    outputs = net({"image": images}, training=False)
    expected_loss = float(tf.reduce_mean(losses.loss_fn(labels, outputs, params)))
    assert results["loss"] == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(evaluator.first_outputs, outputs[:4], rtol=1e-5, atol=1e-6)
    assert set(evaluator.activations) == {"block1", "block2", "block3"}
    block2 = keras.Model(net.input, net.get_layer("block2").output)({"image": images[:4]})
    np.testing.assert_allclose(evaluator.activations["block2"], block2, rtol=1e-5, atol=1e-6)
