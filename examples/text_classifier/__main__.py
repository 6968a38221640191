"""The text classifier end to end, as a user runs it: ``python -m examples.text_classifier``.

1. The docstrings of eight standard-library packages (``data.py``: 1716 texts on Python
   3.11), split by a hash of each text into train, validation and test records (the
   library's writer; the manifests count them and list the classes) under
   ``dataset/text_classifier/``, and the test split again as JSON lines.
2. ``examples/text_classifier/run.py``: train and evaluate (the vocabulary adapted on the
   training texts first; the best checkpoint by accuracy), evaluate the best on the test
   records, export it.
3. The SavedModel reloaded in a fresh process, which classifies two sentences written here.
4. Predict the test JSON lines (``predictions.csv``), and a confusion matrix of them.

Extra arguments go to the training command (``--train_epochs 4``).
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

from examples.text_classifier import FOLDER, LABEL, TEXT
from examples.text_classifier.data import JSON_LINES, PACKAGES, write_dataset

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
DATASET = os.path.join("dataset", "text_classifier")
OUT = os.path.join("out", "text_classifier")
# Written for this demo, in no docstring: what would a reader say each one documents?
SENTENCES = (
    "Return the value of the Content-Type header of this message.",
    "Run the coroutine in the event loop until it completes.",
)


def commands(folder: str = DATASET, out: str = OUT, *extra: str) -> dict[str, list[str]]:
    """The run.py command lines of the journey, by name."""
    folders = {
        "--train_files": os.path.join(folder, "train-*.tfrecord"),
        "--eval_files": os.path.join(folder, "validation-*.tfrecord"),
        "--model_dir": os.path.join(out, "checkpoints"),
        "--best_model_dir": os.path.join(out, "best"),
    }
    common = [part for flag, value in folders.items() for part in (flag, value)]
    test = ["--eval_files", os.path.join(folder, "test-*.tfrecord")]
    texts = ["--predict_files", os.path.join(folder, JSON_LINES)]
    return {
        "train": [*common, *extra],
        "evaluate": [*common, "--mode", "evaluate", "--checkpoint", "best", *test],
        "export": [*common, "--mode", "export", "--checkpoint", "best"],
        "predict": [*common, "--mode", "predict", "--checkpoint", "best", *texts],
    }


def run(argv: list[str]) -> str:
    """run.py as a user runs it, echoed; its output."""
    print(f"\n$ python examples/text_classifier/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"text_classifier: run.py failed with status {process.returncode}")
    return process.stdout


RELOAD = """
import json, sys
from library import import_tensorflow
tf = import_tensorflow()
export_dir, sentences, text, name = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
serve = tf.saved_model.load(export_dir).signatures["serving_default"]
out = serve(**{text: tf.constant(sentences)})
for sentence, module, p in zip(sentences, out[name].numpy(), out["probability"].numpy()):
    print(f"SavedModel: {module.decode()} (probability {p:.3f}): {sentence!r}")
"""


def classify_with_saved_model(export_dir: str, sentences=SENTENCES) -> str:
    """In a fresh process, which knows no vocabulary but the one the export holds: the
    SavedModel loaded, ``sentences`` classified; returns what it printed."""
    argv = [export_dir, json.dumps(list(sentences)), TEXT, f"{LABEL}_name"]
    process = subprocess.run(
        [sys.executable, "-c", RELOAD, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    if process.returncode:
        sys.exit(f"text_classifier: the reloaded SavedModel failed: {process.stderr[-2000:]}")
    return process.stdout


def predicted_and_true(predictions_csv: str, json_lines: str) -> list[tuple[str, str]]:
    """``(true, predicted)`` package of each predicted line (predict names a row
    ``path:line``)."""
    with open(json_lines, encoding="utf-8") as stream:
        truth = {n: json.loads(line)[LABEL] for n, line in enumerate(stream, 1) if line.strip()}
    with open(predictions_csv, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return [(truth[int(r["file"].rsplit(":", 1)[1])], r[f"{LABEL}_name"]) for r in rows]


def draw_confusion(pairs: list[tuple[str, str]], path: str, classes=PACKAGES) -> str:
    """The confusion matrix of ``pairs`` (rows: the true package, shaded by their share of
    the row; each class's accuracy beside its name)."""
    import numpy as np
    from matplotlib import pyplot as plt

    from library import save_figure

    index = {name: k for k, name in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    for true, predicted in pairs:
        counts[index[true], index[predicted]] += 1
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            colour = "white" if shares[row, column] > 0.5 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=9)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(
        range(len(classes)), [f"{c} ({shares[k, k]:.0%})" for k, c in enumerate(classes)]
    )
    axis.set(
        xlabel="predicted package",
        ylabel="true package (its accuracy)",
        title=f"Test docstrings: {counts.sum()} texts, accuracy {accuracy:.3f}",
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    save_figure(figure, path)
    return path


def main(extra: list[str]) -> int:
    started = time.perf_counter()
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run, not a resume of the last one
    from library import import_tensorflow

    import_tensorflow()  # the records' writer needs it: loaded without its start-up chatter
    counts = write_dataset(DATASET)
    sizes = ", ".join(f"{sum(n.values())} {split}" for split, n in counts.items())
    print(f"docstrings of {len(PACKAGES)} packages ({', '.join(PACKAGES)}): {sizes} in {DATASET}")
    steps = commands(DATASET, OUT, *extra)
    trained = time.perf_counter()
    run(steps["train"])
    training = time.perf_counter() - trained
    evaluated = run(steps["evaluate"])
    exported = run(steps["export"])
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    print(classify_with_saved_model(export_dir), end="")
    predicted = run(steps["predict"])
    predictions_csv = re.search(r"written to (\S+)", predicted).group(1)
    pairs = predicted_and_true(predictions_csv, os.path.join(DATASET, JSON_LINES))
    figure = draw_confusion(pairs, os.path.join(OUT, "confusion_matrix.png"))
    accuracy = float(re.search(r"accuracy ([0-9.]+)", evaluated).group(1))
    largest = max(counts["test"].values()) / sum(counts["test"].values())
    print(
        f"\ntest accuracy of the best checkpoint: {accuracy:.3f} (8 packages; always the "
        f"largest would score {largest:.3f})"
    )
    journey = time.perf_counter() - started
    print(f"training command {training:.0f} s, the whole journey {journey:.0f} s")
    print(f"confusion matrix of the test texts: {figure}")
    print(f"loss plot: {os.path.join(OUT, 'checkpoints', 'plots', 'loss.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
