"""MLflowLogger against a real MLflow store (SQLite in tmp_path): a run logs its parameters, its
training logs and each evaluation; a run SIGKILLed twice continues its one MLflow run with
each step once in every metric; a start killed before it kept a new run's id finds that run;
an evaluation given again after a kill still logs its best; without MLflow a project that asks
for it is told, in one line, what to install."""

import json
import os
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient
from support import REGRESSION, ROOT, regression_argv, resolve_argv, run_cli, variant

from library.recorders.base import Run
from library.recorders.csv_logger import CSVLogger
from library.recorders.hparams import RUN_KEYS
from library.recorders.metrics_log import read_metrics
from library.recorders.mlflow_logger import RUN_FILE, MLflowLogger

# What MLflow's SQL store and SQLAlchemy deprecate of themselves is not ours to fix (as
# pyproject.toml lets TensorFlow's own pass).
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:sqlalchemy"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow"),
]

HYPERPARAMETERS = {"units", "learning_rate", "quantile_weight"}  # the regression's


def store(folder) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def the_run(uri, experiment, model_dir):
    """The experiment's only MLflow run, the one ``mlflow_run.json`` keeps."""
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    with open(os.path.join(model_dir, RUN_FILE), encoding="utf-8") as stream:
        kept = json.load(stream)["run_id"]
    assert [run.info.run_id for run in runs] == [kept]
    return client, runs[0]


def steps(client, run, key) -> list[int]:
    return [metric.step for metric in client.get_metric_history(run.info.run_id, key)]


def test_a_run_logs_its_parameters_training_logs_and_each_evaluation(regression_data, tmp_path):
    uri, model_dir = store(tmp_path), tmp_path / "model"

    def callbacks_fn(params):
        return [CSVLogger(), MLflowLogger(uri, "regression", tags={"team": "tests"})]

    # labels_mean is the same at every evaluation: by it only the first is a new best.
    command = regression_argv(regression_data, tmp_path, "--best_metric", "labels_mean")
    result = run_cli(*command, project=variant(REGRESSION, callbacks_fn=callbacks_fn))
    assert result.returncode == 0, result.stderr
    assert "MLflowLogger: logging to MLflow run " in result.stdout
    client, run = the_run(uri, "regression", model_dir)
    assert run.info.status == "FINISHED" and mlflow.active_run() is None  # no global state
    assert run.info.run_name == str(model_dir) and run.data.tags["team"] == "tests"
    # The parameters of the HParams dashboard: the hyperparameters, the options of training.
    assert set(run.data.params) == HYPERPARAMETERS | set(RUN_KEYS)
    params = run.data.params
    assert (params["learning_rate"], params["best_metric"]) == ("0.02", "labels_mean")
    # Each evaluation at its step, value for value with metrics.jsonl; the training logs.
    rows = read_metrics(str(model_dir))
    assert [r["step"] for r in rows] == [8, 16, 24]
    for name in ("loss", "loss/mse", "mae", "labels_mean"):
        history = client.get_metric_history(run.info.run_id, f"eval/{name}")
        expected = [(r["step"], r[f"eval_{name}"]) for r in rows]
        assert [(m.step, m.value) for m in history] == expected, name
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["train_loss"]) for r in rows]
    for name in ("loss", "loss/quantile", "learning_rate", "grad_norm"):
        assert steps(client, run, f"train/{name}") == [4, 8, 12, 16, 20, 24]  # log_steps 4
    # The best model's metrics, at its new best only.
    history = client.get_metric_history(run.info.run_id, "best/mae")
    assert [(m.step, m.value) for m in history] == [(8, rows[0]["eval_mae"])]
    assert steps(client, run, "best/labels_mean") == steps(client, run, "best/loss") == [8]


def in_process(tmp_path) -> Run:
    """What a recorder's ``start`` receives in a run of the regression into ``tmp_path``."""
    params = resolve_argv(regression_argv(None, tmp_path), REGRESSION)
    return Run(params, None, say=lambda line: None)


