"""The regression end to end, as a user runs it: ``python -m examples.regression``.

1. The diabetes table (442 rows, ships with scikit-learn) split into train, validation and
   test CSV files under ``dataset/regression/``.
2. The CSV rows written as records with the library's writer (``RecordWriter``: shards and a
   manifest that counts them, so that epochs are known).
3. ``examples/regression/run.py``: train and evaluate (best checkpoint by mae), evaluate the
   best on the test records, export it, predict the test CSV (``predictions.csv``).
4. The SavedModel reloaded in a fresh process and asked for the first test rows by column.
5. A figure of predicted against true progression.

Extra arguments go to the training command (``--train_epochs 10``).
"""

import csv
import os
import re
import shutil
import subprocess
import sys

from examples.regression import COLUMNS, FOLDER, TARGET
from examples.regression.data import DATASET, write_records, write_tables

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
OUT = os.path.join("out", "regression")


def commands(folder: str = DATASET, out: str = OUT, *extra: str) -> dict[str, list[str]]:
    """The run.py command lines of the journey, by name."""
    common = [
        "--train_files", os.path.join(folder, "train-*.tfrecord"),
        "--eval_files", os.path.join(folder, "validation-*.tfrecord"),
        "--model_dir", os.path.join(out, "checkpoints"),
        "--best_model_dir", os.path.join(out, "best"),
    ]  # fmt: skip
    test = ["--eval_files", os.path.join(folder, "test-*.tfrecord")]
    return {
        "train": [*common, *extra],
        "evaluate": [*common, "--mode", "evaluate", "--checkpoint", "best", *test],
        "export": [*common, "--mode", "export", "--checkpoint", "best"],
        "predict": [
            *common, "--mode", "predict", "--checkpoint", "best",
            "--predict_files", os.path.join(folder, "test.csv"),
        ],
    }  # fmt: skip


def run(argv: list[str]) -> str:
    """run.py as a user runs it, echoed; its output."""
    print(f"\n$ python examples/regression/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"regression: run.py failed with status {process.returncode}")
    return process.stdout


RELOAD = """
import csv, json, sys
from library import import_tensorflow
tf = import_tensorflow()
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
with open(sys.argv[2], encoding="utf-8") as stream:
    rows = list(csv.DictReader(stream))[:5]
inputs = {k: tf.constant([float(r[k]) for r in rows]) for k in json.loads(sys.argv[3])}
predicted = serve(**inputs)[sys.argv[4]].numpy()
for row, value in zip(rows, predicted):
    print(f"SavedModel: progression {value:.1f} (true {float(row[sys.argv[4]]):.0f})")
"""


def predict_with_saved_model(export_dir: str, table: str) -> str:
    """In a fresh process: the SavedModel loaded, the first rows of ``table`` predicted by
    column name; returns what it printed."""
    import json

    process = subprocess.run(
        [sys.executable, "-c", RELOAD, export_dir, table, json.dumps(COLUMNS), TARGET],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    if process.returncode:
        sys.exit(f"regression: the reloaded SavedModel failed: {process.stderr[-2000:]}")
    return process.stdout


def draw_predictions(predictions_csv: str, table: str, path: str) -> str:
    """Predicted against true progression on the test rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(predictions_csv, encoding="utf-8") as stream:
        predicted = {r["file"]: float(r[TARGET]) for r in csv.DictReader(stream)}
    with open(table, encoding="utf-8") as stream:
        truth = [float(r[TARGET]) for r in csv.DictReader(stream)]
    pairs = [(truth[int(name.rsplit(":", 1)[1]) - 2], value) for name, value in predicted.items()]
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter([t for t, _ in pairs], [p for _, p in pairs], s=12, alpha=0.7)
    low, high = 25, 346
    axis.plot([low, high], [low, high], "k--", linewidth=1, label="perfect")
    axis.set(xlabel="true progression", ylabel="predicted", title="Test rows: predicted vs true")
    axis.legend()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run, not a resume of the last one
    tables = write_tables()
    counts = write_records(tables)
    print(", ".join(f"{n} {split} rows" for split, n in counts.items()) + f" in {DATASET}")
    steps = commands(DATASET, OUT, *extra)
    run(steps["train"])
    evaluated = run(steps["evaluate"])
    exported = run(steps["export"])
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    print(predict_with_saved_model(export_dir, tables["test"]), end="")
    predicted = run(steps["predict"])
    predictions_csv = re.search(r"written to (\S+)", predicted).group(1)
    figure = draw_predictions(predictions_csv, tables["test"], os.path.join(OUT, "predictions.png"))
    mae = float(re.search(r"mae ([0-9.]+)", evaluated).group(1))
    print(f"\ntest mae of the best checkpoint: {mae:.1f} (the target spans 25-346)")
    print(
        f"predicted vs true: {figure}\nloss plot: {os.path.join(OUT, 'checkpoints', 'plots', 'loss.png')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
