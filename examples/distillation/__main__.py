"""The distillation end to end, as a user runs it: ``python -m examples.distillation``.

1. The handwritten digits (they ship with scikit-learn) as records under
   ``dataset/distillation/``.
2. ``examples/distillation/run.py --config_set teacher``: the residual network, trained by
   the library's own update.
3. ``--config_set default``: the small CNN alone (the student), the same way.
4. ``--config_set distilled``: the small CNN again, its update the project's own
   (``DistillationStep``): the teacher's best checkpoint frozen inside it.
5. Each best checkpoint evaluated on the test records, the accuracies side by side.

Extra arguments go to every training command (``--train_epochs 4``).
"""

import os
import re
import shutil
import subprocess
import sys

from examples.distillation import FOLDER
from examples.distillation.data import DATASET, write_data

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
OUT = os.path.join("out", "distillation")
SETS = {"teacher": "teacher", "student": "default", "distilled": "distilled"}  # name: set


def run(argv: list[str]) -> str:
    """run.py as a user runs it, echoed; its output."""
    print(f"\n$ python examples/distillation/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"distillation: run.py failed with status {process.returncode}")
    return process.stdout


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # fresh runs, not resumes of the last ones
    counts = write_data()
    print(", ".join(f"{n} {split} digits" for split, n in counts.items()) + f" in {DATASET}")
    test = ["--eval_files", os.path.join(DATASET, "test-*.tfrecord")]
    accuracy = {}
    for name, config_set in SETS.items():
        run(["--config_set", config_set, *extra])
        evaluate = ["--mode", "evaluate", "--checkpoint", "best", *test]
        evaluated = run(["--config_set", config_set, *evaluate])
        accuracy[name] = float(re.search(r"accuracy ([0-9.]+)", evaluated).group(1))
    print("\ntest accuracy of each best checkpoint:")
    for name in SETS:
        print(f"  {name:9s} {accuracy[name]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
