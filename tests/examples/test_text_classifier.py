"""The text classifier (examples/text_classifier), a project of real text that ships with
Python: its data (docstrings labelled by package, split by a hash), its journey's run.py
commands in this process on a few dozen texts of each package, its SavedModel reloaded in a
fresh process, predict without the training records, and the model on raw strings."""

import ast
import csv
import glob
import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from support import ROOT, one_line, resolve_argv, run_cli

from examples import text_classifier
from examples.text_classifier import LABEL, TEXT, data
from examples.text_classifier import __main__ as journey
from library.outputs import decided
from library.recorders.metrics_log import read_metrics

TINY = {"train": 24, "validation": 6, "test": 4}  # texts of each package in each split
# Every command is given the model's size (what the data decides, the checkpoints keep): small,
# so that training takes seconds, and a higher rate than the default set's (24 steps, not 720).
SMALL = {"max_tokens": 1500, "sequence_length": 64, "embedding_dim": 16, "learning_rate": 0.02}
FLAGS = tuple(part for key, value in SMALL.items() for part in (f"--{key}", str(value)))


def string_constants(folder):
    found = set()
    for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as stream:
            tree = ast.parse(stream.read(), path)
        found |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    return found


def test_no_file_of_the_library_names_its_features():
    assert not {TEXT, LABEL, f"{LABEL}_name"} & string_constants("library")


def test_the_docstrings_are_labelled_by_package_and_split_by_a_hash_of_each_text():
    rows = data.collect()
    texts = [text for text, _ in rows]
    assert len(texts) == len(set(texts)) > 1000  # each text once, in one package only
    assert all(len(text.split()) >= data.MIN_WORDS for text in texts)
    by_split = data.splits(rows)
    for split, members in by_split.items():
        assert {label for _, label in members} == set(range(len(data.PACKAGES))), split
        assert all(data.split_of(text) == split for text, _ in members)
    shares = {split: len(members) / len(rows) for split, members in by_split.items()}
    assert shares == pytest.approx({"train": 0.7, "validation": 0.15, "test": 0.15}, abs=0.05)
    assert data.collect() == rows  # the same texts in the same order, every time


