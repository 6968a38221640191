"""The regression's data: scikit-learn's diabetes table (it ships with scikit-learn: nothing is
downloaded) as CSV splits, and the same rows as records of the library's writer."""

import csv
import os
import random

from . import COLUMNS, TARGET

DATASET = os.path.join("dataset", "regression")
SPLITS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def write_tables(folder: str = DATASET) -> dict[str, str]:
    """The table as ``<split>.csv`` files (header: the columns and the target)."""
    from sklearn.datasets import load_diabetes

    table = load_diabetes()
    rows = [[*map(float, x), float(y)] for x, y in zip(table.data, table.target, strict=True)]
    random.Random(0).shuffle(rows)
    os.makedirs(folder, exist_ok=True)
    paths, start = {}, 0
    for index, (split, share) in enumerate(SPLITS.items()):
        end = len(rows) if index == len(SPLITS) - 1 else start + round(share * len(rows))
        paths[split] = os.path.join(folder, f"{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow([*COLUMNS, TARGET])
            writer.writerows(rows[start:end])
        start = end
    return paths


def write_records(tables: dict[str, str], folder: str = DATASET) -> dict[str, int]:
    """Each CSV file as records of the library's writer (2 shards and a manifest)."""
    from library import RecordWriter, example

    counts = {}
    for split, path in tables.items():
        with open(path, encoding="utf-8") as stream:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(stream)]
        writer = RecordWriter(folder, split, num_shards=2, overwrite=True)
        for row in rows:
            writer.write(example(row))
        counts[split] = writer.close(source=os.path.basename(path))["num_records"]
    return counts
