"""Any task through project/ alone, on a tabular regression (tests/projects/regression): named
loss terms logged beside the total, best_metric driving the best checkpoint and the rules of
patience, the project's recorders, its serving inputs, predict on its own files, epochs from
the manifests of the library's writer."""

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf
from projects import regression
from support import (
    REGRESSION,
    event_tags,
    one_line,
    regression_argv,
    regression_rows,
    run_cli,
    variant,
)

from library.contract import project_functions
from library.data.records import RecordWriter, example
from library.recorders.base import Recorder
from library.recorders.metrics_log import read_metrics

FULL = ("--plots", "true", "--best_saved_model", "true")


@dataclass(frozen=True)
class RegressionRun:
    folder: str
    data: str
    result: object

    @property
    def model_dir(self):
        return os.path.join(self.folder, "model")

    @property
    def best_dir(self):
        return os.path.join(self.folder, "best")

    def argv(self, *extra):
        return regression_argv(self.data, self.folder, *FULL, *extra)


@pytest.fixture(scope="module")
def regression_run(regression_data, tmp_path_factory):
    """3 epochs of 8 steps (the manifest's 128 rows, batch 16), evaluated after each."""
    folder = str(tmp_path_factory.mktemp("regression-run"))
    result = run_cli(*regression_argv(regression_data, folder, *FULL), project=REGRESSION)
    assert result.returncode == 0, result.stderr
    return RegressionRun(folder, str(regression_data), result)


def test_a_regression_trains_with_epochs_from_the_manifest_and_logs_each_loss_term(
    regression_run,
):
    printed = regression_run.result.stdout
    assert "8 steps per epoch; training to step 24, evaluating every 8 steps" in printed
    rows = read_metrics(regression_run.model_dir)
    assert [r["step"] for r in rows] == [8, 16, 24]
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    for row in rows:
        # The total is the sum of the terms (the model has no regularisation).
        assert row["eval_loss"] == pytest.approx(row["eval_loss/mse"] + row["eval_loss/quantile"], rel=1e-5)  # fmt: skip
        assert row["train_loss"] == pytest.approx(row["train_loss/mse"] + row["train_loss/quantile"], rel=1e-5)  # fmt: skip
        assert {"eval_mae", "eval_labels_mean", "learning_rate"} <= set(row)
    assert rows[-1]["eval_mae"] < rows[0]["eval_mae"]  # it learned
    train_tags = event_tags(os.path.join(regression_run.model_dir, "train"))
    eval_tags = event_tags(os.path.join(regression_run.model_dir, "eval"))
    assert {"loss", "loss/mse", "loss/quantile", "learning_rate"} <= set(train_tags)
    assert eval_tags["loss/mse"] == eval_tags["loss/quantile"] == eval_tags["mae"] == [8, 16, 24]
    plots = os.path.join(regression_run.model_dir, "plots")
    for name in ("loss.png", "loss_terms.png", "eval_mae.png", "learning_rate.png"):
        with open(os.path.join(plots, name), "rb") as stream:
            assert stream.read(4) == b"\x89PNG", name
    # The best checkpoint by the project's metric (best_metric: mae in its project.yaml).
    with open(os.path.join(regression_run.best_dir, "best.json"), encoding="utf-8") as stream:
        best = json.load(stream)
    best_row = min(rows, key=lambda r: r["eval_mae"])
    assert (best["metric"], best["step"]) == ("mae", best_row["step"])
    assert best["value"] == pytest.approx(best_row["eval_mae"])


