"""Training-loop speed: the Estimator against a hand-written tf.function loop and Keras fit.

    .venv/bin/python bench/train_loop.py [--steps 60]

Same model, data (in memory, batch 64) and optimizer for all three, measured in this one run.
The Estimator's figure is a marginal rate (two runs of different lengths, subtracted) so model
building, tracing and the final checkpoint cancel out; the others are timed after a warm-up.
Then the cost of evaluation, checkpoints, summaries and plots in a train_and_evaluate run with
the default intervals (evaluate and checkpoint once per epoch).
"""

import argparse
import collections
import contextlib
import os
import tempfile
import time

from common import machine

from library.base.quiet import import_tensorflow
from library.config import default_params

tf = import_tensorflow()
import keras  # noqa: E402

import project  # noqa: E402
from library.contract import project_functions  # noqa: E402
from library.engine import actions, schedule, trainer  # noqa: E402
from library.engine.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate  # noqa: E402
from library.monitor import bottleneck  # noqa: E402
from library.recorders import best, console, metrics_log, plots, summaries  # noqa: E402
from library.vision import figures  # noqa: E402
from project import losses, model, optimizers  # noqa: E402
from project.hyperparameters import HYPERPARAMETERS, RUN_OPTIONS  # noqa: E402

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
    return default_params(HYPERPARAMETERS, RUN_OPTIONS, **{**values, **overrides})


