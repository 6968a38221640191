"""The distillation (examples/distillation) on a few dozen digits, through its run.py in this
process: a teacher trained by the library's own update, then a student whose update is the
project's own with the teacher frozen inside it (its weights the same before and after), both
loss parts logged, and a teacher that is not there refused in one line."""

import os

import numpy as np
import tensorflow as tf
from support import one_line, resolve_argv, run_cli

from examples import distillation
from examples.distillation import data, functions
from library import read_metrics
from library.outputs import checkpoints

SMALL = ("--width", "8", "--teacher_width", "8", "--train_batch_size", "16")
STEPS = ("--train_steps", "6", "--steps_between_evals", "3", "--log_steps", "3")


def run(folder, name, *extra):
    argv = [
        "--project_file", distillation.PROJECT_FILE, "--config_set", name,
        "--train_files", os.path.join(folder, "data", "train-*.tfrecord"),
        "--eval_files", os.path.join(folder, "data", "validation-*.tfrecord"),
        "--model_dir", os.path.join(folder, name, "model"),
        "--best_model_dir", os.path.join(folder, name, "best"),
        *SMALL, *STEPS, *extra,
    ]  # fmt: skip
    return run_cli(*argv, project=distillation)


def test_the_student_learns_from_a_frozen_teacher(tmp_path):
    data.write_data(str(tmp_path / "data"), count=160)
    teacher = run(tmp_path, "teacher")
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    teacher_best = str(tmp_path / "teacher" / "best")
    student = run(tmp_path, "distilled", "--teacher_checkpoint", teacher_best)
    assert student.returncode == 0, student.stderr[-3000:]
    rows = read_metrics(str(tmp_path / "distilled" / "model"))
    assert {"train_loss/soft", "train_loss/hard", "eval_accuracy"} <= set(rows[-1])
    # The teacher rode along in every checkpoint of the student, unchanged.
    params = resolve_argv(["--project_file", distillation.PROJECT_FILE, *SMALL], distillation)
    saved, source = (
        checkpoints.numbered_checkpoints(str(tmp_path / folder))[0][1]
        for folder in ("distilled/model", "teacher/best")
    )
    frozen, trained = (functions.model_fn(params, teacher=True) for _ in range(2))
    holder = tf.Module()
    holder.teacher = frozen
    tf.train.Checkpoint(step=holder).restore(saved).assert_existing_objects_matched()
    tf.train.Checkpoint(model=trained).restore(source).assert_existing_objects_matched()
    assert frozen.weights
    for kept, value in zip(frozen.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(kept.numpy(), value.numpy(), err_msg=kept.path)
    # A teacher checkpoint that is not there: one line naming the key and what to do.
    missing = run(tmp_path, "distilled", "--teacher_checkpoint", str(tmp_path / "nowhere"), "--model_dir", str(tmp_path / "other"))  # fmt: skip
    assert missing.returncode == 2
    assert "teacher_checkpoint" in one_line(missing.stderr)