def test_the_csv_logger_writes_what_metrics_jsonl_records(regression_run):
    with open(os.path.join(regression_run.model_dir, "metrics.csv"), encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    rows = read_metrics(regression_run.model_dir)
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        assert set(line) == set(row)
        for key, value in row.items():
            assert float(line[key]) == pytest.approx(value), key


def test_the_export_takes_the_declared_inputs_and_returns_the_predictions(regression_run, tmp_path):
    exported = run_cli(*regression_run.argv("--mode", "export", "--export_dir", str(tmp_path)), project=REGRESSION)  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    (path,) = [str(p) for p in tmp_path.iterdir()]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    _, named = serve.structured_input_signature
    assert {k: (s.dtype, s.shape.as_list()) for k, s in named.items()} == {
        name: (tf.float32, [None]) for name in regression.COLUMNS
    }
    rows = regression_rows(5, seed=9)
    inputs = {name: tf.constant([r[name] for r in rows]) for name in regression.COLUMNS}
    served = serve(**inputs)
    assert served["y"].shape == (5,) and served["quantiles"].shape == (5, 2)
    # What the latest checkpoint's weights compute, here.
    from types import SimpleNamespace

    from projects.regression import functions

    net = functions.model_fn(SimpleNamespace(units=16))
    tf.train.Checkpoint(model=net).restore(tf.train.latest_checkpoint(regression_run.model_dir)).expect_partial()  # fmt: skip
    by_hand = net(inputs, training=False)
    np.testing.assert_allclose(served["y"].numpy(), by_hand["y"].numpy(), rtol=1e-5, atol=1e-6)


def test_predict_reads_csv_json_lines_and_tfrecords_and_names_what_it_skips(
    regression_run, tmp_path
):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "rows.csv").write_text("a,b,c\n1,2,3\nx,2,3\n0.5,0.5\n-1,0,1\n")
    (folder / "rows.jsonl").write_text(
        '{"a": 1, "b": 2, "c": 3}\nnot json\n{"a": 1, "b": 2}\n{"a": [1, 2], "b": 0, "c": 0}\n'
    )
    writer = RecordWriter(str(folder), "rows", num_shards=1)
    for row in regression_rows(3, seed=4):
        writer.write(example(row))
    writer.close()
    (folder / "notes.txt").write_text("not data")
    copy = tmp_path / "model"
    shutil.copytree(regression_run.model_dir, copy)
    result = run_cli(*regression_run.argv("--model_dir", str(copy), "--mode", "predict", "--predict_files", str(folder)), project=REGRESSION)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"skipped {folder / 'notes.txt'}: not a file predict reads (.csv, .jsonl, .json, .tfrecord, or a project's reader)",
        f"skipped {folder / 'rows.csv'}:3: a: not a float32 value: 'x'",
        f"skipped {folder / 'rows.csv'}:4: no 'c' (the model's inputs: a, b, c)",
        f"skipped {folder / 'rows.jsonl'}:2: not JSON (Expecting value)",
        f"skipped {folder / 'rows.jsonl'}:3: no 'c' (the model's inputs: a, b, c)",
        f"skipped {folder / 'rows.jsonl'}:4: a: shape [2], the input takes []",
    ]
    assert f"predictions of 6 examples written to {copy / 'predictions.csv'}" in result.stdout
    with open(copy / "predictions.csv", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [os.path.basename(r["file"]) for r in table] == [
        "rows-00000-of-00001.tfrecord#0", "rows-00000-of-00001.tfrecord#1",
        "rows-00000-of-00001.tfrecord#2", "rows.csv:2", "rows.csv:5", "rows.jsonl:1",
    ]  # fmt: skip
    assert list(table[0]) == ["file", "y", "quantiles"]  # every key of predictions_fn
    assert all(len(json.loads(r["quantiles"])) == 2 for r in table)  # a vector as a list
    # The same rows give the same prediction whatever file they came from.
    assert table[3]["y"] == table[5]["y"]  # rows.csv:2 and rows.jsonl:1 hold a=1, b=2, c=3
    for row in table:
        assert f"{row['file']}: y {float(row['y']):.3f}" in result.stdout


class Tracker(Recorder):
    """A project's recorder: keeps what it receives."""

    def __init__(self):
        self.started, self.logs, self.evaluations, self.finished = 0, [], [], 0

    def start(self, run):
        self.started += 1

    def on_train_log(self, step, values):
        self.logs.append((step, dict(values)))

    def on_evaluation(self, evaluation):
        self.evaluations.append((evaluation.step, dict(evaluation.results), evaluation.train_loss))

    def finish(self):
        self.finished += 1


def with_callbacks(*recorders):
    """The regression project with ``recorders`` added by its callbacks_fn."""
    own = project_functions(REGRESSION).callbacks_fn
    return variant(REGRESSION, callbacks_fn=lambda params: [*own(params), *recorders])


def test_a_project_recorder_receives_every_evaluation_and_training_log(regression_data, tmp_path):
    tracker = Tracker()
    trained = run_cli(*regression_argv(regression_data, tmp_path / "a"), project=with_callbacks(tracker))  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    rows = read_metrics(str(tmp_path / "a" / "model"))
    assert (tracker.started, tracker.finished) == (1, 1)
    assert [step for step, _ in tracker.logs] == [4, 8, 12, 16, 20, 24]  # log_steps 4
    assert {"loss", "loss/mse", "loss/quantile", "learning_rate", "steps_per_sec"} <= set(tracker.logs[0][1])  # fmt: skip
    assert [step for step, _, _ in tracker.evaluations] == [r["step"] for r in rows]
    for (_, results, train_loss), row in zip(tracker.evaluations, rows, strict=True):
        assert results == {k.removeprefix("eval_"): v for k, v in row.items() if k.startswith("eval_")}  # fmt: skip
        assert train_loss == row["train_loss"]
    # Beside a trainer, in continuous evaluation: each checkpoint's evaluation too.
    beside = Tracker()
    project = with_callbacks(beside)
    folder = tmp_path / "b"
    command = regression_argv(regression_data, folder, "--save_checkpoints_steps", "8")
    assert run_cli(*command, "--mode", "train", project=project).returncode == 0
    assert beside.evaluations == [] and len(beside.logs) == 6  # training logs, no evaluation
    evaluated = run_cli(*command, "--mode", "continuous_eval", "--eval_timeout_secs", "1", project=project)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert [step for step, _, _ in beside.evaluations] == [8, 16, 24]
    assert all(train_loss is not None for _, _, train_loss in beside.evaluations)


class Broken(Recorder):
    def on_evaluation(self, evaluation):
        raise RuntimeError("boom")


def test_a_failing_recorder_is_named_at_once_and_the_run_still_succeeds(regression_data, tmp_path):
    result = run_cli(*regression_argv(regression_data, tmp_path), project=with_callbacks(Broken()))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (warning,) = [i for i, line in enumerate(lines) if "recorder Broken failed" in line]
    assert "in on_evaluation (RuntimeError: boom; " in lines[warning]
    assert lines[warning - 1].startswith("eval at step 8")  # said at once, at its evaluation
    assert "it records nothing more in this run" in lines[warning]
    assert [r["step"] for r in read_metrics(str(tmp_path / "model"))] == [8, 16, 24]


def test_early_stopping_and_the_plateau_watch_best_metric(regression_data, tmp_path):
    """labels_mean is the same at every evaluation: by it nothing ever improves, while the
    loss does. Patience 2 stops after the third evaluation; the plateau (patience 1) halves
    the rate after each evaluation without improvement."""
    command = regression_argv(
        regression_data, tmp_path, "--best_metric", "labels_mean", "--train_steps", "40",
        "--steps_between_evals", "4", "--early_stopping_patience", "2",
        "--plateau_patience", "1", "--plateau_factor", "0.5",
    )  # fmt: skip
    result = run_cli(*command, project=REGRESSION)
    assert result.returncode == 0, result.stderr
    rows = read_metrics(str(tmp_path / "model"))
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert len({r["eval_labels_mean"] for r in rows}) == 1
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]  # by the loss it would go on
    assert "early stopping at step 12: the eval labels_mean has not improved" in result.stdout
    assert "plateau: no improvement of the eval labels_mean in 1 evaluations" in result.stdout
    base = rows[0]["learning_rate"]
    np.testing.assert_allclose([r["learning_rate"] / base for r in rows], [1, 1, 0.5])


