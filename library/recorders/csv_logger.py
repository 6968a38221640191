"""A CSV file of the evaluations, in the manner of Keras' ``CSVLogger``: one row per
evaluation, a column per value (the rows of ``metrics.jsonl``, for a spreadsheet)."""

from __future__ import annotations

import csv
import io
import os

from library.base.files import atomic_write_text, exists, read_text
from library.recorders.base import Evaluation, Recorder, Run
from library.recorders.metrics_log import row


class CSVLogger(Recorder):
    """Writes ``filename`` in the run's ``output_dir`` (default ``metrics.csv``): step, epoch,
    train loss (and terms), each evaluation result, learning rate: the rows of metrics.jsonl.
    A row per step: each evaluation reaches it once, and one made again (after a resume from
    an older checkpoint) replaces the rows from its step on. A column that appears later is
    added to every row. Rewritten whole (atomically) after each evaluation: a table of
    evaluations is small.

    Args:
        filename: the file's name in the run's ``output_dir``, or an absolute path.
    """

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename
        self.path = filename
        self.rows: list[dict] = []

    def start(self, run: Run) -> None:
        self.path = os.path.join(run.output_dir, self.filename)
        self.rows = self._read()

    def _read(self) -> list[dict]:
        if not exists(self.path):
            return []
        return list(csv.DictReader(io.StringIO(read_text(self.path))))

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.rows = [r for r in self.rows if int(r["step"]) < evaluation.step]
        self.rows.append(row(evaluation))
        columns: list[str] = []
        for entry in self.rows:
            columns += [key for key in entry if key not in columns]
        out = io.StringIO()
        writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())
