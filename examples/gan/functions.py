"""The GAN's functions: the generator is ``model_fn`` (what the library evaluates and
exports), the discriminator and both optimizers belong to the step (``GANStep``).

Training batches are ``({"image": real, "noise": z}, real)``; the noise is drawn in the
input pipeline with stateless ops from the pipeline's seeds, so a resumed run draws what an
uninterrupted one does. Evaluation batches are ``({"noise": z}, real)`` with fixed noise;
its loss, per generated digit, is its squared distance to the nearest real digit of the
batch (lower: closer to real digits).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from library import (
    ModeKeys,
    Recorder,
    TrainingStep,
    random_seeds,
    read_records,
    replica_batch_size,
    save_figure,
)

from . import data

SPEC = {"pixels": tf.io.FixedLenFeature([data.SIDE * data.SIDE], tf.float32)}


def _images(serialized):
    pixels = tf.io.parse_example(serialized, SPEC)["pixels"]
    return tf.reshape(pixels, [-1, data.SIDE, data.SIDE, 1])


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    records = read_records(
        file_pattern, training, shuffle_buffer=512, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batch = params.train_batch_size if training else params.eval_batch_size
    batches = records.batch(replica_batch_size(batch, input_context), drop_remainder=training)
    seeds = random_seeds(params.random_seed + (0 if training else 1))

    def noisy(serialized, seed):
        real = _images(serialized)
        noise = tf.random.stateless_normal([tf.shape(real)[0], params.noise_dim], seed)
        features = {"image": real, "noise": noise} if training else {"noise": noise}
        return features, real

    return tf.data.Dataset.zip(batches, seeds).map(noisy).prefetch(2)


def model_fn(params):
    """The generator: noise to a 16-px digit in [-1, 1]."""
    noise = keras.Input((params.noise_dim,), name="noise")
    x = keras.layers.Dense(4 * 4 * 2 * params.width, activation="relu")(noise)
    x = keras.layers.Reshape((4, 4, 2 * params.width))(x)
    x = keras.layers.Conv2DTranspose(params.width, 4, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Conv2DTranspose(params.width // 2, 4, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    image = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name="image")(x)
    return keras.Model({"noise": noise}, image, name="generator")


def discriminator_fn(params):
    """A 16-px digit to one logit: real (high) or generated."""
    image = keras.Input((data.SIDE, data.SIDE, 1), name="image")
    x = keras.layers.Conv2D(params.width, 4, strides=2, padding="same")(image)
    x = keras.layers.LeakyReLU(0.2)(x)
    x = keras.layers.Conv2D(2 * params.width, 4, strides=2, padding="same")(x)
    x = keras.layers.LeakyReLU(0.2)(x)
    logit = keras.layers.Dense(1)(keras.layers.Flatten()(x))
    return keras.Model(image, logit, name="discriminator")


class GANStep(TrainingStep):
    """Both networks' losses from one forward pass; each optimizer updates its network."""

    def build(self, model, params):
        self.generator, self.discriminator = model, discriminator_fn(params)

    def create_optimizers(self, params, plan):
        return {
            "generator": keras.optimizers.Adam(params.learning_rate, beta_1=params.adam_beta1),
            "discriminator": keras.optimizers.Adam(
                params.discriminator_learning_rate, beta_1=params.adam_beta1
            ),
        }

    def variables(self):
        return {
            "generator": self.generator.trainable_variables,
            "discriminator": self.discriminator.trainable_variables,
        }

    def compute(self, features, labels, sample_weight=None):
        fake = self.generator({"noise": features["noise"]}, training=True)
        real_logit = self.discriminator(features["image"], training=True)
        fake_logit = self.discriminator(fake, training=True)
        entropy = keras.losses.binary_crossentropy
        d_loss = entropy(tf.ones_like(real_logit), real_logit, from_logits=True)
        d_loss += entropy(tf.zeros_like(fake_logit), fake_logit, from_logits=True)
        g_loss = entropy(tf.ones_like(fake_logit), fake_logit, from_logits=True)
        losses = {
            "generator": tf.nn.compute_average_loss(g_loss),
            "discriminator": tf.nn.compute_average_loss(d_loss),
        }
        logged = {"generator": tf.reduce_mean(g_loss), "discriminator": tf.reduce_mean(d_loss)}
        return losses, logged


def train_step_fn(params):
    return GANStep()


def loss_fn(labels, generated, params):
    """Each generated digit's mean squared distance to the nearest real one of the batch."""
    fake = tf.reshape(tf.cast(generated, tf.float32), [tf.shape(generated)[0], -1])
    real = tf.reshape(labels, [tf.shape(labels)[0], -1])
    squared = tf.reduce_sum(fake**2, 1)[:, None] - 2 * fake @ tf.transpose(real)
    squared += tf.reduce_sum(real**2, 1)[None, :]
    return tf.reduce_min(squared, axis=1) / tf.cast(tf.shape(fake)[1], tf.float32)


def to_uint8(images):
    return tf.cast(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0), tf.uint8)


def predictions_fn(generated, params):
    """Each generated digit as a PNG (predict writes one file per example)."""
    pictures = to_uint8(tf.cast(generated, tf.float32))
    return {"image": tf.map_fn(tf.io.encode_png, pictures, fn_output_signature=tf.string)}


def serving_inputs(params):
    return {"noise": tf.TensorSpec([None, params.noise_dim], tf.float32)}


def serving_fn(inputs, params):
    return {"noise": inputs["noise"]}


class Samples(Recorder):
    """The digits the generator makes from the evaluation's fixed noise: a picture in
    TensorBoard (eval/samples) and ``samples.png`` in the output folder, each evaluation."""

    def start(self, run):
        self.writer, self.path = run.writers.eval, os.path.join(run.output_dir, "samples.png")

    def on_evaluation(self, evaluation):
        generated = np.asarray(evaluation.first_outputs)[:16]
        pictures = np.asarray(to_uint8(tf.constant(generated, tf.float32)))
        with self.writer.as_default(step=evaluation.step):
            tf.summary.image("samples", pictures, max_outputs=16)
        save_figure(grid(pictures[..., 0], f"step {evaluation.step}"), self.path)


def grid(pictures, title):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 8, figsize=(8, 2.3))
    for axis, picture in zip(axes.ravel(), pictures, strict=False):
        axis.imshow(picture, cmap="gray_r", vmin=0, vmax=255)
        axis.axis("off")
    figure.suptitle(f"generated digits, {title}")
    return figure


def callbacks_fn(params):
    return [Samples()]


def sample_fn(folder, params):
    """A few dozen digits, as the journey writes them, and noise to predict from."""
    counts = data.write_data(folder, count=96)
    noise = np.random.default_rng(0).normal(size=(4, params.noise_dim))
    path = os.path.join(folder, "noise.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(f'{{"noise": {row.tolist()}}}\n' for row in noise)
    assert counts["train"] > 0
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": path,
        "width": 8,
    }
