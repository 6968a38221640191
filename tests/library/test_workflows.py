"""Training workflows: continuous evaluation beside a trainer, plateau and early stopping that
survive restarts, one-parameter sweeps."""

import csv
import json
import os
import re
import time

import numpy as np
import pytest
from support import argv, declarations, estimator, params, run_cli, start_process

from library.config import ConfigError, Schema
from library.engine import evaluator, schedule
from library.outputs import checkpoints, run_state
from library.recorders import metrics_log
from library.recorders.base import Recorder, Recorders
from library.recorders.patience import Patience
from library.search import space, study


def test_continuous_evaluation_beside_training_evaluates_each_checkpoint_once(
    stripes_records, tmp_path
):
    model_dir = tmp_path / "model"
    common = ["--train_steps", "24", "--save_checkpoints_steps", "3", "--keep_checkpoints", "20"]
    trainer = start_process(*argv(stripes_records, tmp_path, "--mode", "train", *common))
    evaluator_argv = argv(
        stripes_records, tmp_path, "--mode", "continuous_eval", *common,
        "--eval_timeout_secs", "90",
    )  # fmt: skip
    first = start_process(*evaluator_argv)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not metrics_log.read_metrics(str(model_dir)):
            assert first.poll() is None, first.communicate()
            time.sleep(0.1)
        first.kill()  # killed after its first evaluation, as a preempted evaluator would be
        first.wait()
        evaluated_before = [r["step"] for r in metrics_log.read_metrics(str(model_dir))]
        assert evaluated_before and evaluated_before[0] == 3
        second = run_cli(*evaluator_argv)  # started again, here
        out, err = trainer.communicate(timeout=240)
    finally:
        for process in (trainer, first):
            if process.poll() is None:
                process.kill()
    assert trainer.returncode == 0, err
    assert second.returncode == 0, second.stderr
    assert "evaluated the checkpoint of the final step 24: done" in second.stdout
    rows = metrics_log.read_metrics(str(model_dir))
    assert [r["step"] for r in rows] == [3, 6, 9, 12, 15, 18, 21, 24]  # each once, in order
    assert all(r["train_loss"] is not None and r["learning_rate"] > 0 for r in rows)
    # One owner per file: the trainer wrote no evaluation, the evaluator no training log.
    assert "eval at step" not in out
    assert (model_dir / "train").is_dir() and (model_dir / "eval").is_dir()
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    assert best["step"] in {r["step"] for r in rows}
    assert not (model_dir / ".lock").exists() and not (model_dir / ".lock-evaluator").exists()


def test_continuous_evaluation_beside_a_trainer_keeping_two_checkpoints_names_what_it_skips(
    stripes_records, tmp_path
):
    """keep_checkpoints 2: the trainer deletes checkpoints the evaluator has not read yet
    (or is reading): each is named and skipped, nothing is a traceback, and each checkpoint
    is either evaluated or named."""
    common = ["--train_steps", "30", "--save_checkpoints_steps", "2", "--keep_checkpoints", "2"]
    trainer = start_process(*argv(stripes_records, tmp_path, "--mode", "train", *common))
    try:
        evaluated = run_cli(
            *argv(stripes_records, tmp_path, "--mode", "continuous_eval", *common),
            "--eval_timeout_secs",
            "60",
        )
        trainer.communicate(timeout=240)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 0
    assert evaluated.returncode == 0 and "Traceback" not in evaluated.stderr, evaluated.stderr
    assert "evaluated the checkpoint of the final step 30: done" in evaluated.stdout
    steps = {r["step"] for r in metrics_log.read_metrics(str(tmp_path / "model"))}
    lines = [line for line in evaluated.stdout.splitlines() if "deleted" in line]
    named = {int(n) for line in lines for n in re.findall(r"ckpt-(\d+)", line)}
    assert steps | named == set(range(2, 31, 2)), (steps, named, evaluated.stdout[-2000:])


def test_a_checkpoint_deleted_before_it_is_read_is_one_line(stripes_records, tmp_path, monkeypatch):
    run_params = params(stripes_records, tmp_path, num_classes=2)
    plan = schedule.Plan(10, 4, 4, 4, 4)
    built = estimator(run_params)
    os.makedirs(run_params.model_dir)
    index = tmp_path / "model" / "ckpt-2.index"
    index.write_bytes(b"")  # listed, then gone before it is read
    listed = checkpoints.numbered_checkpoints(run_params.model_dir)

    def vanish(directory):
        if index.exists():
            os.remove(index)
        return listed

    monkeypatch.setattr(checkpoints, "numbered_checkpoints", vanish)
    lines = []
    received = Recorders([Recorder()], lines.append)
    step = evaluator.evaluate_continuously(
        built.evaluator, run_params.model_dir, plan, lambda: None, None, received, 0.5,
        lines.append, poll_secs=0.1,
    )  # fmt: skip
    assert step == 0
    assert (
        f"{run_params.model_dir}/ckpt-2 was deleted (keep_checkpoints) while it was evaluated: "
        "skipped" in lines
    )
    assert "no new checkpoint for 0.5 s (eval_timeout_secs): stopping" in lines


