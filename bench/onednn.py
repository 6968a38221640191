"""What turning oneDNN off costs training on this CPU (the price of ``onednn: off``).

    .venv/bin/python bench/onednn.py [--steps 60]

oneDNN can only be switched before TensorFlow loads, so each measurement is a child process
(``TF_ENABLE_ONEDNN_OPTS=1`` or ``0``) timing the library's train step on in-memory data after
a warm-up; on and off alternate, twice each, and the best of each is kept. Prints off / on.
"""

import argparse
import os
import subprocess
import sys
import time

from common import machine

CASES = {
    "small_cnn 32px": {"encoder": "small_cnn", "image_size": 32},
    "resnet-8 32px": {"encoder": "resnet", "image_size": 32, "resnet_depth": 8},
}


def child(case: str, steps: int) -> None:
    from library.base.quiet import import_tensorflow

    tf = import_tensorflow()
    import keras

    from library.config import default_params
    from library.engine import steps as library_steps
    from project import losses, model
    from project.hyperparameters import HYPERPARAMETERS, RUN_OPTIONS

    params = default_params(
        HYPERPARAMETERS, RUN_OPTIONS, num_classes=10, dropout_rate=0.0, **CASES[case]
    )
    net = model.model_fn(params)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(net.trainable_variables)
    state = library_steps.StepState()
    step = tf.function(library_steps.one_model_step(net, losses.loss_fn, optimizer, params, state))
    size = params.image_size
    features = {"image": tf.random.stateless_uniform([64, size, size, 3], [0, 1])}
    labels = tf.random.stateless_uniform([64], [0, 2], maxval=10, dtype=tf.int32)
    for _ in range(5):  # trace and warm up
        step((features, labels))
    float(state.step.numpy())
    start = time.perf_counter()
    for _ in range(steps):
        step((features, labels))
    float(state.step.numpy())
    print(steps / (time.perf_counter() - start))


def measure(case: str, steps: int, onednn: bool) -> float:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--steps", str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    print(f"machine: {machine()}")
    for case in CASES:
        rates = {True: 0.0, False: 0.0}
        for onednn in (True, False, True, False):
            rates[onednn] = max(rates[onednn], measure(case, args.steps, onednn))
        print(
            f"{case}: oneDNN on {rates[True]:.2f} steps/s, off {rates[False]:.2f}: "
            f"off / on {rates[False] / rates[True]:.2f}"
        )


if __name__ == "__main__":
    main()