def test_a_start_killed_before_it_kept_the_new_run_id_finds_that_run_again(tmp_path):
    """The run's key is kept before the MLflow run is created, its id after: a kill between
    the two leaves a run the next start finds by that key, not an orphan beside a new one."""
    run, uri = in_process(tmp_path), store(tmp_path)
    MLflowLogger(uri, "found").start(run)
    path = tmp_path / "model" / RUN_FILE
    kept = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in kept.items() if k != "run_id"}))
    again = MLflowLogger(uri, "found")
    again.start(run)
    assert again.run_id == kept["run_id"]
    again.finish()
    the_run(uri, "found", tmp_path / "model")  # the only run, its id kept again


# The regression's run.py with two hooks of a test (not sleeps), as test_exact_resume.py's: an
# action that SIGKILLs the process after training step 5 (the last checkpoint is step 3's, the
# training log of step 4 is made again), and an MLflowLogger that SIGKILLs it right after it
# logged the evaluation of step 8, before the run recorded that it received it (the restart
# gives it that evaluation again). Each kill happens once (a marker file).
KILLABLE = r"""
import os, signal, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, "tests")]
from library.cli import main
from library.recorders.base import Action
from library.recorders.mlflow_logger import MLflowLogger
from projects import regression
from support import variant

folder, uri = sys.argv[1], sys.argv[2]

def once(name):
    marker = os.path.join(folder, f"killed-{{name}}")
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True

class KillAfterStep(Action):
    intervals = (1,)
    def __call__(self, step):
        if step == 5 and once("step"):
            os.kill(os.getpid(), signal.SIGKILL)

class KilledRightAfterLogging(MLflowLogger):
    def on_evaluation(self, evaluation):
        super().on_evaluation(evaluation)
        if evaluation.step == 8 and once("evaluation"):
            os.kill(os.getpid(), signal.SIGKILL)

hooks = lambda params: [KillAfterStep(), KilledRightAfterLogging(uri, "resumed")]
sys.exit(main(sys.argv[3:], variant(regression, callbacks_fn=hooks)))
"""

RUN = ["--train_steps", "16", "--steps_between_evals", "8", "--save_checkpoints_steps", "3"]
RUN += ["--log_steps", "2"]


def test_a_run_killed_twice_continues_its_mlflow_run_with_each_step_once(regression_data, tmp_path):
    uri, model_dir = store(tmp_path), tmp_path / "model"
    command = [sys.executable, "-c", KILLABLE.format(root=ROOT), str(tmp_path), uri]
    command += regression_argv(regression_data, tmp_path, *RUN)
    starts = []
    for _ in range(4):
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=ROOT)
        starts.append(done)
        if done.returncode != -9:  # SIGKILL
            break
    assert [s.returncode for s in starts] == [-9, -9, 0], [s.stderr[-2000:] for s in starts]
    client, run = the_run(uri, "resumed", model_dir)  # one run, its id kept
    assert f"MLflowLogger: continuing MLflow run {run.info.run_id}" in starts[-1].stdout
    assert run.info.status == "FINISHED"
    assert set(run.data.params) == HYPERPARAMETERS | set(RUN_KEYS)
    # Each step once in every metric: the training log of step 4 was made twice, the
    # evaluation of step 8 handed over twice (its values are the first's, metrics.jsonl's).
    rows = read_metrics(str(model_dir))
    bests = [
        r["step"]
        for i, r in enumerate(rows)
        if r["eval_mae"] < min((p["eval_mae"] for p in rows[:i]), default=float("inf"))
    ]
    logged = set(run.data.metrics)
    assert {"eval/loss", "eval/mae", "train_loss", "train/loss", "best/mae"} <= logged
    for key in logged:
        expected = list(range(2, 17, 2))  # log_steps 2
        if key.startswith(("eval/", "train_loss")):
            expected = [8, 16]
        elif key.startswith("best/"):
            expected = bests
        assert steps(client, run, key) == expected, key
    history = client.get_metric_history(run.info.run_id, "eval/mae")
    assert [m.value for m in history] == [r["eval_mae"] for r in rows]


def test_a_project_that_asks_for_mlflow_without_it_is_told_what_to_install(
    regression_data, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    project = variant(REGRESSION, callbacks_fn=lambda params: [MLflowLogger()])
    result = run_cli(*regression_argv(regression_data, tmp_path), project=project)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("run.py: error: MLflowLogger needs MLflow, which is not installed")
    assert line.endswith(
        ": pip install mlflow-skinny==3.17.2 (pinned in requirements-examples.txt)"
    )