def test_patience_rules_follow_a_hand_computed_sequence():
    run_params = params(
        plateau_patience=2, plateau_factor=0.5, plateau_min_lr=0.02, plateau_min_delta=0.01,
        early_stopping_patience=4, early_stopping_min_delta=0.0,
    )  # fmt: skip
    patience = Patience.from_params(run_params)
    losses_seen = [1.0, 0.8, 0.795, 0.79, 0.7, 0.705, 0.71, 0.72, 0.73]
    multipliers, stops = [], []
    rate = 0.1
    for step, loss in enumerate(losses_seen, 1):
        patience.update(step, loss, rate * patience.multiplier)
        multipliers.append(patience.multiplier)
        stops.append(patience.stopped_at)
    # plateau (min_delta 0.01): best 1.0, 0.8, then 0.795 and 0.79 are not better by 0.01 ->
    # x0.5 at step 4; 0.7 is; 0.705, 0.71 -> x0.5 at step 7 (0.025, floor 0.02/0.1 = 0.2);
    # 0.72, 0.73 -> would be 0.125, but the floor holds it at 0.2.
    assert multipliers == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2])
    # early stopping (min_delta 0): 0.795, 0.79, 0.7 improve; 0.705 .. 0.73 are 4 without.
    assert stops == [None] * 8 + [9]


