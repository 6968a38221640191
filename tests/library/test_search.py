"""Searches on Optuna (``--mode search``): the space checked before anything loads, one study
shared by several processes, a killed process's trial tried again, a search resumed after
every process was killed, and what a search leaves behind."""

import csv
import os
import subprocess
import threading
import time

import pytest
import yaml
from projects import regression
from support import REGRESSION, regression_argv, resolve_argv, start_process

from library.config import ConfigError
from library.search.space import grid, parse_space


def space_params(space, **flags):
    argv = regression_argv(None, None, "--search_space", space)
    for key, value in flags.items():
        argv += [f"--{key}", str(value)]
    return resolve_argv(argv, REGRESSION)


def test_a_search_space_is_read_against_the_schema():
    dimensions = parse_space(
        space_params("{learning_rate: log 1e-4..1e-1, units: 8..32 step 8, train_batch_size: 8|16}")
    )
    by_name = {d.name: d for d in dimensions}
    assert (by_name["learning_rate"].low, by_name["learning_rate"].log) == (1e-4, True)
    assert grid(by_name["units"]) == [8, 16, 24, 32]
    assert by_name["train_batch_size"].choices == (8, 16)


@pytest.mark.parametrize(
    "space, flags, fragment",
    [
        ("{learnin_rate: 0..1}", {}, "learnin_rate"),  # unknown key, with the close name
        ("{units: 0..32}", {}, "units"),  # the schema's interval: units >= 1
        ("{learning_rate: 1e-2..1e-4}", {}, "LOW < HIGH"),
        ("{quantile_weight: log 0..1}", {}, "LOW > 0"),
        ("{progress: 1..2}", {}, "give choices"),
        ("{units: '8'}", {}, "no range or choice"),
        ("{model_dir: a|b}", {}, "not searched"),
        ("{learning_rate: 1e-4..1e-2}", {"search_sampler": "grid"}, "grid needs"),
    ],
)
def test_a_bad_search_space_is_one_line(space, flags, fragment):
    with pytest.raises(ConfigError) as raised:
        parse_space(space_params(space, **flags))
    assert fragment in str(raised.value) and "\n" not in str(raised.value)


