"""The examples: the CartPole DQN's pieces and a few iterations of its training (the full run
that reaches an average length of 195 is timed in BENCHMARKS.md); per-example gradients."""

import numpy as np
import tensorflow as tf

from examples import cartpole_dqn as dqn
from examples.per_example_gradients import per_example_gradients


def test_replay_buffer_feeds_batches_through_from_generator():
    buffer = dqn.ReplayBuffer(size=8, observation_size=4, seed=0)
    for i in range(10):  # wraps around: the oldest two are overwritten
        buffer.add(np.full(4, i), i % 2, 1.0, np.full(4, i + 1), float(i == 9))
    dataset = dqn.experience_dataset(buffer, batch_size=5, observation_size=4)
    observations, actions, rewards, next_observations, dones = next(iter(dataset))
    assert observations.shape == (5, 4) and actions.dtype == tf.int32
    # Each field comes from the same transition: the action added with observation i was i % 2.
    np.testing.assert_array_equal(actions.numpy(), observations[:, 0].numpy().astype(int) % 2)
    np.testing.assert_array_equal(rewards.numpy(), np.ones(5, np.float32))
    assert set(observations[:, 0].numpy()) <= set(range(2, 10))
    np.testing.assert_array_equal(next_observations.numpy(), observations.numpy() + 1)
    np.testing.assert_array_equal(
        dones.numpy(), (observations[:, 0].numpy() == 9).astype(np.float32)
    )


def test_loss_is_the_huber_loss_of_the_chosen_action():
    q_values = tf.constant([[1.0, 5.0], [2.0, -1.0]])
    losses = dqn.loss_fn(q_values, tf.constant([1, 0]), tf.constant([5.5, 0.0]))
    np.testing.assert_allclose(losses.numpy(), [0.5 * 0.5**2, 2.0 - 0.5], rtol=1e-6)


def test_a_short_training_learns_to_balance_longer_than_chance():
    hp = dqn.Hyperparameters(
        warmup_steps=200,
        batch_size=32,
        buffer_size=5000,
        target_update_steps=100,
        epsilon_decay_steps=2000,
    )
    result = dqn.train(hp, max_steps=3000)
    assert result["steps"] == 3000 and result["episodes"] > 0
    assert len(result["losses"]) == 3000 - 200 + 1 and np.all(np.isfinite(result["losses"]))
    untrained = dqn.q_network(hp, observation_size=4, actions=2)
    before = np.mean(dqn.greedy_lengths(untrained, episodes=10, seed=5))
    after = np.mean(dqn.greedy_lengths(result["online"], episodes=10, seed=5))
    # A random policy balances about 22 steps, a constant one about 10; 3000 steps of DQN
    # reach 100-160 here (the full run that averages 195 is timed in BENCHMARKS.md).
    assert after >= 60 and after >= 3 * before, (before, after)


def small_model():
    """Convolution, batch norm and a dense layer: variables of every kind of shape."""
    import keras

    images = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3)(images)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(x))
    return keras.Model({"image": images}, keras.layers.Dense(3)(x))


def loss_fn(labels, logits, params):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)


def test_per_example_gradients_match_a_batch_size_one_loop():
    params = None
    net = small_model()
    images = tf.random.uniform([5, 8, 8, 3], seed=1)
    labels = tf.constant([0, 1, 2, 1, 0])
    batched = per_example_gradients(net, loss_fn, {"image": images}, labels, params)
    for i in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(
                loss_fn(labels[i : i + 1], net({"image": images[i : i + 1]}), params)
            )
        for per_example, single in zip(
            batched, tape.gradient(loss, net.trainable_variables), strict=True
        ):
            np.testing.assert_allclose(per_example[i].numpy(), single.numpy(), rtol=1e-4, atol=1e-6)
    # And their sum is the gradient of the summed loss: what a plain tape.gradient gives.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss_fn(labels, net({"image": images}), params))
    for per_example, summed in zip(
        batched, tape.gradient(total, net.trainable_variables), strict=True
    ):
        np.testing.assert_allclose(
            tf.reduce_sum(per_example, 0).numpy(), summed.numpy(), rtol=1e-4, atol=1e-5
        )
