"""An MLflow recorder, in the manner of Lightning's ``MLFlowLogger``: the run's parameters, its
training logs, its evaluations and its bests in one MLflow run, which a resumed run continues.

MLflow is optional: it is imported here only, when a project builds an ``MLflowLogger``
(``pip install mlflow-skinny``, pinned in requirements-examples.txt; the full ``mlflow``
package serves the UI). Everything goes through ``MlflowClient`` with explicit run ids: no
active run is left behind in a process that trains several times (a search, a sweep).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from library.base.errors import Interrupted, ProjectError
from library.base.files import atomic_write_text, exists, read_text
from library.config import HYPERPARAMETERS, PROJECT
from library.recorders.base import Evaluation, Recorder, Run
from library.recorders.hparams import RUN_KEYS, hparam_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

RUN_FILE = "mlflow_run.json"  # in run.output_dir: the store, experiment and run to continue
KEY_TAG = "scaffold.run_key"  # finds a run created just before a kill kept its id
INSTALL = "pip install mlflow-skinny==3.17.2 (pinned in requirements-examples.txt)"
PARAMS_PER_CALL, METRICS_PER_CALL = 100, 1000  # MLflow's limits of one log_batch


def _import_mlflow():
    """MLflow's module, imported only when a project uses it."""
    try:
        import mlflow
        import mlflow.entities
        import mlflow.environment_variables
        import mlflow.exceptions
    except ImportError as error:
        raise ProjectError(
            f"MLflowLogger needs MLflow, which is not installed for {sys.executable} "
            f"({error}): {INSTALL}"
        ) from None
    return mlflow


