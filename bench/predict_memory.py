"""Peak memory of ``--mode predict`` against the number of rows it predicts.

    .venv/bin/python bench/predict_memory.py [--rows 100000,1000000] [--batch 256]

A tiny model (the regression test project, tests/projects/regression: three float columns
in, a number and two quantiles out) is trained 2 steps in a temporary folder, then predicts
a CSV of each number of rows through its run.py, in a process of its own. Each predict is
measured by a process that runs only it: its ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is
that predict's peak resident memory, whatever ran before. Prints each run's peak and rows
per second (the whole process, TensorFlow's start included; then between the two runs, the
start excluded), and the ratio of the largest run's peak to the smallest's: near 1.0 when
predict streams (memory does not grow with the rows).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from common import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PY = os.path.join(ROOT, "tests", "projects", "regression", "run.py")
PROJECT_FILE = os.path.join(ROOT, "tests", "projects", "regression", "project.yaml")
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def write_csv(path: str, rows: int, with_target: bool, seed: int = 0) -> str:
    """``rows`` random rows ``a,b,c`` (and ``y``), written in chunks (the file, not this
    process, holds them)."""
    rng = np.random.default_rng(seed)
    columns = "a,b,c,y" if with_target else "a,b,c"
    with open(path, "w", encoding="utf-8") as stream:
        stream.write(columns + "\n")
        for start in range(0, rows, 100_000):
            x = rng.normal(size=(min(100_000, rows - start), 3)).round(5)
            if with_target:
                x = np.column_stack([x, 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]])
            stream.write("".join(",".join(map(str, row)) + "\n" for row in x.tolist()))
    return path


def run_py(*argv: str) -> list[str]:
    return [sys.executable, RUN_PY, "--project_file", PROJECT_FILE, *argv]


def measured(command: list[str]) -> tuple[int, float]:
    """Peak resident memory (KiB) and seconds of ``command``, in a process that runs only it
    (so that ``RUSAGE_CHILDREN`` is that command's alone)."""
    probe = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, "
        "text=True); seconds = time.perf_counter() - start; "
        "sys.stderr.write(done.stderr[-3000:] if done.returncode else ''); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, seconds, "
        "done.returncode)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *command], capture_output=True, text=True, env=QUIET
    )
    peak, seconds, status = out.stdout.split()
    if int(status):
        sys.exit(f"predict failed ({status}): {out.stderr}")
    return int(peak), float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="100000,1000000", help="comma list of row counts")
    parser.add_argument("--batch", type=int, default=256, help="eval_batch_size")
    args = parser.parse_args()
    counts = [int(n) for n in args.rows.split(",")]
    with tempfile.TemporaryDirectory() as work:
        table = write_csv(os.path.join(work, "train.csv"), 512, with_target=True, seed=1)
        folders = ["--model_dir", os.path.join(work, "model")]
        folders += ["--best_model_dir", os.path.join(work, "best")]
        train = ["--train_files", table, "--eval_files", table, "--train_steps", "2"]
        trained = subprocess.run(
            run_py(*train, "--steps_between_evals", "2", *folders),
            capture_output=True,
            text=True,
            env=QUIET,
        )
        if trained.returncode:
            sys.exit(f"training failed: {trained.stderr[-3000:]}")
        results = {}
        for count in counts:
            rows = write_csv(os.path.join(work, f"rows-{count}.csv"), count, with_target=False)
            out = os.path.join(work, f"predictions-{count}.csv")
            command = run_py("--mode", "predict", "--predict_files", rows, *folders)
            command += ["--eval_batch_size", str(args.batch), "--predictions_file", out]
            results[count] = measured(command)
            with open(out, encoding="utf-8") as stream:
                written = sum(1 for _ in stream) - 1
            assert written == count, (written, count)
            os.remove(rows)
            os.remove(out)
    print(f"machine: {machine()}")
    for count, (peak, seconds) in results.items():
        print(
            f"predict {count} rows (batch {args.batch}): peak RSS {peak / 1024:.0f} MiB, "
            f"{seconds:.1f} s, {count / seconds:.0f} rows/s"
        )
    small, large = min(results), max(results)
    print(f"peak RSS {large} rows / {small} rows: {results[large][0] / results[small][0]:.2f}")
    # Without the start (TensorFlow's import, the model's restore), which both runs pay.
    extra = (large - small) / (results[large][1] - results[small][1])
    print(f"rows/s between the two runs (start excluded): {extra:.0f}")


if __name__ == "__main__":
    main()
