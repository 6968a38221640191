"""The GAN end to end, as a user runs it: ``python -m examples.gan``.

1. The handwritten digits (they ship with scikit-learn) at 16 px in [-1, 1], as records under
   ``dataset/gan/``.
2. ``examples/gan/run.py``: both networks trained by the project's own step (``GANStep``),
   the generator's samples drawn at each evaluation (TensorBoard ``eval/samples`` and
   ``samples.png``).
3. The best generator exported and reloaded in a fresh process, asked for 16 digits from
   fresh noise: ``out/gan/generated.png``.

Extra arguments go to the training command (``--train_epochs 10``).
"""

import os
import re
import shutil
import subprocess
import sys

from examples.gan import FOLDER
from examples.gan.data import DATASET, write_data

ROOT = os.path.dirname(os.path.dirname(FOLDER))
RUN_PY = os.path.join(FOLDER, "run.py")
OUT = os.path.join("out", "gan")

GENERATE = """
import sys
import numpy as np
from library import import_tensorflow
from examples.gan.functions import grid, to_uint8
from library import save_figure
tf = import_tensorflow()
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
noise_dim = serve.structured_input_signature[1]["noise"].shape[-1]
noise = np.random.default_rng(1).normal(size=(16, noise_dim)).astype("float32")
images = serve(noise=tf.constant(noise))["image"].numpy()
pictures = [tf.io.decode_png(png).numpy()[..., 0] for png in images]
save_figure(grid(np.stack(pictures), "the exported generator"), sys.argv[2])
print(f"16 digits from the reloaded SavedModel: {sys.argv[2]}")
"""


def run(argv: list[str]) -> str:
    """run.py as a user runs it, echoed; its output."""
    print(f"\n$ python examples/gan/run.py {' '.join(argv)}", flush=True)
    process = subprocess.run(
        [sys.executable, RUN_PY, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    print(process.stdout, end="", flush=True)
    if process.returncode:
        sys.exit(f"gan: run.py failed with status {process.returncode}")
    return process.stdout


def generate(export_dir: str, path: str) -> str:
    """In a fresh process: the SavedModel loaded and asked for 16 digits, drawn to ``path``."""
    process = subprocess.run(
        [sys.executable, "-c", GENERATE, export_dir, path],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )  # fmt: skip
    if process.returncode:
        sys.exit(f"gan: the reloaded SavedModel failed: {process.stderr[-2000:]}")
    return process.stdout


def main(extra: list[str]) -> int:
    os.chdir(ROOT)
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run, not a resume of the last one
    counts = write_data()
    print(", ".join(f"{n} {split} digits" for split, n in counts.items()) + f" in {DATASET}")
    run(list(extra))
    exported = run(["--mode", "export", "--checkpoint", "best"])
    export_dir = re.search(r"exported SavedModel: (\S+)", exported).group(1)
    print(generate(export_dir, os.path.join(OUT, "generated.png")), end="")
    print(f"samples at each evaluation: {os.path.join(OUT, 'checkpoints', 'samples.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
