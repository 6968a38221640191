"""A run SIGKILLed again and again, once between writing metrics.jsonl and handing the same
evaluation to the project's recorders, resumes to the very weights and records of a run never
killed: with dropout, augmentation and shuffling on, under ``deterministic: true``; and every
recorder (metrics.csv, a tracker) has each evaluation exactly once."""

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import tensorflow as tf
from support import ROOT, argv

from library.outputs import checkpoints
from library.recorders.metrics_log import read_metrics

# run.py of the test classifier with two hooks of a test (not sleeps): an action that
# SIGKILLs the process after a given training step, and a recorder placed between the
# library's recorders (metrics.jsonl among them) and the project's own (a CSV logger and a
# tracker appending each evaluation to a file) that SIGKILLs it in the middle of handing an
# evaluation over. Each kill happens once (a marker file); the tracker's file is shared by
# every start of the run.
KILLABLE = r"""
import os, signal, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, "tests")]
from library.cli import main
from library.recorders.base import Action, Recorder
from library.recorders.csv_logger import CSVLogger
from projects import classifier
from support import variant

folder = sys.argv[1]
kill_steps = [int(s) for s in sys.argv[2].split(",") if s]
kill_evaluation = int(sys.argv[3])

def once(name):
    marker = os.path.join(folder, f"killed-{{name}}")
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True

class KillAfterStep(Action):
    intervals = (1,)
    def __call__(self, step):
        if step in kill_steps and once(f"step-{{step}}"):
            os.kill(os.getpid(), signal.SIGKILL)

class KillMidDelivery(Recorder):
    def on_evaluation(self, evaluation):
        if evaluation.step == kill_evaluation and once(f"evaluation-{{evaluation.step}}"):
            os.kill(os.getpid(), signal.SIGKILL)

class Tracker(Recorder):
    def on_evaluation(self, evaluation):
        with open(os.path.join(folder, "tracker.txt"), "a") as stream:
            stream.write(f"{{evaluation.step}}:{{evaluation.is_best}}\n")

hooks = [KillAfterStep(), KillMidDelivery(), CSVLogger(), Tracker()]
sys.exit(main(sys.argv[4:], variant(classifier, callbacks_fn=lambda params: hooks)))
"""

RUN = (
    "--train_steps", "16", "--save_checkpoints_steps", "3", "--steps_between_evals", "4",
    "--dropout_rate", "0.3", "--deterministic", "true", "--shuffle_buffer", "16",
    "--log_steps", "2",
)  # fmt: skip


def start(stripes_records, folder, kill_steps=(), kill_evaluation=-1):
    command = argv(stripes_records, folder, *RUN)
    return subprocess.run(
        [sys.executable, "-c", KILLABLE.format(root=ROOT), str(folder),
         ",".join(map(str, kill_steps)), str(kill_evaluation), *command],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip


def final_weights(folder):
    (step, prefix), *_ = checkpoints.numbered_checkpoints(os.path.join(folder, "model"))
    reader = tf.train.load_checkpoint(prefix)
    names = [n for n, _ in tf.train.list_variables(prefix) if n.startswith(("model/", "optimizer/"))]  # fmt: skip
    return step, {name: reader.get_tensor(name) for name in names}


def test_a_run_killed_at_random_steps_ends_bit_identical_and_recorders_get_each_evaluation_once(
    stripes_records, tmp_path
):
    straight = tmp_path / "straight"
    done = start(stripes_records, straight)
    assert done.returncode == 0, done.stderr[-3000:]
    # Steps drawn at random (seeded), none a checkpoint's: each kill loses steps to redo.
    rng = np.random.default_rng(7)
    kill_steps = sorted(rng.choice([s for s in range(1, 16) if s % 3], 2, replace=False))
    killed = tmp_path / "killed"
    starts = []
    for _ in range(6):
        starts.append(start(stripes_records, killed, kill_steps, kill_evaluation=8))
        if starts[-1].returncode == 0:
            break
        assert starts[-1].returncode == -9, starts[-1].stderr[-3000:]  # SIGKILL
    assert [s.returncode for s in starts] == [-9, -9, -9, 0], [s.stderr[-500:] for s in starts]
    # The weights and the optimizer's state, bit for bit (atol 0).
    step, expected = final_weights(straight)
    assert (step, sorted(expected)) == (16, sorted(final_weights(killed)[1]))
    for name, value in final_weights(killed)[1].items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    # Every record of the evaluations, value for value.
    rows = read_metrics(str(killed / "model"))
    assert rows == read_metrics(str(straight / "model"))
    assert [r["step"] for r in rows] == [4, 8, 12, 16]
    # Each recorder got each evaluation once, the one killed in the middle included.
    with open(killed / "tracker.txt", encoding="utf-8") as stream:
        tracked = stream.read().split()
    assert [line.split(":")[0] for line in tracked] == ["4", "8", "12", "16"]
    with open(straight / "tracker.txt", encoding="utf-8") as stream:
        assert tracked == stream.read().split()  # and whether each was a new best
    with open(killed / "model" / "metrics.csv", encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [int(r["step"]) for r in table] == [4, 8, 12, 16]
    for row, record in zip(table, rows, strict=True):
        assert float(row["eval_loss"]) == record["eval_loss"]
        assert float(row["train_loss"]) == record["train_loss"]
    # The time account knows the restarts and what they cost.
    with open(killed / "model" / "goodput.json", encoding="utf-8") as stream:
        account = json.load(stream)
    assert account["restarts"] == 3 and account["ended"] and account["steps"] == 16
    most = sum(k - 3 * (k // 3) for k in kill_steps)  # past the last checkpoint before each kill
    assert 0 <= account["lost_steps"] <= most
    assert account["seconds"]["down"] > 0 and account["seconds"]["steps"] > 0
    assert re.search(r"goodput: trained \d+% of .*; 3 restarts lost", starts[-1].stdout)
