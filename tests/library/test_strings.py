"""A model that takes raw strings (tests/projects/text): the strings reach it, its lookup table
goes into every export, and what the data decides (its vocabulary, adapted by prepare_fn on
the training texts) is saved with the run: predict, evaluate and export need no training data,
and a resume whose data decides another vocabulary is refused."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest
from projects import text
from support import one_line, run_cli, text_rows, write_text_records

from library.outputs import decided
from library.recorders.metrics_log import read_metrics


@dataclass(frozen=True)
class TextRun:
    folder: str  # holds data/{train,eval}, model, best
    result: object

    def argv(self, *extra):
        return [
            "--project_file", text.PROJECT_FILE,
            "--train_files", os.path.join(self.folder, "data", "train", "train-*.tfrecord"),
            "--eval_files", os.path.join(self.folder, "data", "eval", "eval-*.tfrecord"),
            "--model_dir", os.path.join(self.folder, "model"),
            "--best_model_dir", os.path.join(self.folder, "best"),
            *extra,
        ]  # fmt: skip


@pytest.fixture(scope="module")
def text_run(text_data, tmp_path_factory):
    """24 steps of the text classifier, evaluated at 12 and 24, its best exported."""
    folder = str(tmp_path_factory.mktemp("text-run"))
    shutil.copytree(text_data, os.path.join(folder, "data"))
    run = TextRun(folder, None)
    result = run_cli(*run.argv(), project=text)
    assert result.returncode == 0, result.stderr
    return TextRun(folder, result)


@pytest.fixture
def text_copy(text_run, tmp_path):
    folder = str(tmp_path / "run")
    shutil.copytree(text_run.folder, folder)
    return TextRun(folder, text_run.result)


def test_a_model_taking_raw_strings_learns_and_its_export_holds_the_lookup_table(text_run):
    rows = read_metrics(os.path.join(text_run.folder, "model"))
    assert [r["step"] for r in rows] == [12, 24]
    assert rows[-1]["eval_accuracy"] > 0.8, rows
    # The vocabulary the training texts decided is in every checkpoint.
    saved = decided.read(os.path.join(text_run.folder, "model", "ckpt-24"))
    assert "rocket" in saved["vocabulary"] and "kitten" in saved["vocabulary"]
    # The best SavedModel, exported at the end of training, classifies a sentence in a
    # fresh process (which knows nothing of the vocabulary but what the export holds).
    probe = (
        "import sys, tensorflow as tf\n"
        "serve = tf.saved_model.load(sys.argv[1]).signatures['serving_default']\n"
        "out = serve(text=tf.constant(['the rocket launch near the moon', 'a kitten with fur']))\n"
        "print(out['class'].numpy().tolist())"
    )
    saved_model = os.path.join(text_run.folder, "best", "saved_model")
    answer = subprocess.run(
        [sys.executable, "-c", probe, saved_model], capture_output=True, text=True, timeout=120
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert answer.stdout.strip().splitlines()[-1] == "[1, 0]"


def test_predict_evaluate_and_export_need_no_training_data(text_copy, text_data):
    shutil.move(os.path.join(text_copy.folder, "data", "train"), text_copy.folder + "-moved")
    predicted = run_cli(
        *text_copy.argv("--mode", "predict", "--predict_files", str(text_data / "eval.jsonl")),
        project=text,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "predictions of 32 examples" in predicted.stdout
    evaluated = run_cli(*text_copy.argv("--mode", "evaluate", "--checkpoint", "best"), project=text)
    assert evaluated.returncode == 0, evaluated.stderr
    exported = run_cli(*text_copy.argv("--mode", "export"), project=text)
    assert exported.returncode == 0, exported.stderr


def test_a_resume_whose_data_decides_another_vocabulary_is_refused_in_one_short_line(text_copy):
    other_topics = (("apple", "pear", "plum", "fig"), ("violin", "drum", "flute", "harp"))
    write_text_records(
        os.path.join(text_copy.folder, "data", "train"), "train", text_rows(96, 3, other_topics)
    )
    model_dir = os.path.join(text_copy.folder, "model")
    before = sorted(os.listdir(model_dir))
    with open(os.path.join(model_dir, "hyperparameters.yaml"), encoding="utf-8") as stream:
        saved_config = stream.read()
    refused = run_cli(*text_copy.argv("--train_steps", "36"), project=text)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert len(line) < 200 + len(model_dir), line
    assert "vocabulary" in line and "values now" in line and "new model_dir" in line
    assert "kitten" not in line  # counts, not the tokens
    assert sorted(os.listdir(model_dir)) == before  # nothing trained, nothing written
    with open(os.path.join(model_dir, "hyperparameters.yaml"), encoding="utf-8") as stream:
        assert stream.read() == saved_config


def test_xla_on_a_model_taking_strings_is_one_line(text_data, tmp_path):
    run = TextRun(str(tmp_path), None)
    shutil.copytree(text_data, os.path.join(tmp_path, "data"))
    refused = run_cli(*run.argv("--xla", "true", "--train_steps", "2"), project=text)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert "xla: the train step takes the string input 'text'" in line, line
    assert "xla: false" in line


def test_values_numpy_gives_are_saved_as_plain_yaml(tmp_path):
    import numpy as np

    from library import config

    params = config.default_params(text.HYPERPARAMETERS).replace(
        vocabulary=np.array(["cat", "dog"]), num_classes=np.int64(3), learning_rate=np.float32(0.5)
    )
    assert params.vocabulary == ("cat", "dog") and type(params.vocabulary[0]) is str
    assert type(params.num_classes) is int and params.learning_rate == 0.5
    config.save_config(params, str(tmp_path))
    with open(tmp_path / "hyperparameters.yaml", encoding="utf-8") as stream:
        assert "vocabulary: [cat, dog]" in stream.read()
    assert json.dumps(decided.changes(config.default_params(text.HYPERPARAMETERS), params))