def estimator_for(params, records):
    """The project's Estimator, as run.py wires it (the image kit's recorders included)."""
    return Estimator.from_functions(
        project_functions(project),
        params,
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


def estimator_rate(work, case, data, steps, spe, periods=6, **overrides):
    """Steps/s as the Estimator itself measures and records it, first (tracing) period dropped.

    The median period of each run, the best of ``ROUNDS`` runs.
    """
    log_every = max(spe, steps // periods // spe * spe)
    best = 0.0
    for attempt in range(ROUNDS):
        extra = "-".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        name = f"est-{case['encoder']}-{spe}-{attempt}{extra}"
        params = make_params(
            work, name, case, steps_per_execution=spe, log_steps=log_every, **overrides
        )
        estimator_for(params, 10**9).train(dataset_fn(*data), log_every * (periods + 1))
        rates = recorded_rates(params.model_dir)[1:]
        best = max(best, sorted(rates)[len(rates) // 2])
    return best


def hand_loop_rate(work, case, data, steps):
    params = make_params(work, "hand", case)
    net = model.model_fn(params)
    optimizer = optimizers.optimizer_fn(params, schedule.make_plan(params, steps * BATCH))

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
        optimizer=optimizers.optimizer_fn(params, schedule.make_plan(params, steps * BATCH)),
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


@contextlib.contextmanager
def timed_actions():
    """Times every call of each action and recorder (and their ``finish``), by class name."""
    timings = collections.defaultdict(list)
    calls = {  # the method the loop calls, by class
        actions.LogProgress: "__call__", actions.SaveCheckpoint: "__call__",
        actions.Evaluate: "__call__", summaries.WriteEvalSummaries: "on_evaluation",
        metrics_log.AppendMetrics: "on_evaluation", plots.DrawPlots: "on_evaluation",
        best.KeepBest: "on_evaluation", figures.ClassificationFigures: "on_evaluation",
        figures.ImageSummaries: "on_evaluation", console.SayEvaluation: "on_evaluation",
        # PreciseBN, inside SaveCheckpoint: forward passes with the step's weights.
        trainer._StatisticsRefresher: "__call__",
    }  # fmt: skip
    saved = {
        cls: (getattr(cls, method), getattr(cls, "finish", None)) for cls, method in calls.items()
    }

    def timing(name, method):
        def wrapper(self, *args):
            start = time.perf_counter()
            try:
                return method(self, *args)
            finally:
                timings[name].append(time.perf_counter() - start)

        return wrapper

    for cls, (call, finish) in saved.items():
        setattr(cls, calls[cls], timing(cls.__name__, call))
        if finish is not None:
            cls.finish = timing(f"{cls.__name__}.finish", finish)
    # The input check, once per run inside a LogProgress call: a diagnostic, not work after
    # evaluations.
    measure = bottleneck.measure
    bottleneck.measure = lambda *args: timing("InputCheck", lambda _, *a: measure(*a))(None, *args)
    try:
        yield timings
    finally:
        bottleneck.measure = measure
        for cls, (call, finish) in saved.items():
            setattr(cls, calls[cls], call)
            if finish is not None:
                cls.finish = finish


def overhead(work, case, data, epochs, steps_per_epoch):
    """What evaluating once per epoch costs a train_and_evaluate run (the default intervals).

    The same training is run with nothing but the final checkpoint, and with evaluations,
    checkpoints, summaries, metrics.jsonl, plots and the best checkpoint (its SavedModel
    written at the end); best of two each, in turns. Each action's own time is measured too.
    """
    records = steps_per_epoch * BATCH
    eval_data = (data[0][: 2 * BATCH], data[1][: 2 * BATCH])
    total_steps = epochs * steps_per_epoch
    runs, breakdown = collections.defaultdict(list), {}
    for name in ("train", "train_and_evaluate", "train", "train_and_evaluate"):
        params = make_params(work, f"overhead-{name}-{len(runs[name])}", case)
        estimator = estimator_for(params, records)
        start = time.perf_counter()
        if name == "train":  # the same steps with nothing but the final checkpoint
            estimator.plan = schedule.Plan(steps_per_epoch, total_steps, 10**9, 10**9, 10**9)
            estimator.train(dataset_fn(*data), total_steps)
        else:
            with timed_actions() as timings:
                train_and_evaluate(
                    estimator,
                    TrainSpec(dataset_fn(*data), total_steps),
                    EvalSpec(dataset_fn(*eval_data, training=False)),
                )
        runs[name].append(time.perf_counter() - start)
        print(f"  {name}: {runs[name][-1]:.1f} s", flush=True)
        if name != "train" and runs[name][-1] == min(runs[name]):
            breakdown = dict(timings)
            waited = waited_for(timings, runs[name][-1])
    train, full = min(runs["train"]), min(runs["train_and_evaluate"])
    after = sum(median(breakdown.get(n, [0.0])) for n in ("SaveCheckpoint", *RECORDERS))
    evaluate = median(breakdown["Evaluate"]) - sum(
        median(breakdown.get(n, [0.0])) for n in RECORDERS
    )
    end = sum(
        sum(v) for k, v in breakdown.items() if k.endswith(".finish") and k != "Evaluate.finish"
    )
    return {
        "epoch": train / epochs,
        "share": (full - train) / full,
        **waited,
        "per_evaluation": (full - train - end) / epochs,
        "after_evaluation": after,
        "evaluation_pass": evaluate,
        "end_of_run": end,
        "breakdown": {k: median(v) for k, v in breakdown.items()},
    }


def waited_for(timings, run_seconds):
    """Shares of the run spent in what the loop called between chunks (the train actions,
    which call the recorders inside their own time): of that, the computation with the
    step's weights (the evaluation passes and PreciseBN's passes), which cannot run beside
    the step, and the rest, the work after evaluations; and the wait at the end of the run
    for the background work of the last evaluation (the actions' ``finish``)."""
    check = sum(timings.get("InputCheck", []))
    during = sum(sum(v) for k, v in timings.items() if k in MAIN_THREAD) - check
    end = sum(sum(timings.get(f"{k}.finish", [])) for k in MAIN_THREAD)  # recorders' inside
    passes = sum(timings["Evaluate"]) - sum(sum(timings.get(k, [])) for k in RECORDERS)
    computation = passes + sum(timings["_StatisticsRefresher"])
    return {
        "waited": (during + end) / run_seconds,
        "waited_computation": computation / run_seconds,
        "waited_work": (during - computation) / run_seconds,
        "waited_end": end / run_seconds,
        "input_check": check,
    }


MAIN_THREAD = ("LogProgress", "SaveCheckpoint", "Evaluate")
RECORDERS = (
    "WriteEvalSummaries", "KeepBest", "AppendMetrics", "DrawPlots", "SayEvaluation",
    "ClassificationFigures", "ImageSummaries",
)  # fmt: skip


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--epoch_steps", type=int, default=160, help="steps per epoch (overhead)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the overhead runs")
    parser.add_argument("--overhead_only", action="store_true")
    args = parser.parse_args()
    cases = {
        "small_cnn 32px": ({"encoder": "small_cnn", "image_size": 32}, args.steps * 2),
        "resnet-8 96px": (
            {"encoder": "resnet", "image_size": 96, "resnet_depth": 8, "resnet_width": 16},
            args.steps // 2,
        ),
    }
    print(f"machine: {machine()}")
    default_rates = {}
    with tempfile.TemporaryDirectory() as work:
        for name, (case, steps) in [] if args.overhead_only else cases.items():
            data = in_memory(case["image_size"], 1024)
            hand = hand_loop_rate(work, case, data, steps)
            fit = fit_rate(work, case, data, steps)
            ours = estimator_rate(work, case, data, steps, spe=1)
            ours_spe = estimator_rate(work, case, data, steps, spe=10)
            default_rates[name] = (ours, data, steps)
            print(
                f"{name}: Estimator {ours:.2f} steps/s (steps_per_execution 10: {ours_spe:.2f}), "
                f"hand loop {hand:.2f}, fit {fit:.2f}"
            )
            print(
                f"  Estimator / hand loop {ours / hand:.2f} ({ours_spe / hand:.2f}), "
                f"Estimator / fit {ours / fit:.2f} ({ours_spe / fit:.2f})"
            )
        cost = overhead(
            work,
            cases["small_cnn 32px"][0],
            in_memory(32, 40 * BATCH),
            args.epochs,
            args.epoch_steps,
        )
        print(
            f"train_and_evaluate, {args.epoch_steps}-step epochs of {cost['epoch']:.1f} s, "
            f"evaluating each epoch: {100 * cost['share']:.2f}% of the run over training alone"
        )
        print(
            f"  per evaluation {cost['per_evaluation']:.3f} s: the evaluation pass "
            f"{cost['evaluation_pass']:.3f} s, the work after it (checkpoint, summaries, "
            f"metrics.jsonl, plots, best checkpoint) {cost['after_evaluation']:.3f} s on the step's "
            f"path ({100 * cost['after_evaluation'] / cost['epoch']:.2f}% of an epoch)"
        )
        print(f"  once at the end (best SavedModel, background work): {cost['end_of_run']:.2f} s")
        print(
            f"  in-run shares (the difference of two runs above drifts with the shared machine): "
            f"the training step waited {100 * cost['waited_work']:.2f}% of the run for the work "
            "after evaluations (checkpoint writes, summaries, metrics.jsonl, plots, best "
            f"checkpoint; target <= 1%) and {100 * cost['waited_computation']:.2f}% for "
            "computation with its weights (evaluation and PreciseBN passes, their first "
            f"tracing included); the run waited {100 * cost['waited_end']:.2f}% at its end for "
            "the last evaluation's background work (best SavedModel, figures, summaries); the "
            f"input check, once a run, took {cost['input_check']:.2f} s"
        )
        print(
            "  median seconds per call: "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(cost["breakdown"].items()))
        )
        if "small_cnn 32px" in default_rates:  # last: op determinism holds for the process
            ours, data, steps = default_rates["small_cnn 32px"]
            exact = estimator_rate(
                work, cases["small_cnn 32px"][0], data, steps, spe=1, deterministic=True
            )
            print(
                f"small_cnn 32px, deterministic: true: Estimator {exact:.2f} steps/s, "
                f"{exact / ours:.2f} of the default (in-memory input: the ops' cost alone; "
                "bench/input_pipeline.py has the input's)"
            )


if __name__ == "__main__":
    main()
