"""What users expect of a trainer beyond the plain update, on the regression test project:
gradient accumulation equals one larger batch, the moving average of the weights is what
evaluation, the best checkpoint and the export see, several evaluation sets are logged apart
and the best is chosen on the named one, and sample weights weigh the loss and metrics."""

import json
import os

import numpy as np
import tensorflow as tf
from support import REGRESSION, one_line, regression_argv, resolve_argv, run_cli, variant

from library import ModeKeys, read_metrics
from library.contract import project_functions
from library.outputs import checkpoints

FUNCTIONS = project_functions(REGRESSION)


def train(data, folder, *extra):
    result = run_cli(
        *regression_argv(data, folder, "--deterministic", "true", *extra), project=REGRESSION
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result


def latest(folder):
    (step, prefix), *_ = checkpoints.numbered_checkpoints(os.path.join(folder, "model"))
    return step, prefix


def restored(prefix, key="model"):
    """The project's model with the weights a checkpoint holds under ``key``."""
    model = FUNCTIONS.model_fn(resolve_argv(regression_argv(), REGRESSION))
    tf.train.Checkpoint(**{key: model}).restore(prefix).assert_existing_objects_matched()
    return model


def weights(prefix, key="model"):
    model = restored(prefix, key)  # by position: layers are named anew in each model
    return {f"{i}:{v.name}": v.numpy() for i, v in enumerate(model.trainable_variables)}


def test_four_accumulated_batches_of_16_update_as_one_batch_of_64(regression_data, tmp_path):
    """The same 64 examples (one shuffled order, whatever the batch): two updates of 4 x 16
    accumulated equal two of 64 within float tolerance (1e-6), and the steps (and the
    schedule) count updates: 128 records make 2 steps an epoch either way."""
    steps = ("--train_steps", "2", "--steps_between_evals", "2")
    big = train(regression_data, tmp_path / "big", *steps, "--train_batch_size", "64")
    accumulated = train(
        regression_data, tmp_path / "acc", *steps, "--train_batch_size", "16", "--accumulate_batches", "4"
    )  # fmt: skip
    train(regression_data, tmp_path / "small", *steps, "--train_batch_size", "16")
    assert "2 steps per epoch" in big.stdout and "2 steps per epoch" in accumulated.stdout
    (step, expected), (acc_step, got) = latest(tmp_path / "big"), latest(tmp_path / "acc")
    assert step == acc_step == 2
    expected, got = weights(expected), weights(got)
    assert sorted(expected) == sorted(got) and expected
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6, err_msg=name)
    # Without accumulation, two batches of 16 move the weights elsewhere.
    other = weights(latest(tmp_path / "small")[1])
    assert max(np.abs(other[n] - expected[n]).max() for n in expected) > 1e-5


def eval_loss(model, data, params):
    """The project's evaluation loss of ``model`` over the evaluation records."""
    dataset = FUNCTIONS.input_fn(os.path.join(data, "eval-*.tfrecord"), ModeKeys.EVAL, params)
    total, count = 0.0, 0
    for features, labels in dataset:
        loss = FUNCTIONS.loss_fn(labels, model(features, training=False), params)
        per_example = sum(tf.cast(term, tf.float32) for term in loss.values())
        total, count = total + float(tf.reduce_sum(per_example)), count + int(tf.size(per_example))
    return total / count


def test_the_moving_average_is_what_evaluation_best_and_export_use(regression_data, tmp_path):
    folder = tmp_path / "ema"
    train(
        regression_data,
        folder,
        "--train_steps",
        "12",
        "--steps_between_evals",
        "6",
        "--ema_decay",
        "0.8",
    )
    step, prefix = latest(folder)
    params = resolve_argv(regression_argv(regression_data, folder), REGRESSION)
    models = {key: restored(prefix, key) for key in ("model", "trained_model")}
    averaged, trained = (weights(prefix, key) for key in ("model", "trained_model"))
    assert averaged.keys() == trained.keys() and averaged
    assert all(np.abs(averaged[n] - trained[n]).max() > 1e-4 for n in averaged)
    logged = read_metrics(str(folder / "model"))[-1]
    assert logged["step"] == step == 12
    assert abs(logged["eval_loss"] - eval_loss(models["model"], regression_data, params)) < 1e-5
    assert (
        abs(logged["eval_loss"] - eval_loss(models["trained_model"], regression_data, params))
        > 1e-3
    )
    # The best checkpoint holds the average as its model; the export is the average.
    with open(folder / "best" / "best.json", encoding="utf-8") as stream:
        best = json.load(stream)
    best_prefix = os.path.join(folder, "best", best["checkpoint"])
    for name, value in weights(best_prefix).items():
        np.testing.assert_array_equal(value, averaged[name])
    result = run_cli(
        *regression_argv(regression_data, folder, "--mode", "export"), project=REGRESSION
    )
    assert result.returncode == 0, result.stderr[-2000:]
    exported = tf.saved_model.load(result.stdout.split("exported SavedModel: ")[1].split()[0])
    rows = {
        "a": tf.constant([0.5, -1.0]),
        "b": tf.constant([1.0, 0.0]),
        "c": tf.constant([2.0, 1.0]),
    }
    served = exported.signatures["serving_default"](**rows)
    expected = models["model"](rows, training=False)["y"]
    np.testing.assert_allclose(served["y"], expected, atol=1e-5)
    assert np.abs(models["trained_model"](rows, training=False)["y"] - expected).max() > 1e-4
    # Switched off (the default), the checkpoint holds the trained model alone.
    plain = tmp_path / "plain"
    train(regression_data, plain, "--train_steps", "2", "--steps_between_evals", "2")
    assert "trained_model" not in checkpoints.root_keys(latest(plain)[1])
    assert "trained_model" in checkpoints.root_keys(prefix)
    # Switched off on a run that had it: one line, not a resume from the average.
    argv = regression_argv(regression_data, folder, "--train_steps", "14")
    refused = run_cli(*argv, project=REGRESSION)
    assert refused.returncode == 2 and "ema_decay" in one_line(refused.stderr)