def test_plateau_and_early_stopping_follow_the_run_state_and_survive_a_kill(
    stripes_records, tmp_path
):
    command = argv(
        stripes_records, tmp_path, "--train_steps", "10", "--steps_between_evals", "1",
        "--log_steps", "1000",
        # min_delta 10: after the first evaluation nothing counts as an improvement, so the
        # rules act on a sequence known in advance, whatever the losses are.
        "--plateau_patience", "1", "--plateau_factor", "0.5", "--plateau_min_delta", "10",
        "--early_stopping_patience", "3", "--early_stopping_min_delta", "10",
    )  # fmt: skip
    run_params = params(
        stripes_records, tmp_path, plateau_patience=1, plateau_factor=0.5,
        plateau_min_delta=10.0, early_stopping_patience=3, early_stopping_min_delta=10.0,
    )  # fmt: skip
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr
    assert "early stopping at step 4" in first.stdout
    rows = metrics_log.read_metrics(run_params.model_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # stopped after the 4th evaluation
    base = rows[0]["learning_rate"]
    # The rate in force before each evaluation: x0.5 after each one from the second on.
    np.testing.assert_allclose([r["learning_rate"] / base for r in rows], [1, 1, 0.5, 0.25])
    # The rules applied to the evaluations in order give the rates the run used.
    replayed = Patience.from_params(run_params)
    expected = []
    for row in rows:
        expected.append(replayed.multiplier)
        replayed.update(row["step"], row["eval_loss"], row["learning_rate"])
    np.testing.assert_allclose([r["learning_rate"] / base for r in rows], expected)
    assert replayed.stopped_at == 4
    # Started again: nothing more to train, and it says why.
    again = run_cli(*command)
    assert again.returncode == 0 and "early stopping at step 4" in again.stdout
    assert [r["step"] for r in metrics_log.read_metrics(run_params.model_dir)] == [1, 2, 3, 4]
    # Killed between the checkpoint of step 4 and its evaluation: the run state beside
    # ckpt-4 is what it was when it was saved (every recorder up to step 3, the rules after
    # the third evaluation); the resume makes it good.
    ckpt = os.path.join(run_params.model_dir, "ckpt-4")
    state = run_state.read(ckpt)
    before = Patience.from_params(run_params)
    for row in rows[:3]:
        before.update(row["step"], row["eval_loss"], row["learning_rate"])
    delivered = dict.fromkeys(state["delivered"], 3)
    run_state.write(ckpt, dict(state, delivered=delivered, patience=before.to_dict()))
    with open(os.path.join(run_params.model_dir, metrics_log.METRICS_FILE), "w") as stream:
        stream.writelines(json.dumps(r) + "\n" for r in rows[:3])
    made_good = run_cli(*command)
    assert made_good.returncode == 0 and "early stopping at step 4" in made_good.stdout
    again = metrics_log.read_metrics(run_params.model_dir)
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    np.testing.assert_allclose(
        [r["learning_rate"] for r in again], [r["learning_rate"] for r in rows]
    )


def fake_training(results_by_value, metric="loss", step=4):
    """A train callback whose run ends with a checkpoint whose run state says its best
    ``metric`` (given for each learning rate), as a real run's does."""
    calls = []

    def train(run_params):
        calls.append(run_params.learning_rate)
        os.makedirs(run_params.model_dir, exist_ok=True)
        prefix = os.path.join(run_params.model_dir, f"ckpt-{step}")
        open(prefix + ".index", "w").close()
        best = {"metric": metric, "value": results_by_value[run_params.learning_rate], "step": step}  # fmt: skip
        run_state.write(prefix, {"best": best})
        return 0

    return train, calls


def test_sweep_stops_when_the_loss_worsens_writes_csv_and_plot_and_skips_finished(tmp_path):
    """On Optuna: each value a trial of one study, in order; a sweep run again skips what
    the study has."""
    run_params = params(model_dir=str(tmp_path / "runs"))
    schema = Schema(declarations.HYPERPARAMETERS)
    key, values, geometric = space.parse_sweep("learning_rate=0.001:0.1:10", schema)
    assert (key, values, geometric) == ("learning_rate", [0.001, 0.01, 0.1], True)
    train, calls = fake_training({0.001: 0.6, 0.01: 0.4, 0.1: 0.5})
    lines = []
    assert study.run_sweep(run_params, key, values, geometric, train, say=lines.append) == 0
    assert calls == [0.001, 0.01, 0.1]
    root = tmp_path / "runs" / "sweep"
    with open(root / "sweep.csv", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [(r["learning_rate"], r["best_loss"], r["step"]) for r in table] == [
        ("0.001", "0.6", "4"), ("0.01", "0.4", "4"), ("0.1", "0.5", "4"),
    ]  # fmt: skip
    assert (root / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "study.db").exists()
    assert any("got worse from learning_rate=0.01" in line for line in lines)
    assert lines[-1].startswith("best learning_rate=0.01: loss 0.4 at step 4")
    # A sweep over more values stops at the first worsening; run again, it skips what is done.
    more = [0.001, 0.01, 0.1, 1.0]
    train, calls = fake_training({0.001: 0.6, 0.01: 0.4, 0.1: 0.5, 1.0: 0.1})
    lines = []
    study.run_sweep(run_params, key, more, False, train, say=lines.append)
    assert calls == []  # the first three were finished; the third already got worse
    assert sum("skipped" in line for line in lines) == 3
    study.run_sweep(run_params, key, more, False, train, sweep_all=True, say=lines.append)
    assert calls == [1.0]


def test_a_sweep_judges_by_best_metric_in_its_direction(tmp_path):
    """best_metric accuracy, best_mode max: the highest accuracy wins, whatever the loss."""
    run_params = params(model_dir=str(tmp_path / "runs"), best_metric="accuracy", best_mode="max")
    accuracy = {0.001: 0.91, 0.01: 0.93, 0.1: 0.95}
    train, _ = fake_training(accuracy, metric="accuracy", step=6)
    lines = []
    values = [0.001, 0.01, 0.1]
    study.run_sweep(run_params, "learning_rate", values, False, train, say=lines.append)
    assert not any("got worse" in line for line in lines)  # accuracy rose at every value
    assert lines[-1].startswith("best learning_rate=0.1: accuracy 0.95 at step 6")
    with open(tmp_path / "runs" / "sweep" / "sweep.csv", encoding="utf-8") as stream:
        assert [r["best_accuracy"] for r in csv.DictReader(stream)] == ["0.91", "0.93", "0.95"]


def test_sweep_values_are_checked_against_the_schema():
    schema = Schema(declarations.HYPERPARAMETERS)
    with pytest.raises(ConfigError, match="encoder must be one of conv, hub"):
        space.parse_sweep("encoder=conv,convv", schema)
    with pytest.raises(ConfigError, match="unknown key 'learnin_rate'"):
        space.parse_sweep("learnin_rate=1,2", schema)
    assert space.parse_sweep("train_steps=2,4", schema) == ("train_steps", [2, 4], False)


def test_a_real_sweep_through_run_py_trains_each_value_in_its_folder(stripes_records, tmp_path):
    command = argv(stripes_records, tmp_path, "--sweep", "train_steps=2,4", "--sweep_all")
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr[-2000:]
    for value in (2, 4):
        folder = tmp_path / "model" / "sweep" / f"train_steps={value}"
        assert checkpoints.numbered_checkpoints(str(folder))[0][0] == value
        assert (folder / "best" / "best.json").exists()
    assert (tmp_path / "model" / "sweep" / "sweep.csv").read_text().count("\n") == 3
    again = run_cli(*command)
    assert again.returncode == 0 and again.stdout.count("finished before") == 2
