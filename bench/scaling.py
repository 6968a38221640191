"""Scaling: float32 against mixed_bfloat16 and mixed_float16, XLA on and off, and one process
against two MultiWorkerMirrored workers, all measured in this one run.

    .venv/bin/python bench/scaling.py [--steps 150] [--float16_steps 4]

The default small CNN (32 px, global batch 64) trains on in-memory images whose class is a
faint pattern under noise, so each run also says what it learned (accuracy on held-out
images). Steps/s is what the Estimator itself records (the median logging period, the first
one, with tracing, dropped; float32 and bf16: the best of three runs, taken in turns). As each
case is a process of its own, the machine's drift between processes weighs on those ratios; the
library's train loop is also measured with a float32 and a bf16 model in one process, in
alternating rounds. The two workers share this machine's cores with each other: their figure
is the per-step cost of the collectives on one host, not what two machines would give.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

from common import machine

from library.config import default_params
from project.hyperparameters import HYPERPARAMETERS, RUN_OPTIONS

BATCH = 64
ROUNDS = 3
HERE = os.path.dirname(os.path.abspath(__file__))

# One run, in a process of its own: a multi-worker strategy must be created before any
# other TensorFlow work, and each precision starts from the same clean slate.
RUN = r"""
import json, os, sys
sys.path.insert(0, {here!r})
import scaling
case = json.loads(sys.argv[1])
function = scaling.alternating_rates if case.get("alternating") else scaling.run_once
print("RESULT " + json.dumps(function(case)))
"""


def make_params(work, overrides):
    values = {
        "model_dir": os.path.join(work, "model"),
        "best_model_dir": os.path.join(work, "best"),
        "num_classes": 10,
        "encoder": "small_cnn",
        "image_size": 32,
        "train_batch_size": BATCH,
        "eval_batch_size": 256,
        "progress": "log",
        **overrides,
    }
    return default_params(HYPERPARAMETERS, RUN_OPTIONS, **values)


def run_once(case):
    """Trains ``case["steps"]`` steps; returns the recorded steps/s and the accuracy."""
    from library.engine import distribute, schedule
    from library.engine.estimator import Estimator, EvalSpec, TrainSpec, train_and_evaluate

    params = make_params(case["work"], case["params"])
    strategy = distribute.create_strategy(params)  # first: multi_worker needs it so
    import tensorflow as tf
    from train_loop import recorded_rates

    from project import losses, model, optimizers

    def data(count, seed):
        labels = tf.random.stateless_uniform([count], [seed, 1], maxval=10, dtype=tf.int32)
        patterns = tf.random.stateless_uniform([10, 32, 32, 3], [7, 7])
        noise = tf.random.stateless_uniform([count, 32, 32, 3], [seed, 2])
        return 0.7 * noise + 0.3 * tf.gather(patterns, labels), labels

    def input_fn(images, labels, training):
        def make(input_context=None):
            dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
            if input_context is not None and input_context.num_input_pipelines > 1:
                dataset = dataset.shard(
                    input_context.num_input_pipelines, input_context.input_pipeline_id
                )
            dataset = dataset.repeat().shuffle(1024, seed=1) if training else dataset
            batch = input_context.get_per_replica_batch_size(BATCH) if input_context else BATCH
            return dataset.batch(batch if training else 256, drop_remainder=training).prefetch(2)

        return make

    estimator = Estimator(
        model.model_fn,
        losses.loss_fn,
        optimizers.optimizer_fn,
        params,
        metrics_fn=model.metrics_fn,
        plan=schedule.make_plan(params, 2048),
        strategy=strategy,
        say=lambda line: None,
    )
    train_and_evaluate(
        estimator,
        TrainSpec(input_fn(*data(2048, 1), True), case["steps"]),
        EvalSpec(input_fn(*data(512, 2), False)),
    )
    rates = recorded_rates(params.model_dir)[1:]
    accuracy = None
    if distribute.is_chief(strategy):
        with open(os.path.join(params.model_dir, "metrics.jsonl")) as stream:
            accuracy = json.loads(stream.read().splitlines()[-1])["eval_accuracy"]
    return {"steps_per_sec": sorted(rates)[len(rates) // 2], "accuracy": accuracy}


def alternating_rates(case):
    """Steps/s of the library's train loop (``steps.build_train_step`` in
    ``build_train_loop``, as the Estimator runs it) for a float32 and a mixed_bfloat16 model
    in one process, in alternating rounds: the machine's drift between processes, tens of
    percent here, then weighs on both alike. The best round of each."""
    import time

    import tensorflow as tf

    from library.engine import schedule, steps, trainer
    from project import losses, model, optimizers

    strategy = tf.distribute.get_strategy()
    images = tf.random.stateless_uniform([BATCH * 8, 32, 32, 3], [1, 2])
    labels = tf.random.stateless_uniform([BATCH * 8], [1, 1], maxval=10, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
    dataset = dataset.repeat().batch(BATCH, drop_remainder=True).prefetch(2)
    loops = {}
    for policy in ("none", "mixed_bfloat16"):
        params = make_params(case["work"], {"mixed_precision": policy})
        with trainer.precision(policy):
            net = model.model_fn(params)
        optimizer = optimizers.optimizer_fn(params, schedule.make_plan(params, BATCH * 100))
        state = steps.StepState()
        step = steps.one_model_step(net, losses.loss_fn, optimizer, params, state)
        loops[policy] = (steps.build_train_loop(strategy, step, state), iter(dataset))
    chunk = tf.constant(case["steps"], tf.int64)
    rates = {policy: [] for policy in loops}
    for round_ in range(case["rounds"] + 1):  # the first round traces and warms up
        for policy, (loop, iterator) in loops.items():
            start = time.perf_counter()
            loop(iterator, chunk).numpy()
            if round_:
                rates[policy].append(case["steps"] / (time.perf_counter() - start))
    return {policy: max(values) for policy, values in rates.items()}


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def launch(work, params, steps, workers=1, **extra):
    """Runs the case in ``workers`` processes at once; the chief's (worker 0's) result."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    processes = []
    for index in range(workers):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if workers > 1:
            task = {"type": "worker", "index": index}
            env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
        case = {"work": work, "params": params, "steps": steps, **extra}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", RUN.format(here=HERE), json.dumps(case)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs = [p.communicate(timeout=1800) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"case {params} failed:\n{err[-3000:]}")
    line = next(x for x in outputs[0][0].splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--float16_steps", type=int, default=4)
    args = parser.parse_args()
    log = {"log_steps": max(1, args.steps // 6), "steps_between_evals": 10**6}
    flags = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as stream:
            flags = stream.read()
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    print(f"machine: {machine()}; bfloat16 in hardware: {', '.join(bf16) or 'no'}")
    # float16 has no fast kernels on CPUs (it ran 150 steps in more than 14 minutes here):
    # a few steps give its rate, not an accuracy.
    float16 = {"mixed_precision": "mixed_float16", "log_steps": 1}
    cases = {
        "float32": ({}, args.steps, ROUNDS),
        "mixed_bfloat16": ({"mixed_precision": "mixed_bfloat16"}, args.steps, ROUNDS),
        "float32 + XLA": ({"xla": True}, args.steps, 1),
        "mixed_float16": (float16, args.float16_steps, 1),
    }
    with tempfile.TemporaryDirectory() as work:
        results = {}
        # The cases measured more than once take turns: the shared machine drifts by tens of
        # percent within minutes, and a case's rounds must not all fall in one slow spell.
        for turn in range(ROUNDS):
            for name, (overrides, steps, rounds) in cases.items():
                if turn < rounds:
                    folder = os.path.join(work, f"{name}-{turn}")
                    result = launch(folder, {**log, **overrides}, steps)
                    best = results.get(name, result)
                    results[name] = max(best, result, key=lambda r: r["steps_per_sec"])
        for name, (_, steps, _) in cases.items():
            result = results[name]
            base = results["float32"]["steps_per_sec"]
            learned = f"accuracy {result['accuracy']:.3f}" if steps == args.steps else ""
            print(
                f"{name:16s} {result['steps_per_sec']:6.2f} steps/s "
                f"{result['steps_per_sec'] * BATCH:7.0f} examples/s  "
                f"x{result['steps_per_sec'] / base:.2f} of float32  {steps} steps {learned}",
                flush=True,
            )
        alternating = launch(os.path.join(work, "alternating"), {}, 30, alternating=True, rounds=6)
        ratio = alternating["mixed_bfloat16"] / alternating["none"]
        print(
            f"the library's train loop in one process, float32 and bf16 in 6 alternating rounds "
            f"of 30 steps: float32 {alternating['none']:.2f} steps/s, mixed_bfloat16 "
            f"{alternating['mixed_bfloat16']:.2f}: x{ratio:.2f}",
            flush=True,
        )
        two = launch(
            os.path.join(work, "two-workers"),
            {**log, "distribution": "multi_worker"},
            args.steps,
            2,
        )
        per_step = 1000 / two["steps_per_sec"] - 1000 / base
        print(
            f"two multi-worker processes, global batch {BATCH}: {two['steps_per_sec']:.2f} "
            f"steps/s ({two['steps_per_sec'] * BATCH:.0f} examples/s), "
            f"x{two['steps_per_sec'] / base:.2f} of one process; {per_step:+.0f} ms per step "
            f"(the two share {os.cpu_count()} cores); accuracy {two['accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()
