"""Conversion throughput with all workers against one worker, in one run.

.venv/bin/python bench/convert.py [--images 600]
"""

import argparse
import os
import tempfile

from common import machine, timed, write_tree

from library.vision.convert import ConvertOptions, convert


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        # Larger than max_edge so every image is decoded, resized and re-encoded.
        tree = write_tree(os.path.join(work, "images"), args.images, min_edge=400, max_edge=700)
        rates = {}
        for workers in (1, 0, 1, 0):  # interleaved, so drift hits both alike
            options = ConvertOptions(
                tree,
                "b",
                os.path.join(work, f"out{workers}"),
                max_edge=256,
                num_workers=workers,
                overwrite=True,
            )
            _, seconds = timed(lambda options=options: convert(options))
            rates.setdefault(workers, []).append(args.images / seconds)
    one, every = max(rates[1]), max(rates[0])
    print(f"machine: {machine()}")
    print(
        f"convert: all {os.cpu_count()} workers {every:.0f} img/s, one worker {one:.0f} img/s, "
        f"speed-up {every / one:.2f}x"
    )


if __name__ == "__main__":
    main()
