"""Searches over several hyperparameters on Optuna: ``run.py --mode search``.

Each trial is an ordinary run of ``train_and_evaluate`` in a folder of its own,
``<model_dir>/trial-NNNN/{model,best}`` (``model_dir`` is the study's folder), with the
values its sampler picked. Its evaluations report ``best_metric`` to the study, whose pruner
stops a hopeless trial at the next chunk of steps. The study lives in a database
(``search_storage``; by default a SQLite file in ``model_dir``), so the same command started
in several processes, on one machine or many sharing the database, works on one study. Each
process beats a heartbeat: a trial whose process was killed is marked failed after
``2 x search_heartbeat_secs`` and tried again with the same values, resuming from its
folder's checkpoints; a study whose every process was killed resumes when the command is
started again.

At the end (of each process): ``trials.csv``, the best trial's values as sets ready to paste
into the YAML files, and ``history.png`` and ``importances.png`` (Optuna's matplotlib
figures) in ``model_dir``.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from collections.abc import Callable
from typing import Any, Literal

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from library.base.tables import write_csv
from library.config import HYPERPARAMETERS, PROJECT, Params, dump_yaml
from library.outputs import run_state
from library.recorders.base import Evaluation, Recorder, Run
from library.search.figures import draw_figures, plot_sweep
from library.search.space import Dimension, grid, label, parse_space

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


class DivergedTrialError(Exception):
    """A trial's training stopped without a result (divergence): the trial failed."""