@dataclass(frozen=True)
class Journey:
    data: str
    out: str
    printed: dict  # by command

    @property
    def predictions(self):
        with open(os.path.join(self.out, "best", "predictions.csv"), encoding="utf-8") as stream:
            return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The journey's commands on 24 training texts of each package (4 epochs of 6 steps,
    evaluated every 2): train, evaluate the best on the test records, export, predict."""
    folder = tmp_path_factory.mktemp("text_classifier")
    folder_data, out = str(folder / "data"), str(folder / "out")
    counts = data.write_dataset(folder_data, per_class=TINY)
    assert {split: sum(n.values()) for split, n in counts.items()} == {
        "train": 192,
        "validation": 48,
        "test": 32,
    }
    commands = journey.commands(
        folder_data, out, "--train_epochs", "4", "--epochs_between_evals", "2", "--progress", "log"
    )
    printed = {}
    for name, argv in commands.items():
        argv = ["--project_file", text_classifier.PROJECT_FILE, *argv, *FLAGS]
        result = run_cli(*argv, project=text_classifier)
        assert result.returncode == 0, (name, result.stderr[-3000:])
        printed[name] = result.stdout
    return Journey(folder_data, out, printed)


def test_the_journey_trains_evaluates_exports_and_predicts(trained, tmp_path):
    assert (
        "6 steps per epoch; training to step 24, evaluating every 12 steps"
        in trained.printed["train"]
    )
    rows = read_metrics(os.path.join(trained.out, "checkpoints"))
    assert [r["step"] for r in rows] == [12, 24]
    # Eight packages: chance is 1/8; 24 steps on 192 texts are well past it.
    assert max(r["eval_accuracy"] for r in rows) > 0.3, rows
    with open(os.path.join(trained.out, "best", "best.json"), encoding="utf-8") as stream:
        assert json.load(stream)["metric"] == "accuracy"
    # What the data decided (the classes of the manifest, the vocabulary of the training
    # texts) is in the checkpoint.
    saved = decided.read(os.path.join(trained.out, "checkpoints", "ckpt-24"))
    assert saved["modules"] == list(data.PACKAGES)
    vocabulary = saved["vocabulary"]
    assert 100 < len(vocabulary) <= SMALL["max_tokens"] - 2 and "the" in vocabulary
    assert re.search(
        r"on .*test-\*\.tfrecord: loss [0-9.]+, accuracy [0-9.]+", trained.printed["evaluate"]
    )
    table = trained.predictions
    assert len(table) == 32 and list(table[0]) == ["file", LABEL, f"{LABEL}_name", "probability"]
    for row in table:
        assert data.PACKAGES[int(row[LABEL])] == row[f"{LABEL}_name"]
        assert 1 / len(data.PACKAGES) - 1e-6 <= float(row["probability"]) <= 1 + 1e-6
    pairs = journey.predicted_and_true(
        os.path.join(trained.out, "best", "predictions.csv"),
        os.path.join(trained.data, data.JSON_LINES),
    )
    assert Counter(true for true, _ in pairs) == dict.fromkeys(data.PACKAGES, 4)
    figure = journey.draw_confusion(pairs, str(tmp_path / "confusion.png"))
    with open(figure, "rb") as stream:
        assert stream.read(4) == b"\x89PNG"


def test_the_saved_model_reloaded_in_a_fresh_process_classifies_sentences(trained):
    export_dir = re.search(r"exported SavedModel: (\S+)", trained.printed["export"]).group(1)
    with open(os.path.join(trained.data, data.JSON_LINES), encoding="utf-8") as stream:
        first = json.loads(stream.readline())[TEXT]
    printed = journey.classify_with_saved_model(export_dir, [first, journey.SENTENCES[0]])
    answers = re.findall(r"SavedModel: (\w+) \(probability ([0-9.]+)\)", printed)
    assert len(answers) == 2 and all(name in data.PACKAGES for name, _ in answers), printed
    # The fresh process, which knows no vocabulary but the export's, gives what predict did.
    row = trained.predictions[0]
    assert answers[0][0] == row[f"{LABEL}_name"]
    assert float(answers[0][1]) == pytest.approx(float(row["probability"]), abs=2e-3)


def test_predict_needs_no_training_records(trained, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(os.path.dirname(trained.data), folder)
    moved = tmp_path / "moved"
    moved.mkdir()
    for path in glob.glob(str(folder / "data" / "train*")):
        shutil.move(path, moved)
    assert not glob.glob(str(folder / "data" / "train-*"))
    written = folder / "out" / "best" / "predictions.csv"
    written.unlink()  # the trained run's: predict would not write over it
    argv = journey.commands(str(folder / "data"), str(folder / "out"))["predict"]
    predicted = run_cli(
        "--project_file", text_classifier.PROJECT_FILE, *argv, *FLAGS, project=text_classifier
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "predictions of 32 examples" in predicted.stdout
    with open(written, encoding="utf-8") as stream:
        assert [r[f"{LABEL}_name"] for r in csv.DictReader(stream)] == [
            r[f"{LABEL}_name"] for r in trained.predictions
        ]


def test_records_whose_manifest_lists_no_classes_are_refused_in_one_line(tmp_path):
    from library.data.records import RecordWriter, example

    for name in ("train", "validation"):
        writer = RecordWriter(str(tmp_path), name, num_shards=1)
        writer.write(example({TEXT: "Return the header of the message.", LABEL: 1}))
        writer.close()  # no classes=...
    argv = journey.commands(str(tmp_path), str(tmp_path / "out"))["train"]
    refused = run_cli(
        "--project_file", text_classifier.PROJECT_FILE, *argv, project=text_classifier
    )
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert "lists their classes" in line and "modules" in line, line


@pytest.mark.parametrize("hyperparameter_set", ["default", "conv"])
def test_each_model_takes_raw_strings_even_empty_ones(hyperparameter_set):
    import tensorflow as tf

    from examples.text_classifier import functions

    params = resolve_argv(
        [
            "--project_file",
            text_classifier.PROJECT_FILE,
            "--hyperparameter_set",
            hyperparameter_set,
        ],
        text_classifier,
    ).replace(vocabulary=["event", "loop", "header", "message"], modules=list(data.PACKAGES))
    model = functions.model_fn(params)
    texts = tf.constant(["Run the event loop.", "", "words it does not know"])
    logits = model({TEXT: texts}, training=False)
    assert logits.shape == (3, len(data.PACKAGES))
    assert np.all(np.isfinite(logits.numpy()))  # no token at all pools to zeros, not NaN
    predictions = functions.predictions_fn(logits, params)
    assert set(predictions[f"{LABEL}_name"].numpy().astype(str)) <= set(data.PACKAGES)


def test_the_sample_is_a_few_texts_of_each_package(tmp_path):
    from examples.text_classifier import functions

    params = resolve_argv(["--project_file", text_classifier.PROJECT_FILE], text_classifier)
    keys = functions.sample_fn(str(tmp_path), params)
    with open(tmp_path / "train.manifest.json", encoding="utf-8") as stream:
        manifest = json.load(stream)
    assert manifest["num_records"] == 4 * len(data.PACKAGES)
    assert manifest["classes"] == list(data.PACKAGES)
    with open(keys["predict_files"], encoding="utf-8") as stream:
        assert len(stream.readlines()) == len(data.PACKAGES)
    assert glob.glob(keys["eval_files"]) and keys["max_tokens"] < params.max_tokens