def test_two_evaluation_sets_are_logged_apart_and_the_best_is_chosen_on_the_named_one(
    regression_data, tmp_path
):
    sets = {"held_out": str(regression_data / "eval-*.tfrecord"), "seen": str(regression_data / "train-*.tfrecord")}  # fmt: skip
    folder = tmp_path / "sets"
    train(
        regression_data, folder, "--train_steps", "24", "--steps_between_evals", "4",
        "--eval_sets", json.dumps(sets), "--best_metric", "seen/mae", "--plots", "true",
    )  # fmt: skip
    rows = read_metrics(str(folder / "model"))
    assert [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24]
    for row in rows:
        assert {
            "eval_held_out/loss",
            "eval_held_out/mae",
            "eval_seen/loss",
            "eval_seen/mae",
        } <= set(row)
        assert row["eval_held_out/mae"] != row["eval_seen/mae"]
    with open(folder / "best" / "best.json", encoding="utf-8") as stream:
        best = json.load(stream)
    chosen = min(rows, key=lambda r: r["eval_seen/mae"])
    assert (best["metric"], best["step"]) == ("seen/mae", chosen["step"])
    assert best["value"] == chosen["eval_seen/mae"]
    plots = sorted(os.listdir(folder / "model" / "plots"))
    assert {"loss.png", "eval_held_out_mae.png", "eval_seen_mae.png"} <= set(plots), plots
    # A bare metric is the first set's; a set that does not exist is one line.
    argv = regression_argv(regression_data, folder, "--eval_sets", json.dumps(sets))
    assert resolve_argv(argv, REGRESSION).best_metric == "held_out/mae"
    wrong = run_cli(*argv, "--best_metric", "unseen/mae", project=REGRESSION)
    assert wrong.returncode == 2 and "held_out/mae" in one_line(wrong.stderr)


def test_sample_weights_weigh_the_evaluation_loss_and_metrics(regression_data, tmp_path):
    """Weights 0 and 1 by the sign of column a evaluate as the rows of weight 1 alone."""
    folder = tmp_path / "weights"
    train(regression_data, folder, "--train_steps", "4", "--steps_between_evals", "4")

    def weighted(file_pattern, mode, params, input_context=None):
        dataset = FUNCTIONS.input_fn(file_pattern, mode, params, input_context)
        return dataset.map(lambda f, y: (f, y, tf.cast(f["a"] > 0, tf.float32)))

    def kept(file_pattern, mode, params, input_context=None):
        dataset = FUNCTIONS.input_fn(file_pattern, mode, params, input_context).unbatch()
        return dataset.filter(lambda f, y: f["a"] > 0).batch(64)

    results = {}
    for name, input_fn in (("weighted", weighted), ("kept", kept), ("all", FUNCTIONS.input_fn)):
        project = variant(REGRESSION, input_fn=input_fn)
        argv = regression_argv(regression_data, folder, "--mode", "evaluate")
        result = run_cli(*argv, project=project)
        assert result.returncode == 0, result.stderr[-2000:]
        results[name] = result.stdout.rsplit(": ", 1)[1]
    assert results["weighted"] != results["all"]
    for (key, a), (_, b) in zip(parse(results["weighted"]), parse(results["kept"]), strict=True):
        assert abs(a - b) < 1e-5, key


def parse(line):
    return [(k, float(v)) for k, v in (part.split() for part in line.strip().split(", "))]


def test_a_step_door_misused_is_one_line(regression_data, tmp_path):
    """train_step_fn returning something else than a TrainingStep, or a project with neither
    an optimizer_fn nor a step of its own: one line naming the function, exit 2."""
    argv = regression_argv(regression_data, tmp_path, "--train_steps", "2")
    wrong = run_cli(*argv, project=variant(REGRESSION, train_step_fn=lambda params: object()))
    assert wrong.returncode == 2 and "not a library.TrainingStep" in one_line(wrong.stderr)
    bare = run_cli(*argv, project=variant(REGRESSION, optimizer_fn=None))
    assert bare.returncode == 2 and "declares no optimizer_fn" in one_line(bare.stderr)