class SearchInterrupted(BaseException):
    """A trial was stopped by a signal (Ctrl-C, SIGTERM): the search ends. A BaseException, so
    that Optuna leaves the trial running: its heartbeat stops, and the search started again
    tries it again, resuming from the checkpoint its run saved."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class ReportToTrial(Recorder):
    """Hands each evaluation's ``best_metric`` to the trial; asks training to stop when the
    pruner says the trial is hopeless."""

    essential = True

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None
        self.request_stop: Callable[[str], None] | None = None

    def start(self, run: Run) -> None:
        self.request_stop = run.request_stop

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.trial.report(evaluation.results[self.metric], evaluation.step)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = evaluation.step
            assert self.request_stop is not None  # a trial trains: start() had a trainer's
            self.request_stop(
                f"trial {self.trial.number} pruned at step {evaluation.step}: its "
                f"{self.metric} is worse than the median of the finished trials there"
            )


def suggest(trial: optuna.Trial, dimension: Dimension):
    if dimension.choices:
        return trial.suggest_categorical(dimension.name, list(dimension.choices))
    if isinstance(dimension.low, int) and not isinstance(dimension.low, bool):
        return trial.suggest_int(
            dimension.name,
            dimension.low,
            dimension.high,
            step=dimension.step or 1,
            log=dimension.log,
        )
    return trial.suggest_float(
        dimension.name, dimension.low, dimension.high, log=dimension.log, step=dimension.step
    )


def storage_url(params: Params) -> str:
    if params.search_storage:
        return params.search_storage
    root = os.path.abspath(params.model_dir)
    os.makedirs(root, exist_ok=True)
    return f"sqlite:///{root}/study.db"


def open_study(params: Params, dimensions: list[Dimension]) -> optuna.Study:
    """The study of this configuration set in its database, created by whichever process
    comes first."""
    beat = params.search_heartbeat_secs
    storage = RDBStorage(
        storage_url(params),
        heartbeat_interval=beat,
        grace_period=2 * beat,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=params.search_pruning_startup_trials)
        if params.search_pruning
        else optuna.pruners.NopPruner()
    )
    direction: Literal["minimize", "maximize"] = (
        "minimize" if params.best_mode == "min" else "maximize"
    )
    # The process that creates the study samples from random_seed (a search run again from
    # scratch picks the same values); every process that joins it draws from a seed of its
    # own, or all would try the same values. A grid is the exception: each process takes
    # the next point of one shuffled order, which must be the same in every process.
    seed = params.random_seed
    for joined in (False, True):
        try:
            return optuna.create_study(
                storage=storage,
                sampler=make_sampler(params, dimensions, seed),
                pruner=pruner,
                study_name=params.config_set,
                direction=direction,
                load_if_exists=joined,
            )
        except optuna.exceptions.DuplicatedStudyError:
            if params.search_sampler != "grid":  # a grid's order must be the same everywhere
                seed = None  # Optuna then seeds from the operating system's entropy
    raise AssertionError("unreachable: the second attempt loads the study")


def make_sampler(params: Params, dimensions: list[Dimension], seed: int | None):
    if params.search_sampler == "grid":
        return optuna.samplers.GridSampler({d.name: grid(d) for d in dimensions}, seed=seed)
    if params.search_sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def run_search(
    params: Params,
    train: Callable[[Params, Recorder], int],
    say: Callable[[str], None] = print,
) -> int:
    """Runs trials until the study has ``search_trials`` finished (complete or pruned) ones;
    returns an exit status.

    Args:
        params: the resolved configuration (``search_*`` keys, ``best_metric``).
        train: trains and evaluates one trial's configuration with a recorder of the trial
            (``run.py``'s train_and_evaluate); returns its exit status.
        say: where one-line messages go.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats, retries and the figures are "experimental" in Optuna 5: said once, here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    dimensions = parse_space(params)
    study = open_study(params, dimensions)
    study.set_user_attr("metric", params.best_metric)
    say(
        f"study {study.study_name!r} in {storage_url(params)}: {len(finished(study))} of "
        f"{params.search_trials} trials finished; searching "
        + ", ".join(f"{d.name} {d.describe()}" for d in dimensions)
    )

    objective = Objective(params, dimensions, train, say)
    # Failed trials (diverged, or whose process died) do not count as finished; as many of
    # them as search_trials end the search too, or a space where most diverge never would.
    enough = [
        optuna.study.MaxTrialsCallback(params.search_trials, states=DONE),
        optuna.study.MaxTrialsCallback(params.search_trials, states=(TrialState.FAIL,)),
    ]
    try:
        if len(finished(study)) < params.search_trials:  # else: only the outputs again
            study.optimize(
                objective, callbacks=enough, catch=(DivergedTrialError,), gc_after_trial=True
            )
    except SearchInterrupted as stop:
        say(
            "search stopped; the same command resumes it, and tries the stopped trial again "
            f"from its checkpoint once its heartbeat is {2 * params.search_heartbeat_secs} s old"
        )
        return stop.status
    write_outputs(study, params, dimensions, params.model_dir, say)
    return 0


class Objective:
    """One trial of a search: an ordinary run with the values the trial picked, in a folder
    of its own below the study's; its value, its run's best ``best_metric``.

    A retried trial inherits the user attributes of the one whose process died: the same
    folder, so that it resumes from that trial's checkpoints.
    """

    def __init__(self, params: Params, dimensions, train, say: Callable[[str], None]):
        self.params, self.dimensions, self.train, self.say = params, dimensions, train, say
        self.who = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, trial: optuna.Trial) -> float:
        values = {d.name: suggest(trial, d) for d in self.dimensions}
        retried = trial.user_attrs.get("folder")
        folder = retried or os.path.join(self.params.model_dir, f"trial-{trial.number:04d}")
        process = trial.user_attrs.get("process")
        again = f" (again: {process}, which ran it, stopped)" if retried else ""
        trial.set_user_attr("process", self.who)
        trial.set_user_attr("folder", folder)
        shown = ", ".join(f"{k} {_shown(v)}" for k, v in values.items())
        self.say(f"trial {trial.number}{again}: {shown} in {folder}")
        model_dir = os.path.join(folder, "model")
        changes = {**values, "model_dir": model_dir, "best_model_dir": os.path.join(folder, "best")}
        reporter = ReportToTrial(trial, self.params.best_metric)
        status = self.train(self.params.replace(**changes), reporter)
        if status >= 128:  # stopped by a signal: the run said where it saved
            raise SearchInterrupted(status)
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at step {reporter.pruned_at}")
        best = run_state.best_of(model_dir)
        if status or best is None:
            raise DivergedTrialError(f"trial {trial.number}: training ended with status {status}")
        return float(best["value"])


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_sweep(
    params: Params,
    key: str,
    values: list[Any],
    geometric: bool,
    train: Callable[[Params], int],
    sweep_all: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """``--sweep KEY=...``: each value of one key trained in turn, as a grid search on
    Optuna over that key, until ``best_metric`` gets worse from one value to the next (the
    seeds' ``train_with_hyper``); returns an exit status.

    Each value trains into ``<model_dir>/sweep/KEY=VALUE/`` (its best checkpoint in ``best/``
    below it); the study, in ``<model_dir>/sweep/study.db``, knows the values done, which a
    sweep run again skips. ``sweep.csv`` and ``sweep.png`` (the best metric against the
    value) are rewritten after each value.

    Args:
        params: the resolved configuration; each value gets its own model_dir below it.
        key, values, geometric: what ``space.parse_sweep`` returned.
        train: trains and evaluates one configuration (``run.py``'s train_and_evaluate);
            returns its exit status.
        sweep_all: train every value, even after the metric got worse.
        say: where one-line messages go.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = os.path.join(params.model_dir, "sweep")
    os.makedirs(root, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{os.path.abspath(root)}/study.db",
        study_name=f"sweep {key}",
        direction="minimize" if params.best_mode == "min" else "maximize",
        load_if_exists=True,
    )
    metric = params.best_metric
    results: list[optuna.trial.FrozenTrial] = []  # one per value, in order
    for value in values:
        name = label(key, value)
        done = _done_value(study, key, value)
        if done is not None:
            say(f"{name}: finished before (best {metric} {done.value:.4g}): skipped")
        else:
            done = _train_value(study, params, key, value, train, say)
            if done is None:
                return 1
        results.append(done)
        _write_sweep(root, key, metric, results, geometric, params.best_mode)
        if not sweep_all and len(results) > 1 and _worse(results[-1], results[-2], params):
            say(
                f"the best {metric} got worse from {label(key, results[-2].user_attrs[key])} "
                f"({results[-2].value:.4g}) to {name} ({results[-1].value:.4g}): the sweep "
                "stops (--sweep_all trains every value)"
            )
            break
    pick = min if params.best_mode == "min" else max
    best = pick(results, key=_value)
    say(
        f"best {label(key, best.user_attrs[key])}: {metric} {best.value:.4g} at step "
        f"{best.user_attrs['step']}; {os.path.join(root, 'sweep.csv')}, "
        f"{os.path.join(root, 'sweep.png')}"
    )
    return 0


def _train_value(study, params, key, value, train, say):
    """Trains one value as a trial of the study; its finished trial, or None (no result)."""
    name = label(key, value)
    folder = os.path.join(params.model_dir, "sweep", name)
    say(f"{name}: training into {folder}")
    trial = study.ask()  # the sweep picks the value: it keeps it as the trial's attribute
    trial.set_user_attr(key, value)
    changes = {key: value, "model_dir": folder, "best_model_dir": os.path.join(folder, "best")}
    status = train(params.replace(**changes))
    best = run_state.best_of(folder)
    if status or best is None:
        study.tell(trial, state=TrialState.FAIL)
        say(f"{name}: no finite evaluation of {params.best_metric}; the sweep stops here")
        return None
    trial.set_user_attr("step", best["step"])
    study.tell(trial, float(best["value"]))
    return _done_value(study, key, value)


def _done_value(study, key: str, value: Any):
    """The completed trial of ``value`` (None: not trained yet)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return next((t for t in complete if t.user_attrs.get(key) == value), None)


def _value(trial: optuna.trial.FrozenTrial) -> float:
    """A completed trial's value (one that failed or was pruned has none)."""
    if trial.value is None:
        raise ValueError(f"trial {trial.number} has no value")
    return trial.value


def _worse(
    current: optuna.trial.FrozenTrial, previous: optuna.trial.FrozenTrial, params: Params
) -> bool:
    if params.best_mode == "min":
        return _value(current) > _value(previous)
    return _value(current) < _value(previous)


def _write_sweep(root, key, metric, results, geometric: bool, mode: str) -> None:
    """``sweep.csv`` (value, best metric, its step) and ``sweep.png``."""
    rows = [[t.user_attrs[key], t.value, t.user_attrs.get("step", "")] for t in results]
    write_csv(os.path.join(root, "sweep.csv"), [key, f"best_{metric}", "step"], rows)
    values = [t.user_attrs[key] for t in results]
    scores = [t.value for t in results]
    plot_sweep(key, values, scores, os.path.join(root, "sweep.png"), geometric, metric, mode)


def _seconds(trial) -> float | str:
    if trial.datetime_complete and trial.datetime_start:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return ""


def finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state in DONE]


