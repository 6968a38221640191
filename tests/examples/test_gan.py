"""The GAN (examples/gan): a step of the project's own, with two models and two optimizers,
trained through its run.py; SIGKILLed two steps past a checkpoint and resumed, it ends with every model and
optimizer identical bit for bit to a run never killed; a NaN in the discriminator's loss
changes no weight of either network; the journey's generator exports and generates."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from support import ROOT, resolve_argv

from examples import gan
from examples.gan import data, functions
from library import read_metrics
from library.engine import schedule, steps
from library.outputs import checkpoints

# run.py of the GAN with an action that SIGKILLs the process after given steps (once each).
KILLABLE = r"""
import os, signal, sys
sys.path[:0] = [{root!r}]
from examples import gan
from library import Action, main
from library.contract import project_functions
from types import ModuleType

folder, kill_steps = sys.argv[1], [int(s) for s in sys.argv[2].split(",") if s]

class KillAfterStep(Action):
    intervals = (1,)
    def __call__(self, step):
        marker = os.path.join(folder, f"killed-{{step}}")
        if step in kill_steps and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

project = ModuleType("gan")
project.__dict__.update({{k: v for k, v in vars(gan).items() if not k.startswith("__")}})
own = project_functions(gan)
project.load_functions = lambda: own.replace(callbacks_fn=lambda p: [*own.callbacks_fn(p), KillAfterStep()])
sys.exit(main(["--project_file", gan.PROJECT_FILE, *sys.argv[3:]], project))
"""

SMALL = ("--width", "8", "--train_batch_size", "16", "--eval_batch_size", "32")


def flags(records, folder, *extra):
    return [
        "--train_files", os.path.join(records, "train-*.tfrecord"),
        "--eval_files", os.path.join(records, "validation-*.tfrecord"),
        "--model_dir", os.path.join(folder, "model"),
        "--best_model_dir", os.path.join(folder, "best"),
        *SMALL, *extra,
    ]  # fmt: skip


RUN = (
    "--train_steps", "12", "--save_checkpoints_steps", "3", "--steps_between_evals", "6",
    "--log_steps", "2", "--deterministic", "true",
)  # fmt: skip


def start(records, folder, kill_steps=()):
    return subprocess.run(
        [sys.executable, "-c", KILLABLE.format(root=ROOT), str(folder),
         ",".join(map(str, kill_steps)), *flags(records, folder, *RUN)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip


def everything(folder):
    """Every value the newest checkpoint holds (both models, both optimizers, the steps)."""
    (step, prefix), *_ = checkpoints.numbered_checkpoints(os.path.join(folder, "model"))
    reader = tf.train.load_checkpoint(prefix)
    names = [n for n, _ in tf.train.list_variables(prefix) if n.startswith(("model/", "step/"))]
    return step, {name: reader.get_tensor(name) for name in names}


def test_a_killed_gan_resumes_every_model_and_optimizer_bit_for_bit(tmp_path):
    records = str(tmp_path / "records")
    data.write_data(records, count=160)
    straight = tmp_path / "straight"
    done = start(records, straight)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    starts = [start(records, killed, kill_steps=(8,)) for _ in range(2)]
    assert [s.returncode for s in starts] == [-9, 0], [s.stderr[-800:] for s in starts]
    step, expected = everything(straight)
    resumed_step, resumed = everything(killed)
    assert step == resumed_step == 12
    # Both networks' weights and both optimizers' slots and counters, under the step.
    assert any("discriminator" in n or "/optimizers/discriminator/" in n for n in expected)
    assert len([n for n in expected if "/optimizers/" in n]) >= 8
    assert sorted(expected) == sorted(resumed)
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    # Each loss is logged apart, and every logged value equals the uninterrupted run's.
    rows = read_metrics(str(killed / "model"))
    assert rows == read_metrics(str(straight / "model"))
    assert {"train_loss/generator", "train_loss/discriminator"} <= set(rows[-1])


def test_a_nan_in_the_discriminators_loss_changes_no_weight_of_either_network(tmp_path):
    params = resolve_argv(["--project_file", gan.PROJECT_FILE, *SMALL, "--train_steps", "4"], gan)
    step = functions.GANStep()
    model = functions.model_fn(params)
    step.build(model, params)
    step.optimizers = step.create_optimizers(params, schedule.Plan(10, 10, 10, 10, 10))
    state = steps.StepState(step.logged_names(element_spec(params)))
    train_step = tf.function(steps.build_train_step(step, step.optimizers, step.variables(), state))
    real = tf.random.uniform([8, data.SIDE, data.SIDE, 1], -1.0, 1.0)
    noise = tf.random.normal([8, params.noise_dim])
    train_step(({"image": real, "noise": noise}, real))  # a good step: optimizers have state
    watched = [*model.variables, *step.discriminator.variables]
    watched += [v for o in step.optimizers.values() for v in o.variables]
    before = [v.numpy().copy() for v in watched]
    poisoned = tf.tensor_scatter_nd_update(real, [[3, 0, 0, 0]], [float("nan")])
    train_step(({"image": poisoned, "noise": noise}, real))
    for variable, value in zip(watched, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    assert int(state.nonfinite_total.numpy()) == 1 and int(state.step.numpy()) == 2
    train_step(({"image": real, "noise": noise}, real))  # and a good one moves them again
    assert any(np.any(v.numpy() != b) for v, b in zip(watched[:4], before, strict=False))


def element_spec(params):
    return (
        {
            "image": tf.TensorSpec([None, data.SIDE, data.SIDE, 1]),
            "noise": tf.TensorSpec([None, params.noise_dim]),
        },
        tf.TensorSpec([None, data.SIDE, data.SIDE, 1]),
    )
