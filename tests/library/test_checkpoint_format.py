"""Checkpoints that later versions still read: a small run of the regression test project
(with plateau and early stopping on), checkpointed by an earlier version of the library, is
kept in tests/fixtures/checkpoint_format_1/. A resume from it must restore its weights, its
optimizer, its step, its best and its rules of patience; a change that breaks the format
fails here and needs a migration (Lightning tests its loading against every release).

To make the fixture again (only with a migration of the old one):
``.venv/bin/python tests/library/test_checkpoint_format.py tests/fixtures/checkpoint_format_1``
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(TESTS, "fixtures", "checkpoint_format_1")
PATIENCE = (
    "--plateau_patience", "1", "--plateau_factor", "0.5", "--plateau_min_delta", "10",
    "--early_stopping_patience", "5", "--early_stopping_min_delta", "10",
)  # fmt: skip


def argv(data, folder, epochs, *extra):
    """128 rows in batches of 16: 8 steps an epoch, an evaluation every 4."""
    from support import regression_argv

    lengths = ("--train_epochs", str(epochs), "--epochs_between_evals", "0.5")
    return regression_argv(data, folder, *lengths, *PATIENCE, *extra)


def summary(prefix) -> dict:
    """What the fixture promises: each variable's sum, the optimizer's iterations."""
    reader = tf.train.load_checkpoint(prefix)
    names = [n for n, _ in tf.train.list_variables(prefix) if n.startswith(("model/", "optim"))]
    return {name: float(np.sum(reader.get_tensor(name))) for name in names}


@pytest.fixture
def old_run(tmp_path, regression_data):
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    return folder


def test_a_checkpoint_of_an_earlier_version_restores_whole_and_trains_on(old_run, regression_data):
    from support import REGRESSION, run_cli

    from library.outputs import checkpoints, run_state
    from library.recorders.metrics_log import read_metrics

    with open(old_run / "expected.json", encoding="utf-8") as stream:
        expected = json.load(stream)
    prefix = str(old_run / "model" / "ckpt-4")
    assert summary(prefix) == pytest.approx(expected["variables"])
    state = run_state.read(prefix)
    assert state["patience"] == expected["patience"]
    assert state["best"]["step"] == expected["best_step"]
    # Trained on from it: its step, optimizer, patience (the rate halved twice) and best go on.
    resumed = run_cli(*argv(regression_data, old_run, 1.5), project=REGRESSION)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "at step 4" in resumed.stdout
    best = state["best"]
    assert f"best so far: mae {best['value']:.4g} at step {best['step']}" in resumed.stdout
    rows = read_metrics(str(old_run / "model"))
    assert [r["step"] for r in rows] == [4, 8, 12]
    # The plateau's wait went on from the saved one: no improvement at step 8, rate halved.
    assert rows[1]["learning_rate"] == pytest.approx(rows[0]["learning_rate"])
    assert rows[2]["learning_rate"] == pytest.approx(rows[0]["learning_rate"] / 2)
    assert checkpoints.numbered_checkpoints(str(old_run / "model"))[0][0] == 12


def make_fixture(folder: str) -> None:
    """Trains the fixture's run (2 evaluations of 4 steps) into ``folder``."""
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:0] = [os.path.dirname(tests), tests]
    import support

    from library.data.records import RecordWriter, example
    from library.outputs import run_state

    data = os.path.join(folder, "data")
    for name, count, seed in (("train", 128, 1), ("eval", 64, 2)):  # conftest's regression_data
        writer = RecordWriter(data, name, num_shards=2, overwrite=True)
        for row in support.regression_rows(count, seed):
            writer.write(example(row))
        writer.close()
    result = support.run_cli(*argv(data, folder, 0.5), project=support.REGRESSION)
    assert result.returncode == 0, result.stderr
    # The checkpoint, its state and what a run keeps beside it are the fixture; not the data
    # (a test brings its own) nor TensorBoard's files.
    for name in ("data", "model/train", "model/eval"):
        shutil.rmtree(os.path.join(folder, name))
    prefix = os.path.join(folder, "model", "ckpt-4")
    state = run_state.read(prefix)
    expected = {
        "variables": summary(prefix),
        "patience": state["patience"],
        "best_step": state["best"]["step"],
    }
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as stream:
        json.dump(expected, stream, indent=1)


if __name__ == "__main__":
    make_fixture(sys.argv[1])
