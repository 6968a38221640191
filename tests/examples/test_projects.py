"""The examples that are other tasks, each a project variant run as its one command runs it,
on tiny data: a regression from table columns, and one encoder with two heads (a digit and
its box). Their run.py modes run in this process; the reload of the exported model is a
process of its own (a fresh process is the point)."""

import ast
import csv
import glob
import json
import os
import re

import pytest
from support import ROOT, event_tags, run_cli

from examples import digit_boxes, regression
from examples.digit_boxes import __main__ as boxes_journey
from examples.regression import __main__ as regression_journey
from library.recorders.metrics_log import read_metrics


def journey(commands, project, project_file):
    """train, evaluate, export, predict through the project's run.py entry, in-process."""
    printed = {}
    for name, argv in commands.items():
        result = run_cli("--project_file", project_file, *argv, project=project)
        assert result.returncode == 0, (name, result.stderr[-3000:])
        printed[name] = result
    return printed


def string_constants(folder):
    found = set()
    for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), path)
        found |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}  # fmt: skip
    return found


def test_no_file_of_the_library_names_their_features():
    names = {*regression.COLUMNS, regression.TARGET, "box", digit_boxes.BOX_KEY}
    assert not names & string_constants("library")


def test_the_regression_trains_evaluates_exports_reloads_and_predicts(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    tables = regression_journey.write_tables(data)
    counts = regression_journey.write_records(tables, data)
    assert counts == {"train": 265, "validation": 88, "test": 89}
    commands = regression_journey.commands(data, out, "--train_epochs", "4", "--epochs_between_evals", "2")  # fmt: skip
    printed = journey(commands, regression, regression.PROJECT_FILE)  # fmt: skip
    assert "8 steps per epoch; training to step 32, evaluating every 16 steps" in printed["train"].stdout  # fmt: skip
    rows = read_metrics(os.path.join(out, "checkpoints"))
    assert [r["step"] for r in rows] == [16, 32] and all("eval_mae" in r for r in rows)
    assert re.search(
        r"on .*test-\*\.tfrecord: loss [0-9.]+, mae [0-9.]+", printed["evaluate"].stdout
    )
    export_dir = re.search(r"exported SavedModel: (\S+)", printed["export"].stdout).group(1)
    reloaded = regression_journey.predict_with_saved_model(export_dir, tables["test"])
    values = [float(v) for v in re.findall(r"progression ([0-9.-]+) \(true", reloaded)]
    assert len(values) == 5
    with open(os.path.join(out, "best", "predictions.csv"), encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 89 and list(table[0]) == ["file", "progression"]
    # The fresh process's SavedModel predicts what predict mode did, row for row.
    assert values == pytest.approx([float(r["progression"]) for r in table[:5]], abs=0.05)
    figure = regression_journey.draw_predictions(os.path.join(out, "best", "predictions.csv"), tables["test"], str(tmp_path / "p.png"))  # fmt: skip
    with open(figure, "rb") as stream:
        assert stream.read(4) == b"\x89PNG"


def test_one_encoder_two_heads_with_per_head_loss_terms_and_a_box_metric(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "out")
    counts = boxes_journey.make_data(data, count=200)
    assert counts == {"train": 120, "validation": 40, "test": 40}
    commands = boxes_journey.commands(
        data, out, "--train_epochs", "2", "--epochs_between_evals", "1", "--train_batch_size", "20",
        "--filters", "[8, 8, 8]", "--best_saved_model", "false", "--batch_norm_refresh_batches", "0",
    )  # fmt: skip
    for name in ("evaluate", "export", "predict"):
        commands[name] += ["--filters", "[8, 8, 8]"]
    printed = journey(commands, digit_boxes, digit_boxes.PROJECT_FILE)  # fmt: skip
    rows = read_metrics(os.path.join(out, "checkpoints"))
    assert [r["step"] for r in rows] == [6, 12]
    for row in rows:  # a term per head, beside the total they sum to
        assert row["eval_loss"] == pytest.approx(row["eval_loss/class"] + row["eval_loss/box"], rel=1e-5)  # fmt: skip
        assert {"train_loss/class", "train_loss/box", "eval_accuracy", "eval_box_iou"} <= set(row)
    tags = event_tags(os.path.join(out, "checkpoints", "train"))
    assert {"loss/class", "loss/box", "input"} <= set(tags)  # the kit's input picture too
    with open(os.path.join(out, "best", "best.json"), encoding="utf-8") as stream:
        assert json.load(stream)["metric"] == "box_iou"
    for name in ("confusion_matrix.png", "predictions.png"):  # the kit's, on the class head
        assert os.path.exists(os.path.join(out, "best", name))
    export_dir = re.search(r"exported SavedModel: (\S+)", printed["export"].stdout).group(1)
    image = sorted(glob.glob(os.path.join(data, "test_images", "*.jpg")))[0]
    reloaded = boxes_journey.predict_with_saved_model(export_dir, image)
    assert re.search(r"digit \d \(probability [0-9.]+\), box \[[-0-9., ]+\]", reloaded), reloaded
    with open(os.path.join(out, "best", "predictions.csv"), encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 40 and list(table[0]) == [
        "file",
        "class",
        "probability",
        "box",
        "class_name",
    ]
    assert all(len(json.loads(r["box"])) == 4 for r in table)
    figure = boxes_journey.draw_predictions(os.path.join(out, "best", "predictions.csv"), os.path.join(data, "boxes.json"), str(tmp_path / "b.png"))  # fmt: skip
    assert os.path.getsize(figure) > 0
