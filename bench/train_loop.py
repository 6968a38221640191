"""Training-loop speed: the Estimator against a hand-written tf.function loop and Keras fit.

    .venv/bin/python bench/train_loop.py [--steps 60]

Same model, data (in memory, batch 64) and optimizer for all three, measured in this one run.
The Estimator's figure is a marginal rate (two runs of different lengths, subtracted) so model
building, tracing and the final checkpoint cancel out; the others are timed after a warm-up.
Then the cost of evaluation, checkpoints, summaries and plots in a train_and_evaluate run with
the default intervals (evaluate and checkpoint once per epoch).
"""

import argparse
import os
import tempfile
import time

from common import machine

from library.config import default_params
from library.quiet import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402

from library import schedule  # noqa: E402
from library.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate  # noqa: E402
from project import inputs as project_inputs  # noqa: E402
from project import losses, model, optimizers  # noqa: E402

BATCH = 64
ROUNDS = 2  # the machine is shared: every figure is the best of two measurements


def in_memory(size, count, seed=0):
    images = tf.random.stateless_uniform([count, size, size, 3], [seed, 1])
    labels = tf.random.stateless_uniform([count], [seed, 2], maxval=10, dtype=tf.int32)
    return images, labels


def dataset_fn(images, labels, training=True):
    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
        if training:
            dataset = dataset.repeat()
        return dataset.batch(BATCH, drop_remainder=training).prefetch(tf.data.AUTOTUNE)

    return input_fn


def make_params(work, name, case, **overrides):
    values = {
        "model_dir": os.path.join(work, name, "model"),
        "best_model_dir": os.path.join(work, name, "best"),
        "num_classes": 10,
        "train_batch_size": BATCH,
        "eval_batch_size": BATCH,
        "log_steps": 10_000,
        "progress": "log",
        "dropout_rate": 0.0,
        **case,
    }
    return default_params(**{**values, **overrides})


def estimator_for(params, records):
    return Estimator(
        model.model_fn,
        losses.loss_fn,
        optimizers.optimizer_fn,
        params,
        metrics_fn=model.metrics_fn,
        predictions_fn=model.predictions_fn,
        serving_fn=project_inputs.serving_fn,
        plan=schedule.make_plan(params, records),
        say=lambda line: None,
    )


def recorded_rates(model_dir, tag="steps_per_sec"):
    """The values of a scalar the Estimator wrote to TensorBoard, in step order."""
    values = []
    for path in sorted(tf.io.gfile.glob(os.path.join(model_dir, "train", "events.out.tfevents.*"))):
        for raw in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            for value in event.summary.value:
                if value.tag == tag:
                    values.append((event.step, float(tf.make_ndarray(value.tensor))))
    return [v for _, v in sorted(values)]


def estimator_rate(work, case, data, steps, spe, periods=6):
    """Steps/s as the Estimator itself measures and records it, first (tracing) period dropped.

    The median period of each run, the best of ``ROUNDS`` runs.
    """
    log_every = max(spe, steps // periods // spe * spe)
    best = 0.0
    for attempt in range(ROUNDS):
        name = f"est-{case['encoder']}-{spe}-{attempt}"
        params = make_params(work, name, case, steps_per_execution=spe, log_steps=log_every)
        estimator_for(params, 10**9).train(dataset_fn(*data), log_every * (periods + 1))
        rates = recorded_rates(params.model_dir)[1:]
        best = max(best, sorted(rates)[len(rates) // 2])
    return best


def hand_loop_rate(work, case, data, steps):
    params = make_params(work, "hand", case)
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, steps)

    @tf.function
    def train_step(features, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.loss_fn(labels, net(features, training=True), params))
            loss += tf.add_n(net.losses) if net.losses else 0.0
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    iterator = iter(dataset_fn(*data)())
    for _ in range(5):
        train_step(*next(iterator))
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(steps):
            loss = train_step(*next(iterator))
        float(loss)
        rates.append(steps / (time.perf_counter() - start))
    return max(rates)


def fit_rate(work, case, data, steps):
    params = make_params(work, "fit", case)
    net = model.model_fn(params)
    net.compile(
        optimizer=optimizers.optimizer_fn(params, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    dataset = dataset_fn(*data)()
    net.fit(dataset, steps_per_epoch=5, epochs=1, verbose=0)
    rates = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        net.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        rates.append(steps / (time.perf_counter() - start))
    return max(rates)


def overhead(work, case, data, epochs=4, steps_per_epoch=40):
    """Seconds per evaluation cycle (evaluation, checkpoint, summaries, plots, best export).

    Measured as the extra time of a train_and_evaluate run over the same training with
    nothing but the final checkpoint; returns (share of that run, seconds per evaluation).
    """
    records = steps_per_epoch * BATCH
    eval_data = (data[0][: 2 * BATCH], data[1][: 2 * BATCH])
    total_steps = epochs * steps_per_epoch
    timings = {}
    for name in ("train", "train_and_evaluate", "train", "train_and_evaluate"):
        params = make_params(
            work, f"overhead-{name}-{len(timings)}", case, train_epochs=float(epochs)
        )
        estimator = estimator_for(params, records)
        start = time.perf_counter()
        if name == "train":  # the same steps with nothing but the final checkpoint
            estimator.plan = schedule.Plan(steps_per_epoch, total_steps, 10**9, 10**9, 10**9)
            estimator.train(dataset_fn(*data), total_steps)
        else:
            train_and_evaluate(
                estimator,
                TrainSpec(dataset_fn(*data), total_steps),
                EvalSpec(dataset_fn(*eval_data, training=False)),
            )
        timings.setdefault(name, []).append(time.perf_counter() - start)
    train, full = min(timings["train"]), min(timings["train_and_evaluate"])
    return (full - train) / full, (full - train) / epochs, train / epochs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    cases = {
        "small_cnn 32px": ({"encoder": "small_cnn", "image_size": 32}, args.steps * 2),
        "resnet-8 96px": (
            {"encoder": "resnet", "image_size": 96, "resnet_depth": 8, "resnet_width": 16},
            args.steps // 2,
        ),
    }
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as work:
        for name, (case, steps) in cases.items():
            data = in_memory(case["image_size"], 1024)
            hand = hand_loop_rate(work, case, data, steps)
            fit = fit_rate(work, case, data, steps)
            ours = estimator_rate(work, case, data, steps, spe=1)
            ours_spe = estimator_rate(work, case, data, steps, spe=10)
            print(
                f"{name}: Estimator {ours:.2f} steps/s (steps_per_execution 10: {ours_spe:.2f}), "
                f"hand loop {hand:.2f}, fit {fit:.2f}"
            )
            print(
                f"  Estimator / hand loop {ours / hand:.2f} ({ours_spe / hand:.2f}), "
                f"Estimator / fit {ours / fit:.2f} ({ours_spe / fit:.2f})"
            )
        share, per_eval, epoch = overhead(
            work, cases["small_cnn 32px"][0], in_memory(32, 40 * BATCH)
        )
        print(
            f"evaluation + checkpoints + summaries + plots: {per_eval:.2f} s per evaluation, "
            f"{100 * share:.1f}% of a train_and_evaluate run whose epoch trains in {epoch:.1f} s; "
            f"3% or less once an epoch trains in {per_eval / 0.03:.0f} s or more"
        )


if __name__ == "__main__":
    main()