def test_epochs_need_counted_records(regression_data, tmp_path):
    csv_files = ["--train_files", str(regression_data / "eval.csv"), "--eval_files", str(regression_data / "eval.csv")]  # fmt: skip
    refused = run_cli(*regression_argv(None, tmp_path / "a", *csv_files), project=REGRESSION)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    # The file is named first, with what it is, then the ways out.
    assert f"{regression_data / 'eval.csv'}: a text file, no records the library can count" in line  # fmt: skip
    assert "set train_records, give lengths in steps" in line
    counted = run_cli(*regression_argv(None, tmp_path / "b", *csv_files, "--train_records", "64"), project=REGRESSION)  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    assert "4 steps per epoch; training to step 12, evaluating every 4 steps" in counted.stdout
    in_steps = ["--train_steps", "6", "--steps_between_evals", "3"]
    stepped = run_cli(*regression_argv(None, tmp_path / "c", *csv_files, *in_steps), project=REGRESSION)  # fmt: skip
    assert stepped.returncode == 0, stepped.stderr
    assert "training to step 6, evaluating every 3 steps" in stepped.stdout
    assert "steps per epoch" not in stepped.stdout and "(epoch " not in stepped.stdout
    assert [r["epoch"] for r in read_metrics(str(tmp_path / "c" / "model"))] == [None, None]


def test_a_failed_assertion_of_the_project_is_one_line(regression_data, tmp_path):
    """A project's tf.debugging.Assert (a label its loss refuses, say) ends the run with its
    message as one line, exit status 2, however deep in the step it failed."""
    import tensorflow as tf

    own = project_functions(REGRESSION).loss_fn

    def refusing_loss(labels, outputs, params):
        y = labels["y"]
        check = tf.debugging.Assert(tf.reduce_all(y < -100.0), ["target", y[:1], "is not below -100"])  # fmt: skip
        with tf.control_dependencies([check]):
            return own(labels, outputs, params)

    refused = run_cli(
        *regression_argv(regression_data, tmp_path, "--train_steps", "2"),
        project=variant(REGRESSION, loss_fn=refusing_loss),
    )
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert re.fullmatch(r"run.py: error: target -?[0-9.]+ is not below -100", line), line
