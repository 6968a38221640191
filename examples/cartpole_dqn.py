"""CartPole with a deep Q-network, experience fed through ``Dataset.from_generator``.

The seed's reinforcement-learning example, in the scaffold's style: the network, the loss and
the optimizer are separate functions; experience reaches the train step through tf.data like
any other input. Double DQN with a target network and the Huber loss.

    pip install -r requirements-examples.txt   # gymnasium (pure Python, no download)
    python -m examples.cartpole_dqn            # trains until 100 greedy episodes average >= 195
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 50_000
    warmup_steps: int = 1_000
    target_update_steps: int = 500
    epsilon_decay_steps: int = 10_000
    final_epsilon: float = 0.02
    hidden_units: int = 64
    seed: int = 0


def q_network(hp: Hyperparameters, observation_size: int, actions: int) -> keras.Model:
    """One Q-value per action for an observation."""
    inputs = keras.Input((observation_size,))
    x = keras.layers.Dense(hp.hidden_units, activation="relu")(inputs)
    x = keras.layers.Dense(hp.hidden_units, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(actions)(x))


def loss_fn(q_values, actions, targets):
    """Huber loss between the chosen action's Q-value and its target, per example."""
    chosen = tf.gather(q_values, actions, batch_dims=1)
    return keras.losses.Huber(reduction=None)(targets[:, None], chosen[:, None])


def optimizer_fn(hp: Hyperparameters) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(hp.learning_rate)


class ReplayBuffer:
    """A fixed-size ring of transitions, sampled uniformly."""

    def __init__(self, size: int, observation_size: int, seed: int):
        self.observations = np.zeros((size, observation_size), np.float32)
        self.next_observations = np.zeros((size, observation_size), np.float32)
        self.actions = np.zeros(size, np.int32)
        self.rewards = np.zeros(size, np.float32)
        self.dones = np.zeros(size, np.float32)
        self.size, self.count, self.rng = size, 0, np.random.default_rng(seed)

    def add(self, observation, action, reward, next_observation, done):
        i = self.count % self.size
        self.observations[i], self.actions[i], self.rewards[i] = observation, action, reward
        self.next_observations[i], self.dones[i] = next_observation, done
        self.count += 1

    def batches(self, batch_size: int):
        """Endless minibatches: the generator behind ``Dataset.from_generator``."""
        while True:
            index = self.rng.integers(0, min(self.count, self.size), batch_size)
            yield (
                self.observations[index],
                self.actions[index],
                self.rewards[index],
                self.next_observations[index],
                self.dones[index],
            )


def experience_dataset(
    buffer: ReplayBuffer, batch_size: int, observation_size: int
) -> tf.data.Dataset:
    spec = tf.TensorSpec
    return tf.data.Dataset.from_generator(
        lambda: buffer.batches(batch_size),
        output_signature=(
            spec([batch_size, observation_size], tf.float32),
            spec([batch_size], tf.int32),
            spec([batch_size], tf.float32),
            spec([batch_size, observation_size], tf.float32),
            spec([batch_size], tf.float32),
        ),
    )


def build_train_step(online, target, optimizer, hp: Hyperparameters):
    @tf.function
    def train_step(observations, actions, rewards, next_observations, dones):
        # Double DQN: the online network picks the next action, the target network values it.
        next_actions = tf.argmax(online(next_observations), axis=1, output_type=tf.int32)
        next_values = tf.gather(target(next_observations), next_actions, batch_dims=1)
        targets = rewards + hp.gamma * (1.0 - dones) * next_values
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(online(observations), actions, tf.stop_gradient(targets)))
        grads = tape.gradient(loss, online.trainable_variables)
        optimizer.apply_gradients(zip(grads, online.trainable_variables, strict=True))
        return loss

    return train_step


def greedy_lengths(online, episodes: int, seed: int) -> list[int]:
    """Episode lengths of the greedy policy (CartPole-v1 stops at 500)."""
    act = tf.function(lambda o: tf.argmax(online(o[None])[0], output_type=tf.int32))
    env = gym.make("CartPole-v1")
    lengths = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        done, length = False, 0
        while not done:
            observation, _, terminated, truncated, _ = env.step(
                int(act(observation.astype(np.float32)))
            )
            done, length = terminated or truncated, length + 1
        lengths.append(length)
    return lengths


def train(hp: Hyperparameters, max_steps: int, check_every: int = 0, say=print) -> dict:
    """Trains for up to ``max_steps`` environment steps; stops early once solved.

    Every ``check_every`` steps (0: never) 20 greedy episodes are played; when they average
    195 or more, 100 more decide whether the task is solved (average length >= 195).
    """
    keras.utils.set_random_seed(hp.seed)
    env = gym.make("CartPole-v1")
    observation_size, actions = int(env.observation_space.shape[0]), int(env.action_space.n)
    online, target = (
        q_network(hp, observation_size, actions),
        q_network(hp, observation_size, actions),
    )
    target.set_weights(online.get_weights())
    optimizer = optimizer_fn(hp)
    train_step = build_train_step(online, target, optimizer, hp)
    act = tf.function(lambda o: tf.argmax(online(o[None])[0], output_type=tf.int32))
    buffer = ReplayBuffer(hp.buffer_size, observation_size, hp.seed)
    experience = iter(experience_dataset(buffer, hp.batch_size, observation_size))
    rng = np.random.default_rng(hp.seed)
    observation, _ = env.reset(seed=hp.seed)
    result = {"steps": 0, "episodes": 0, "losses": [], "solved": False, "average_length": None}
    for step in range(1, max_steps + 1):
        epsilon = max(hp.final_epsilon, 1.0 - step / hp.epsilon_decay_steps)
        action = int(rng.integers(actions)) if rng.random() < epsilon else int(act(observation))
        next_observation, reward, terminated, truncated, _ = env.step(action)
        buffer.add(observation, action, reward, next_observation, float(terminated))
        observation = next_observation
        if terminated or truncated:
            observation, _ = env.reset()
            result["episodes"] += 1
        if step >= hp.warmup_steps:
            result["losses"].append(float(train_step(*next(experience))))
        if step % hp.target_update_steps == 0:
            target.set_weights(online.get_weights())
        result["steps"] = step
        if check_every and step % check_every == 0 and step >= hp.warmup_steps:
            quick = float(np.mean(greedy_lengths(online, 20, seed=10_000 + step)))
            say(f"step {step}: {result['episodes']} episodes, greedy average length {quick:.0f}")
            if quick >= 195:
                full = float(np.mean(greedy_lengths(online, 100, seed=1_000_000)))
                say(f"step {step}: average length over 100 greedy episodes {full:.1f}")
                if full >= 195:
                    result.update(solved=True, average_length=full)
                    break
    result["online"] = online
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_steps", type=int, default=100_000)
    parser.add_argument("--check_every", type=int, default=2_000)
    args = parser.parse_args()
    start = time.perf_counter()
    result = train(Hyperparameters(), args.max_steps, args.check_every)
    seconds = time.perf_counter() - start
    verdict = "solved" if result["solved"] else "not solved"
    print(
        f"{verdict}: average episode length {result['average_length'] or 0:.1f} over 100 greedy "
        f"episodes after {result['steps']} steps ({result['episodes']} episodes) in {seconds:.0f} s"
    )
    return 0 if result["solved"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
