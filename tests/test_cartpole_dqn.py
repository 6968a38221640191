"""The CartPole DQN example: its pieces and a few iterations of training (the full run that
reaches an average length of 195 is timed in BENCHMARKS.md)."""

import numpy as np
import tensorflow as tf

from examples import cartpole_dqn as dqn


def test_replay_buffer_feeds_batches_through_from_generator():
    buffer = dqn.ReplayBuffer(size=8, observation_size=4, seed=0)
    for i in range(10):  # wraps around: the oldest two are overwritten
        buffer.add(np.full(4, i), i % 2, 1.0, np.full(4, i + 1), float(i == 9))
    dataset = dqn.experience_dataset(buffer, batch_size=5, observation_size=4)
    observations, actions, rewards, next_observations, dones = next(iter(dataset))
    assert observations.shape == (5, 4) and actions.dtype == tf.int32
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


def test_a_few_training_iterations_run_and_learn_something():
    hp = dqn.Hyperparameters(
        warmup_steps=64, batch_size=32, buffer_size=1000, target_update_steps=50
    )
    result = dqn.train(hp, max_steps=300)
    assert result["steps"] == 300 and result["episodes"] > 0
    assert len(result["losses"]) == 300 - 64 + 1 and np.all(np.isfinite(result["losses"]))
    lengths = dqn.greedy_lengths(result["online"], episodes=2, seed=0)
    assert len(lengths) == 2 and all(1 <= n <= 500 for n in lengths)
