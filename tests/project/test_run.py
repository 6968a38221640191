"""The shipped project through run.py, as a user runs it: train, evaluate, export, predict on
small records of the converter (in this process), and run.py loading no TensorFlow before
the configuration is checked."""

import csv
import glob
import os
import subprocess
import sys

import tensorflow as tf
from support import ROOT, jpeg_bytes, run_cli, textured_image

import run
from project import hyperparameters


def test_the_project_trains_evaluates_exports_and_predicts(stripes_records, tmp_path):
    common = [
        "--project_file", os.path.join(ROOT, "project.yaml"),
        "--train_files", str(stripes_records / "train-*.tfrecord"),
        "--eval_files", str(stripes_records / "eval-*.tfrecord"),
        "--model_dir", str(tmp_path / "model"), "--best_model_dir", str(tmp_path / "best"),
        "--train_steps", "4", "--steps_between_evals", "2", "--train_batch_size", "8",
        "--eval_batch_size", "8", "--image_size", "32", "--progress", "log",
    ]  # fmt: skip
    project = (hyperparameters, run.load_project)
    trained = run_cli(*common, project=project)
    assert trained.returncode == 0, trained.stderr
    assert "eval at step 4" in trained.stdout
    assert os.path.exists(tmp_path / "best" / "saved_model" / "saved_model.pb")
    evaluated = run_cli(*common, "--mode", "evaluate", "--checkpoint", "best", project=project)
    assert evaluated.returncode == 0 and "accuracy" in evaluated.stdout, evaluated.stderr
    exported = run_cli(*common, "--mode", "export", project=project)
    assert exported.returncode == 0, exported.stderr
    (path,) = glob.glob(str(tmp_path / "model" / "export" / "*"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    image = jpeg_bytes(textured_image(40, 40, seed=3))
    served = serve(image_bytes=tf.constant([image]))
    assert served["class_name"].numpy()[0] in (b"horizontal", b"vertical")
    (tmp_path / "photo.jpg").write_bytes(image)
    predicted = run_cli(*common, "--mode", "predict", "--predict_files", str(tmp_path / "photo.jpg"), project=project)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    with open(tmp_path / "model" / "predictions.csv", encoding="utf-8") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["class_name"] == served["class_name"].numpy()[0].decode()


def test_run_py_imports_no_tensorflow_and_answers_help():
    probe = "import sys, run; print('tensorflow' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert imported.stdout.strip() == "False", imported.stderr
    helped = subprocess.run(
        [sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--learning_rate" in helped.stdout
