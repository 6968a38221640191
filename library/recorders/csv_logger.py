"""A CSV file of the evaluations, in the manner of Keras' ``CSVLogger``: one row per
evaluation, a column per value (the rows of ``metrics.jsonl``, for a spreadsheet)."""

from __future__ import annotations

import csv
import io
import os

from library.outputs.files import atomic_write_text, exists, read_text
from library.recorders.base import Evaluation, Recorder, Run
from library.recorders.metrics_log import read_metrics, row


class CSVLogger(Recorder):
    """Writes ``filename`` in ``model_dir`` (default ``metrics.csv``): step, epoch, train loss
    (and terms), each evaluation result, learning rate. A resumed run keeps the rows up to
    the step it resumes from (the evaluations after it are made again), as metrics.jsonl
    does; a column that appears later is added to every row. Rewritten whole (atomically)
    after each evaluation: a table of evaluations is small.

    Args:
        filename: the file's name in ``model_dir``, or an absolute path.
    """

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename
        self.path = filename
        self.rows: list[dict] = []

    def start(self, run: Run) -> None:
        self.path = os.path.join(run.model_dir, self.filename)
        # What metrics.jsonl kept (it is truncated to the resumed step before this start).
        steps = {r["step"] for r in read_metrics(run.model_dir)}
        self.rows = [r for r in self._read() if int(r["step"]) in steps]

    def _read(self) -> list[dict]:
        if not exists(self.path):
            return []
        return list(csv.DictReader(io.StringIO(read_text(self.path))))

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.rows.append(row(evaluation))
        columns: list[str] = []
        for entry in self.rows:
            columns += [key for key in entry if key not in columns]
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())
