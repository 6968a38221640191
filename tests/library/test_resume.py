"""Checkpoints that survive: resume at the exact step, traps in the checkpoint folder, a best
checkpoint that remembers, a kill, the data order and the learning rate across a resume."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from projects.classifier import RUN_PY, functions
from support import argv, estimator, params, run_cli, scalars, specs
from support import functions as contract_functions

from library.cli import modes as commands
from library.contract import ModeKeys
from library.engine import schedule
from library.engine.estimator import Estimator, train_and_evaluate
from library.outputs import best as best_checkpoint
from library.outputs import checkpoints, run_state
from library.recorders import metrics_log


def read_json(path):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def train_to(run_params, max_steps):
    train, _ = specs(run_params, max_steps)
    return estimator(run_params).train(train.input_fn, max_steps)


def test_stop_and_resume_reaches_the_exact_step(stripes_records, tmp_path, capsys):
    run_params = params(stripes_records, tmp_path, steps_per_execution=3)
    train, evaluation = specs(run_params, 5)
    assert train_and_evaluate(estimator(run_params), train, evaluation) == 5
    train, evaluation = specs(run_params, 9)
    assert train_and_evaluate(estimator(run_params), train, evaluation) == 9
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "at step 5" in printed
    numbers = [n for n, _ in checkpoints.numbered_checkpoints(run_params.model_dir)]
    assert numbers[0] == 9
    steps_logged = [r["step"] for r in metrics_log.read_metrics(run_params.model_dir)]
    assert steps_logged == [2, 4, 5, 6, 8, 9]  # chunks of 3 never run past an evaluation
    # What the run was told to leave out (best_saved_model, plots: false) is not written.
    assert os.path.exists(os.path.join(run_params.best_model_dir, "best.json"))
    assert not os.path.exists(os.path.join(run_params.best_model_dir, "saved_model"))
    assert not os.path.exists(os.path.join(run_params.best_model_dir, "confusion_matrix.png"))
    assert not os.path.exists(os.path.join(run_params.model_dir, "plots"))


@pytest.fixture
def trained_twice(stripes_records, tmp_path):
    """A model_dir with checkpoints at steps 2 and 4."""
    run_params = params(stripes_records, tmp_path, save_checkpoints_steps=2)
    train_to(run_params, 4)
    assert [n for n, _ in checkpoints.numbered_checkpoints(run_params.model_dir)] == [4, 2]
    return run_params


def test_garbage_state_file_does_not_restart_from_scratch(trained_twice, capsys):
    run_params = trained_twice.replace(keep_checkpoints=2)
    with open(os.path.join(run_params.model_dir, "checkpoint"), "w") as stream:
        stream.write("this is not a checkpoint state\x00\x01")
    assert tf.train.latest_checkpoint(run_params.model_dir) is None  # the trap
    assert train_to(run_params, 8) == 8
    assert "ckpt-4 at step 4" in capsys.readouterr().out  # the newest, not an older one
    assert tf.train.latest_checkpoint(run_params.model_dir).endswith("ckpt-8")
    # The rewritten state still lets keep_checkpoints delete the checkpoints it lists.
    assert [n for n, _ in checkpoints.numbered_checkpoints(run_params.model_dir)] == [8, 6]


def test_truncated_newest_checkpoint_falls_back_to_the_previous(trained_twice, capsys):
    data = glob.glob(os.path.join(trained_twice.model_dir, "ckpt-4.data-*"))[0]
    with open(data, "r+b") as stream:
        stream.truncate(os.path.getsize(data) // 3)
    assert train_to(trained_twice, 6) == 6
    printed = capsys.readouterr().out
    assert "skipping checkpoint" in printed and "ckpt-4" in printed
    assert "resuming from" in printed and "ckpt-2 at step 2" in printed


def test_leftover_temp_folders_are_removed(trained_twice, capsys):
    leftover = os.path.join(trained_twice.model_dir, "ckpt-5_temp")
    os.makedirs(os.path.join(leftover, "part-0"))
    train_to(trained_twice, 5)
    assert not os.path.exists(leftover)
    assert "ckpt-5_temp" in capsys.readouterr().out


def test_no_restorable_checkpoint_is_an_error_not_a_fresh_start(trained_twice):
    for path in glob.glob(os.path.join(trained_twice.model_dir, "ckpt-*.data-*")):
        with open(path, "r+b") as stream:
            stream.truncate(10)
    with pytest.raises(checkpoints.CheckpointError, match="none of 2 checkpoints restores"):
        train_to(trained_twice, 6)


def test_restarted_run_keeps_a_better_earlier_best(stripes_records, tmp_path):
    run_params = params(stripes_records, tmp_path, best_saved_model=True)
    train, evaluation = specs(run_params, 2)
    train_and_evaluate(estimator(run_params), train, evaluation)
    best_path = os.path.join(run_params.best_model_dir, "best.json")
    first = read_json(best_path)
    # An earlier run (before a restart) had reached a far better value: the run state
    # beside its latest checkpoint says so.
    better = dict(first, value=1e-6, step=1)
    latest = checkpoints.numbered_checkpoints(run_params.model_dir)[0][1]
    state = run_state.read(latest)
    run_state.write(latest, dict(state, best=better))
    with open(best_path, "w") as stream:
        json.dump(better, stream)
    train, evaluation = specs(run_params, 6)
    train_and_evaluate(estimator(run_params), train, evaluation)
    # The better best is kept. (Its SavedModel is written again from its checkpoint: this
    # best.json says the SavedModel is of another step than the best.)
    kept = read_json(best_path)
    assert kept.pop("saved_model_step") == better["step"] == 1
    assert kept == {k: v for k, v in better.items() if k != "saved_model_step"}
    evaluated = [r["eval_loss"] for r in metrics_log.read_metrics(run_params.model_dir)]
    assert len(evaluated) == 3 and min(evaluated) > 1e-6


def test_a_nonfinite_evaluation_never_becomes_the_best(tmp_path):
    exporter = best_checkpoint.BestExporter(str(tmp_path / "best"), "loss", "min")
    weights = tf.Module()
    weights.v = tf.Variable(1.0)
    assert not exporter.maybe_export({"loss": float("nan")}, 1, 0.1, weights)
    assert not exporter.maybe_export({"loss": float("inf")}, 2, 0.2, weights)
    assert not os.path.exists(tmp_path / "best" / "best.json")
    assert exporter.maybe_export({"loss": 0.5}, 3, 0.3, weights)
    assert not exporter.maybe_export({"loss": float("nan")}, 4, 0.4, weights)
    assert read_json(tmp_path / "best" / "best.json")["step"] == 3
    with pytest.raises(
        checkpoints.CheckpointError, match="best_metric 'loss' is not an evaluation"
    ):
        exporter.maybe_export({"accuracy": 0.9}, 5, 0.5, weights)


def test_the_best_saved_model_follows_the_best_through_new_bests_and_restarts(tmp_path):
    best_dir = tmp_path / "best"
    exporter = best_checkpoint.BestExporter(str(best_dir), "loss", "min")
    weights = tf.Module()
    weights.v = tf.Variable(1.0)
    exporter.maybe_export({"loss": 0.5}, 3, 0.3, weights)

    def export_fn(prefix, directory):
        restored = tf.Module()
        restored.v = tf.Variable(0.0)
        tf.train.Checkpoint(model=restored).restore(prefix).assert_existing_objects_matched()
        tf.saved_model.save(restored, directory)

    def export_while_a_new_best_lands(prefix, directory):
        # The export runs in the background: training keeps a new best meanwhile, and the
        # best folder drops the checkpoint being exported.
        weights.v.assign(2.0)
        assert exporter.maybe_export({"loss": 0.4}, 4, 0.4, weights)
        export_fn(prefix, directory)

    assert exporter.export_saved_model(export_while_a_new_best_lands)
    assert float(tf.saved_model.load(str(best_dir / "saved_model")).v) == 1.0
    best = read_json(best_dir / "best.json")
    assert (best["step"], best["saved_model_step"]) == (4, 3)
    # The run is killed here. At the next start (the run state gives the best) the
    # SavedModel is older than the best.
    exporter = best_checkpoint.BestExporter(str(best_dir), "loss", "min", best=exporter.best)
    assert exporter.export_saved_model(export_fn)
    assert float(tf.saved_model.load(str(best_dir / "saved_model")).v) == 2.0
    assert read_json(best_dir / "best.json")["saved_model_step"] == 4
    assert exporter.export_saved_model(export_fn) is None  # up to date: nothing to write
    assert not [name for name in os.listdir(best_dir) if ".tmp-" in name]


def test_a_killed_run_resumes_from_its_last_checkpoint(stripes_records, tmp_path):
    model_dir = str(tmp_path / "model")
    command = argv(
        stripes_records, tmp_path, "--train_steps", "400", "--steps_between_evals", "1000",
        "--save_checkpoints_steps", "5",
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, RUN_PY, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not checkpoints.numbered_checkpoints(model_dir):
            assert process.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # no clean-up of any kind, as with a power cut
    finally:
        process.kill()
        process.wait()
    killed_at = checkpoints.numbered_checkpoints(model_dir)[0][0]
    assert 5 <= killed_at < 400
    result = run_cli(*command, "--train_steps", str(killed_at + 5))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"at step {killed_at} " in result.stdout and "resuming from" in result.stdout
    assert checkpoints.numbered_checkpoints(model_dir)[0][0] == killed_at + 5
    assert [r["step"] for r in metrics_log.read_metrics(model_dir)] == [killed_at + 5]


def _in_memory_input():
    """A deterministic pipeline (seeded shuffle, no parallel reads): the data order is fixed."""
    images = tf.random.stateless_uniform([48, 16, 16, 3], [7, 7])
    labels = tf.cast(tf.reduce_mean(images, axis=[1, 2, 3]) > 0.5, tf.int32)

    def input_fn():
        dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
        return dataset.shuffle(48, seed=3).repeat().batch(8, drop_remainder=True)

    return input_fn


def _weights_after(run_params, stops):
    for max_steps in stops:  # a new Estimator each time, as after a restart
        estimator(run_params).train(_in_memory_input(), max_steps)
    restored, _ = estimator(run_params).restore_model("latest")
    return [v.numpy() for v in restored.variables]


@pytest.mark.parametrize("checkpoint_input", [True, False])
def test_resume_mid_epoch_continues_the_same_data_order(tmp_path, checkpoint_input):
    def params_in(folder):
        return params(
            None, tmp_path / folder, num_classes=2, save_checkpoints_steps=1,
            checkpoint_input_pipeline=checkpoint_input, batch_norm_refresh_batches=2,
        )  # fmt: skip

    straight = _weights_after(params_in("straight"), [5])
    interrupted = _weights_after(params_in("interrupted"), [2, 5])  # stopped mid-epoch at 2
    same = all(
        np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(straight, interrupted, strict=True)
    )
    # With the input position saved (the batch-norm refresh's own pipeline included), the
    # restarted run sees exactly the batches the straight run saw; without it, the pipeline
    # starts over and the weights differ.
    assert same is checkpoint_input


def test_an_input_pipeline_that_cannot_be_saved_is_one_clear_error(tmp_path):
    run_params = params(None, tmp_path, num_classes=2, checkpoint_input_pipeline=True)

    def generator_input():
        def endless():
            while True:
                yield np.zeros([16, 16, 3], np.float32), 0

        signature = (tf.TensorSpec([16, 16, 3]), tf.TensorSpec([], tf.int32))
        dataset = tf.data.Dataset.from_generator(endless, output_signature=signature)
        return dataset.batch(4).map(lambda image, label: ({"image": image}, label))

    with pytest.raises(checkpoints.CheckpointError, match="checkpoint_input_pipeline: this input"):
        estimator(run_params).train(generator_input, 2)


def test_resume_with_another_train_steps_keeps_the_learning_rate_continuous(
    stripes_records, tmp_path, capsys
):
    """A resumed run continues the rates of the run that started ``model_dir``, step for
    step, even when it asks for another length (the schedule keeps the length it started
    with); the rate of every step comes from TensorBoard's log of each step."""

    def learning_rates(folder, stops):
        run_params = params(
            stripes_records, tmp_path / folder, lr_schedule="cosine", learning_rate=0.01,
            log_steps=1,
        )  # fmt: skip
        for train_steps, stop_at in stops:  # a new plan, as a restart with --train_steps makes
            plan = schedule.make_plan(run_params.replace(train_steps=train_steps), 48)
            built = commands.build_estimator(run_params, contract_functions(), plan)
            train, _ = specs(run_params, stop_at)
            built.train(train.input_fn, stop_at)
        return [v for _, v in scalars(os.path.join(run_params.model_dir, "train"), "learning_rate")]

    straight = learning_rates("straight", [(8, 8)])
    capsys.readouterr()
    resumed = learning_rates("resumed", [(8, 4), (20, 8)])  # stopped at 4, then 20 steps asked
    assert "keeps the length it started with (8 steps)" in capsys.readouterr().out
    assert len(straight) == len(resumed) == 8
    np.testing.assert_allclose(resumed, straight, rtol=1e-6)
    assert straight[0] > straight[-1] > 0  # a decaying schedule: the check means something


def test_training_needs_a_plan_and_never_guesses_one(tmp_path):
    run_params = params(None, tmp_path, num_classes=2)
    built = Estimator(functions.model_fn, functions.loss_fn, functions.optimizer_fn, run_params)
    with pytest.raises(ValueError, match="training needs a plan"):
        built.train(lambda: functions.input_fn(run_params.train_files, ModeKeys.TRAIN, run_params), 2)  # fmt: skip
    assert not os.path.exists(tmp_path / "model")  # refused before anything was written
