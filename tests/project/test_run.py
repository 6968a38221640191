"""The project through run.py, as a user runs it, on its own sample (``sample_fn``): it trains
and evaluates, every metric ``best_metric`` may name is measured, the best checkpoint is
evaluated again, the export takes the declared serving inputs and reloads, and predict writes
what the exported model gives. Then run.py loads no TensorFlow before the configuration is
checked."""

import csv
import glob
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from project_support import PROJECT_FILE, ROOT
from support import run_cli

import project
from library.cli import predict
from library.data.files import expand_files
from library.recorders.metrics_log import read_metrics

SMALL = (
    "--train_steps", "4", "--steps_between_evals", "2", "--log_steps", "2",
    "--train_batch_size", "8", "--eval_batch_size", "8", "--progress", "log",
    "--input_check", "false", "--plots", "false",
)  # fmt: skip


def flag_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


@pytest.fixture(scope="module")
def run(sample, tmp_path_factory):
    """The project trained on its sample: ``(argv, folder, what training printed)``."""
    folder = tmp_path_factory.mktemp("project-run")
    argv = ["--project_file", PROJECT_FILE, *SMALL]
    for key, value in sample.items():
        argv += [f"--{key}", flag_value(value)]
    argv += ["--model_dir", str(folder / "model"), "--best_model_dir", str(folder / "best")]
    trained = run_cli(*argv, project=project)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return argv, folder, trained


def test_the_project_trains_and_evaluates(run):
    _, folder, trained = run
    rows = read_metrics(str(folder / "model"))
    assert [r["step"] for r in rows] == [2, 4], trained.stdout[-2000:]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["eval_loss"]) for r in rows)
    evaluated = run_cli(*run[0], "--mode", "evaluate", "--checkpoint", "best", project=project)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "evaluated " in evaluated.stdout and " loss " in evaluated.stdout


@pytest.mark.parametrize("metric", ["loss", *getattr(project, "METRICS", ())])
def test_every_metric_best_metric_may_name_is_measured(metric, run):
    rows = read_metrics(str(run[1] / "model"))
    values = [r.get(f"eval_{metric}") for r in rows]
    assert all(v is not None and math.isfinite(v) for v in values), (metric, rows)
    picked = _params([*run[0], "--best_metric", metric])  # and a set may pick the best by it
    assert picked.best_metric == metric


def test_the_export_reloads_and_predict_writes_what_it_gives(run, functions):
    argv, folder, _ = run
    exported = run_cli(*argv, "--mode", "export", project=project)
    if functions.serving_inputs is None:  # a project that declares no serving inputs
        assert exported.returncode == 2 and "serving_inputs" in exported.stderr
        return
    assert exported.returncode == 0, exported.stderr
    (path,) = glob.glob(str(folder / "model" / "export" / "*"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    params = _params(argv)
    declared = functions.serving_inputs(params)
    assert set(serve.structured_input_signature[1]) == set(declared)
    predicted = run_cli(*argv, "--mode", "predict", project=project)
    assert predicted.returncode == 0, predicted.stderr
    with open(folder / "model" / "predictions.csv", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert table, predicted.stdout
    # The exported model, given what predict read, gives what predict wrote.
    specs = {name: tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in declared.items()}
    rows, _ = predict.read_rows(expand_files(params.predict_files), functions, params, specs)
    assert [name for name, _ in rows] == [row["file"] for row in table]
    inputs = {k: tf.constant(np.stack([v[k] for _, v in rows]), s.dtype) for k, s in specs.items()}
    outputs = {k: np.asarray(v) for k, v in serve(**inputs).items()}
    assert set(outputs) <= set(table[0]), (set(outputs), list(table[0]))
    for key, values in outputs.items():
        if values.ndim == 1 and values.dtype.kind in "fiu":
            written = [float(row[key]) for row in table]
            np.testing.assert_allclose(written, values.astype(float), atol=1e-4, err_msg=key)


def _params(argv):
    from library import config

    params, _ = config.resolve(
        argv,
        project.HYPERPARAMETERS,
        metrics=getattr(project, "METRICS", ()),
        run_options=getattr(project, "RUN_OPTIONS", ()),
    )
    return params


def test_run_py_imports_no_tensorflow_and_answers_help():
    probe = "import sys, run; print('tensorflow' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert imported.stdout.strip() == "False", imported.stderr
    helped = subprocess.run(
        [sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--train_steps" in helped.stdout