def write_outputs(study, params: Params, dimensions, root: str, say) -> None:
    """``trials.csv``, the figures, and the best trial's values as YAML sets."""
    trials = study.get_trials(deepcopy=False)
    names = [d.name for d in dimensions]
    columns = ["trial", "state", params.best_metric, *names, "retried_trial", "process", "seconds"]
    rows = [
        [
            t.number,
            t.state.name,
            "" if t.value is None else t.value,
            *(t.params.get(n, "") for n in names),
            t.system_attrs.get("failed_trial", ""),
            t.user_attrs.get("process", ""),
            _seconds(t),
        ]
        for t in trials
    ]
    write_csv(os.path.join(root, "trials.csv"), columns, rows)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    say(f"{len(trials)} trials ({summary}): {os.path.join(root, 'trials.csv')}")
    figures = draw_figures(study, root, say)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        say("no trial completed yet: no best values to give")
        return
    best = study.best_trial
    say(
        f"best trial {best.number}: {params.best_metric} {best.value:.4g}; as sets for the YAML "
        "files (put your set's anchor in place of the upper-case one):"
    )
    schema = params.schema
    sets: dict[str, str] = {}  # {file: the name of its set of the best values}
    for file, name in ((HYPERPARAMETERS, params.hyperparameter_set), (PROJECT, params.config_set)):
        values = {
            k: float(f"{v:.4g}") if isinstance(v, float) else v
            for k, v in best.params.items()
            if schema.by_name[k].file == file
        }
        if file == PROJECT and HYPERPARAMETERS in sets:
            values["hyperparameter_set"] = sets[HYPERPARAMETERS]
        if values:
            sets[file] = f"{name}_best"
            text = dump_yaml({sets[file]: {"<<": f"*{name.upper()}", **values}})
            say(f"# {file}.yaml\n" + re.sub(r"'<<': '(\*\w+)'", r"<<: \1", text).rstrip())
    if figures:
        say("figures: " + ", ".join(figures))
