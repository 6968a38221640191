"""The distillation's functions. ``model_fn`` builds ``network``: the teacher (a residual
network) or the student (a small CNN); with a ``teacher_checkpoint`` the student's update is
``DistillationStep``: its loss mixes the teacher's softened answers (frozen, restored from its
checkpoint) with the labels (Hinton et al.'s)."""

import os

import keras
import numpy as np
import tensorflow as tf

from library import ConfigError, ModeKeys, TrainingStep, read_records, replica_batch_size

from . import data

SPEC = {
    "pixels": tf.io.FixedLenFeature([data.SIDE * data.SIDE], tf.float32),
    "digit": tf.io.FixedLenFeature([], tf.int64),
}


def input_fn(file_pattern, mode, params, input_context=None):
    training = mode == ModeKeys.TRAIN
    records = read_records(
        file_pattern, training, shuffle_buffer=512, seed=params.random_seed,
        input_context=input_context,
    )  # fmt: skip
    batch = params.train_batch_size if training else params.eval_batch_size
    batches = records.batch(replica_batch_size(batch, input_context), drop_remainder=training)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, SPEC)
        image = tf.reshape(parsed["pixels"], [-1, data.SIDE, data.SIDE, 1])
        return {"image": image}, tf.cast(parsed["digit"], tf.int32)

    return batches.map(parse).prefetch(2)


def resnet(image, width):
    """Three residual stages (the teacher)."""
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(image)
    for stage, strides in enumerate((1, 2, 2)):
        width = width * (2 if stage else 1)
        shortcut = keras.layers.Conv2D(width, 1, strides=strides)(x)
        y = keras.layers.Conv2D(width, 3, strides=strides, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(width, 3, padding="same")(y)
        x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    return keras.layers.GlobalAveragePooling2D()(x)


def small_cnn(image, width):
    """Two strided convolutions, flattened (the student)."""
    x = keras.layers.Conv2D(width // 2, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    return keras.layers.Flatten()(x)


def model_fn(params, teacher=False):
    """``network`` (or, for the distillation, the teacher: a resnet of ``teacher_width``)."""
    image = keras.Input((data.SIDE, data.SIDE, 1), name="image")
    network = "resnet" if teacher else params.network
    width = params.teacher_width if teacher else params.width
    build = resnet if network == "resnet" else small_cnn
    logits = keras.layers.Dense(10, name="logits")(build(image, width))
    return keras.Model({"image": image}, logits, name=network)


def loss_fn(labels, logits, params):
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def optimizer_fn(params, plan):
    return keras.optimizers.Adam(params.learning_rate)


class DistillationStep(TrainingStep):
    """The student's update: ``distill_weight`` of the divergence from the teacher's answers
    softened by ``temperature`` (times its square, so that gradients keep their scale), the
    rest the labels' cross-entropy. The teacher is frozen: it has no optimizer."""

    def build(self, model, params):
        self.student, self.params = model, params
        self.teacher = model_fn(params, teacher=True)
        prefix = params.teacher_checkpoint
        if os.path.isdir(prefix):  # a folder of checkpoints (the teacher's best_model_dir)
            prefix = tf.train.latest_checkpoint(prefix)
        if not prefix or not tf.io.gfile.exists(f"{prefix}.index"):
            raise ConfigError(
                f"teacher_checkpoint: no checkpoint at {params.teacher_checkpoint}; train the "
                "teacher first (--config_set teacher)"
            )
        tf.train.Checkpoint(model=self.teacher).restore(prefix).assert_existing_objects_matched()
        self.teacher.trainable = False

    def create_optimizers(self, params, plan):
        return {"student": optimizer_fn(params, plan)}

    def variables(self):
        return {"student": self.student.trainable_variables}

    def compute(self, features, labels, sample_weight=None):
        temperature, weight = self.params.temperature, self.params.distill_weight
        student = self.student(features, training=True)
        teacher = tf.stop_gradient(self.teacher(features, training=False))
        soft = keras.losses.kl_divergence(
            tf.nn.softmax(teacher / temperature), tf.nn.softmax(student / temperature)
        )
        hard = loss_fn(labels, student, self.params)
        per_example = weight * temperature**2 * soft + (1.0 - weight) * hard
        losses = {"student": tf.nn.compute_average_loss(per_example, sample_weight)}
        logged = {"soft": tf.reduce_mean(soft), "hard": tf.reduce_mean(hard)}
        return losses, {"loss": tf.reduce_mean(per_example), **logged}


def train_step_fn(params):
    """The distillation when a teacher is given; else the library's own update."""
    return DistillationStep() if params.teacher_checkpoint else None


def metrics_fn(params):
    return {"accuracy": keras.metrics.SparseCategoricalAccuracy(name="accuracy")}


def predictions_fn(logits, params):
    probabilities = tf.nn.softmax(logits)
    return {
        "digit": tf.argmax(logits, -1, output_type=tf.int32),
        "probability": tf.reduce_max(probabilities, -1),
    }


def serving_inputs(params):
    return {"pixels": tf.TensorSpec([None, data.SIDE * data.SIDE], tf.float32)}


def serving_fn(inputs, params):
    return {"image": tf.reshape(inputs["pixels"], [-1, data.SIDE, data.SIDE, 1])}


def sample_fn(folder, params):
    """A few dozen digits, as the journey writes them, and a JSON-lines file to predict."""
    data.write_data(folder, count=120)
    rows = np.random.default_rng(0).uniform(size=(4, data.SIDE * data.SIDE))
    path = os.path.join(folder, "digits.jsonl")
    with open(path, "w", encoding="utf-8") as stream:
        stream.writelines(f'{{"pixels": {row.tolist()}}}\n' for row in rows)
    return {
        "train_files": os.path.join(folder, "train-*.tfrecord"),
        "eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "predict_files": path,
        "width": 8,
    }