class MLflowLogger(Recorder):
    """Logs a run to MLflow: its parameters at its start, each training log line, each
    evaluation, and the best model's metrics at each new best.

    What it logs (all as metrics at the training step, in one MLflow run):

    * params: the hyperparameters and the run options that shape training (those of the
      HParams dashboard, ``library/recorders/hparams.py``), lists and mappings as JSON;
    * ``train/<value>``: each training log line (loss and its terms, learning rate, norms,
      throughput), as TensorBoard's ``train`` scalars;
    * ``eval/<result>`` and ``train_loss`` (the mean training loss since the previous
      checkpoint, as metrics.jsonl pairs it with the evaluation): each evaluation;
    * ``best/<result>``: every result of an evaluation that is a new best (``best_metric``).

    The run's id is kept in ``mlflow_run.json`` in the run's ``output_dir``: a resumed run
    continues the same MLflow run (status RUNNING again), in the store it began in. Each
    metric has each step once whatever kills the run: the steps a metric already has are read
    from the store when a run resumes, and a step it has is not logged again (a kill after
    MLflow stored an evaluation and before the run recorded its delivery, or training steps
    redone from the last checkpoint, would give them twice). A step redone keeps its first
    value. ``finish`` ends the run: FINISHED, KILLED when a signal stopped it (resumable),
    FAILED when training raised. A separate evaluator (``--mode continuous_eval``) logs to a
    run of its own (its ``output_dir`` is ``model_dir/eval``).

    Args:
        tracking_uri: the MLflow store or server; by default MLflow's own
            (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working folder),
            resolved at the run's first start and kept for its resumes.
        experiment_name: created when missing; by default ``MLFLOW_EXPERIMENT_NAME``, else
            MLflow's ``Default``.
        run_name: the MLflow run's name; by default the run's ``model_dir``.
        tags: tags of the MLflow run, set when it is created.

    Raises:
        ProjectError: MLflow is not installed (one line saying what to install).
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        self.mlflow = _import_mlflow()
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name
        self.run_name, self.tags = run_name, dict(tags or {})
        self.client: MlflowClient | None = None  # for the run's store, made by start()
        self.run_id: str | None = None
        self.logged: dict[str, set[int]] = {}  # the steps each metric has in the store

    def start(self, run: Run) -> None:
        self.path = os.path.join(run.output_dir, RUN_FILE)
        saved = json.loads(read_text(self.path)) if exists(self.path) else {}
        uri = self.tracking_uri or saved.get("tracking_uri") or self.mlflow.get_tracking_uri()
        if saved and saved.get("tracking_uri") != uri:
            run.say(f"MLflowLogger: {self.path} names another store; a new run in {_shown(uri)}")
            saved = {}
        self.client = self.mlflow.MlflowClient(tracking_uri=uri)
        self.logged = {}
        run_id = saved.get("run_id") or self._created_before_a_kill(saved)
        resumed = run_id is not None
        if run_id is None:
            run_id = self._create(run, uri)
        self.run_id = run_id
        mlflow_run = self._store.get_run(run_id)
        if mlflow_run.info.status != "RUNNING":  # ended by an earlier start
            self._store.update_run(run_id, status="RUNNING")
        for key in mlflow_run.data.metrics:
            history = self._store.get_metric_history(run_id, key)
            self.logged[key] = {metric.step for metric in history}
        self._log_params(run, mlflow_run.data.params)
        doing = "continuing" if resumed else "logging to"
        run.say(f"MLflowLogger: {doing} MLflow run {self.run_id} in {_shown(uri)}")

    @property
    def _store(self) -> MlflowClient:
        """The client of the run's store, which ``start`` made."""
        if self.client is None:
            raise RuntimeError("MLflowLogger: start() comes first")
        return self.client

    @property
    def _run_id(self) -> str:
        """The MLflow run's id, which ``start`` set."""
        if self.run_id is None:
            raise RuntimeError("MLflowLogger: start() comes first")
        return self.run_id

    def _created_before_a_kill(self, saved: dict) -> str | None:
        """The run created with ``saved``'s key by a start killed before it kept its id (its
        id kept now), or None."""
        if "key" not in saved:
            return None
        runs = self._store.search_runs(
            [saved["experiment_id"]], f"tags.`{KEY_TAG}` = '{saved['key']}'", max_results=1
        )
        if not runs:
            return None
        atomic_write_text(self.path, json.dumps({**saved, "run_id": runs[0].info.run_id}))
        return runs[0].info.run_id

    def _create(self, run: Run, uri: str) -> str:
        default = self.mlflow.environment_variables.MLFLOW_EXPERIMENT_NAME.get()
        experiment_id = self._experiment(self.experiment_name or default or "Default")
        # The key is kept before the run exists: a kill between the two finds the run again.
        key = uuid.uuid4().hex
        record = {"tracking_uri": uri, "experiment_id": experiment_id, "key": key}
        atomic_write_text(self.path, json.dumps(record))
        run_name = self.run_name or run.params.model_dir
        if run.role == "evaluator":
            run_name += " (evaluator)"
        tags = {**self.tags, KEY_TAG: key, "scaffold.model_dir": os.path.abspath(run.model_dir)}
        created = self._store.create_run(experiment_id, run_name=run_name, tags=tags)
        atomic_write_text(self.path, json.dumps({**record, "run_id": created.info.run_id}))
        return created.info.run_id

    def _experiment(self, name: str) -> str:
        experiment = self._store.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self._store.create_experiment(name)
        except self.mlflow.exceptions.MlflowException:  # another process created it meanwhile
            experiment = self._store.get_experiment_by_name(name)
            if experiment is None:  # not made by another process: MLflow's error says why
                raise
            return experiment.experiment_id

    def _log_params(self, run: Run, existing: Mapping[str, str]) -> None:
        """The parameters the run does not have yet; a value changed since it began (a resume
        with a longer training) is said, not logged: MLflow keeps a parameter's first value."""
        params = run.params
        values = dict(params.section(HYPERPARAMETERS))
        project = params.section(PROJECT)
        values.update({key: project[key] for key in RUN_KEYS if key in project})
        values = {key: str(hparam_value(value)) for key, value in values.items()}
        changed = [k for k, v in values.items() if k in existing and existing[k] != v]
        if changed:
            said = ", ".join(f"{k} {existing[k]} -> {values[k]}" for k in changed)
            run.say(f"MLflowLogger: changed since the run began, kept as they were: {said}")
        entities = self.mlflow.entities
        fresh = [entities.Param(k, v) for k, v in values.items() if k not in existing]
        for first in range(0, len(fresh), PARAMS_PER_CALL):
            self._store.log_batch(self._run_id, params=fresh[first : first + PARAMS_PER_CALL])

    def _log(self, step: int, values: Mapping[str, float | None]) -> None:
        """Logs the values at ``step`` of the metrics that do not have that step yet."""
        now, entities = int(time.time() * 1000), self.mlflow.entities
        fresh = [
            entities.Metric(key, float(value), now, step)
            for key, value in values.items()
            if value is not None and step not in self.logged.get(key, ())
        ]
        for first in range(0, len(fresh), METRICS_PER_CALL):
            self._store.log_batch(self._run_id, metrics=fresh[first : first + METRICS_PER_CALL])
        for metric in fresh:
            self.logged.setdefault(metric.key, set()).add(step)

    def on_train_log(self, step: int, values: Mapping[str, float]) -> None:
        self._log(step, {f"train/{name}": value for name, value in values.items()})

    def on_evaluation(self, evaluation: Evaluation) -> None:
        values: dict[str, float | None] = {
            f"eval/{name}": value for name, value in evaluation.results.items()
        }
        values["train_loss"] = evaluation.train_loss
        values.update({f"train_loss/{k}": v for k, v in evaluation.train_terms.items()})
        if evaluation.is_best:
            values.update({f"best/{k}": v for k, v in evaluation.results.items()})
        self._log(evaluation.step, values)

    def finish(self) -> None:
        if self.run_id is None:
            return
        # finish runs in the loop's `finally`: what it is leaving by, if anything, is here.
        error = sys.exc_info()[1]
        if error is None:
            status = "FINISHED"
        elif isinstance(error, (Interrupted, KeyboardInterrupt)):
            status = "KILLED"  # stopped by a signal, at a checkpoint: the run resumes
        else:
            status = "FAILED"
        self._store.set_terminated(self.run_id, status)
        self.run_id = None


def _shown(uri: str) -> str:
    """``uri`` without the password it may hold (``postgresql://user:***@host/db``)."""
    return re.sub(r"//([^/:@]*):[^/@]*@", r"//\1:***@", uri)
