"""Finding the shard behind a data error TensorFlow does not name: corrupt or truncated
TFRecord files, and what ``skip_corrupt_records`` loses."""

from __future__ import annotations

import tensorflow as tf

from library.base.errors import first_line
from library.data.files import match_files
from library.data.records import manifest_counts


def scan_shard(path: str) -> tuple[int, str]:
    """(records read, error message or '') for one shard, read to its end."""
    count = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            next(iterator)
        except StopIteration:
            return count, ""
        except tf.errors.OpError as error:
            return count, first_line(error)
        count += 1


def report_lost_records(file_pattern: str) -> list[str]:
    """One line per shard that cannot be read to its end, with the records lost."""
    files = match_files(file_pattern)
    expected = manifest_counts(files)
    lines = []
    for path in files:
        readable, error = scan_shard(path)
        if error:
            total = expected.get(path)
            lost = f"{total - readable} of {total}" if total is not None else "the rest"
            lines.append(
                f"{path}: corrupt after record {readable}; skipping {lost} records ({error})"
            )
    return lines


def find_corrupt_shard(file_pattern: str) -> str | None:
    """One line naming the first shard of ``file_pattern`` that cannot be read to its end,
    or None when all can."""
    for path in match_files(file_pattern):
        readable, error = scan_shard(path)
        if error:
            return (
                f"{path}: corrupt or truncated shard after record {readable} ({error}); "
                "re-create it, or set skip_corrupt_records: true to skip the damaged rest"
            )
    return None
