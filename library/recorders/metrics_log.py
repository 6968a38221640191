"""``metrics.jsonl``: one line per evaluation, for people and their tools (the plots are drawn
from it); nothing reads it to decide how a run goes on (the run state beside each checkpoint
does that: ``library/engine/run_state.py``)."""

from __future__ import annotations

import json
import os

from library.base.files import append_text, atomic_write_text, exists, read_text
from library.recorders.base import Evaluation, Recorder

METRICS_FILE = "metrics.jsonl"


def row(evaluation: Evaluation) -> dict:
    """The line of an evaluation: step, epoch, train loss (and terms), every evaluation
    result as ``eval_<name>``, the learning rate."""
    record = {
        "step": evaluation.step,
        "epoch": None if evaluation.epoch is None else round(evaluation.epoch, 4),
        "train_loss": evaluation.train_loss,
    }
    record.update({f"train_loss/{k}": v for k, v in evaluation.train_terms.items()})
    record.update({f"eval_{k}": v for k, v in evaluation.results.items()})
    record["learning_rate"] = evaluation.learning_rate
    return record


def append_metrics(model_dir: str, record: dict) -> None:
    """Appends one evaluation as a JSON line (flushed, so a kill loses at most that line)."""
    append_text(os.path.join(model_dir, METRICS_FILE), json.dumps(record) + "\n")


def read_metrics(model_dir: str) -> list[dict]:
    """The evaluations recorded so far; a line cut short by a kill is ignored."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not exists(path):
        return []
    records = []
    for line in read_text(path).splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(model_dir: str, last_step: int) -> None:
    """Drops evaluations after ``last_step`` (made again after a resume from an older
    checkpoint)."""
    records = read_metrics(model_dir)
    kept = [r for r in records if r.get("step", 0) <= last_step]
    if len(kept) != len(records):
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write_text(os.path.join(model_dir, METRICS_FILE), text)


class AppendMetrics(Recorder):
    """One line per evaluation in ``metrics.jsonl``, keyed by step: an evaluation made again
    (after a resume from an older checkpoint) replaces the lines from its step on."""

    essential = True

    def __init__(self, model_dir: str):
        self.model_dir = model_dir
        self.last_step: int | None = None  # the file's last step, read once

    def on_evaluation(self, evaluation: Evaluation) -> None:
        if self.last_step is None:
            self.last_step = max((r["step"] for r in read_metrics(self.model_dir)), default=-1)
        if evaluation.step <= self.last_step:
            truncate_metrics(self.model_dir, evaluation.step - 1)
        append_metrics(self.model_dir, row(evaluation))
        self.last_step = evaluation.step