class Lines:
    """A process's output read as it comes (a test must never block on a silent process)."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text, timeout=120):
        deadline = time.time() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, "".join(self.lines) + self.process.stderr.read()
            assert time.time() < deadline, "".join(self.lines)
            time.sleep(0.05)

    def text(self):
        self.thread.join(timeout=10)
        return "".join(self.lines)


def test_two_processes_share_a_study_that_survives_its_killed_process(tmp_path, regression_data):
    """One process finishes a trial and is killed in its second: the study has lost every
    process. Two more started together resume it, the stale trial is tried again in its own
    folder, a hopeless trial is pruned, and each process contributes trials."""
    import optuna

    study_dir = tmp_path / "model"
    command = regression_argv(
        str(regression_data), str(tmp_path), "--mode", "search",
        "--search_space", "{learning_rate: 0.05|1e-9, units: 8|16}",
        "--train_epochs", "2", "--search_sampler", "grid", "--search_trials", "4", "--search_heartbeat_secs", "1",
        "--search_pruning_startup_trials", "1",
        "--random_seed", "4",  # the grid's first trial learns (0.05): later 1e-9 ones are pruned
    )  # fmt: skip
    unbuffered = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = start_process(*command, script=regression.RUN_PY, env=unbuffered)
    try:
        Lines(first).wait_for("trial 1:")
    finally:
        first.kill()
        first.wait(timeout=30)
    time.sleep(2.5)  # past the heartbeat's grace period: the killed trial is stale
    both = [start_process(*command, script=regression.RUN_PY, env=unbuffered) for _ in range(2)]
    outputs = []
    try:
        for process in both:
            out, err = process.communicate(timeout=240)
            assert process.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for process in both:
            if process.poll() is None:
                process.kill()
    assert any("1 of 4 trials finished" in out for out in outputs), outputs
    assert any(f":{first.pid}, which ran it, stopped)" in out for out in outputs), outputs

    study = optuna.load_study(study_name="default", storage=f"sqlite:///{study_dir}/study.db")
    trials = study.get_trials()
    states = {t.number: t.state for t in trials}
    assert states[0] == optuna.trial.TrialState.COMPLETE
    assert states[1] == optuna.trial.TrialState.FAIL  # the killed process's trial
    folder_of_1 = trials[1].user_attrs["folder"]
    again = [t for t in trials[2:] if t.user_attrs["folder"] == folder_of_1]
    assert again and again[0].params == trials[1].params
    assert again[0].state.is_finished() and again[0].state != optuna.trial.TrialState.FAIL
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert any(t.params["learning_rate"] == 1e-9 for t in pruned)
    assert all(
        t.params["learning_rate"] == 0.05
        for t in trials
        if t.state == optuna.trial.TrialState.COMPLETE
    )
    done = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]  # fmt: skip
    processes = {t.user_attrs["process"] for t in done}
    assert {p.pid for p in both} <= {int(p.rsplit(":", 1)[1]) for p in processes}

    # What the search leaves: the trials as CSV, the figures, and the best set ready to paste.
    with open(study_dir / "trials.csv", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["state"] for row in rows} >= {"COMPLETE", "PRUNED", "FAIL"}
    assert (study_dir / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert os.path.isdir(os.path.join(folder_of_1, "model"))
    best = study.best_trial
    last = max(outputs, key=lambda out: out.count("trial"))
    pasted = last[last.index("# hyperparameters.yaml") :].split("\n# ")[0]
    sets = yaml.safe_load(pasted.replace("<<: *DEFAULT", "units: 0"))
    assert sets["default_best"]["learning_rate"] == best.params["learning_rate"] == 0.05
    assert sets["default_best"]["units"] == best.params["units"]


def fake_training(calls, status=0):
    """A trial's training without TensorFlow: it records its values and ends with a
    checkpoint whose run state says its best, as a run does (its metric: the learning
    rate)."""
    from library.outputs import run_state

    def train(trial_params, reporter):
        calls.append((trial_params.learning_rate, trial_params.units))
        os.makedirs(trial_params.model_dir, exist_ok=True)
        prefix = os.path.join(trial_params.model_dir, "ckpt-4")
        open(prefix + ".index", "w").close()
        best = {"metric": "loss", "value": trial_params.learning_rate, "step": 4}
        run_state.write(prefix, {"best": best})
        return status

    return train


def test_a_grid_shared_by_processes_visits_every_point_and_a_finished_study_trains_nothing(
    tmp_path,
):
    from library.search.study import run_search

    space = "{learning_rate: 0.1|0.2|0.3, units: 4|8|16}"
    calls = []
    for trials in (4, 9):  # a second process (another seed for other samplers) finishes it
        flags = {"search_sampler": "grid", "search_trials": trials, "model_dir": tmp_path / "s"}
        assert (
            run_search(space_params(space, **flags), fake_training(calls), say=lambda _: None) == 0
        )
    assert len(calls) == len(set(calls)) == 9
    again = []
    assert run_search(space_params(space, **flags), fake_training(again), say=lambda _: None) == 0
    assert again == []  # the study had its 9 trials: only the outputs are written again


def test_a_search_whose_trials_all_fail_ends(tmp_path):
    from library.search.study import run_search

    calls = []
    flags = {"search_sampler": "random", "search_trials": 3, "model_dir": tmp_path / "s"}
    assert run_search(space_params("{learning_rate: 0.1|0.2}", **flags), fake_training(calls, 1), say=lambda _: None) == 0  # fmt: skip
    assert len(calls) == 3


def test_a_grid_range_keeps_both_ends():
    from library.search.space import Dimension

    assert grid(Dimension("x", -2.0, -1.0, step=0.5)) == [-2.0, -1.5, -1.0]
    assert grid(Dimension("x", 0.1, 0.3, step=0.1)) == pytest.approx([0.1, 0.2, 0.3])
