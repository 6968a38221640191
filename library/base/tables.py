"""CSV tables, written one way: a header and rows as text (``csv_text``), and a whole table
written atomically (``write_csv``). Cells are written as they are (format numbers first)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

from library.base.files import atomic_write_text


def csv_text(rows: Iterable[Sequence | Mapping], columns: Sequence[str] | None = None) -> str:
    """``rows`` as CSV text, after a header of ``columns`` when given; a row is a sequence of
    cells, or a mapping by column (a missing cell empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if columns is not None:
        writer.writerow(columns)
    for row in rows:
        if isinstance(row, Mapping):
            if columns is None:
                raise ValueError("rows given as mappings need the columns")
            row = [row.get(c, "") for c in columns]
        writer.writerow(row)
    return out.getvalue()


def write_csv(path: str, columns: Sequence[str], rows: Iterable[Sequence | Mapping]) -> None:
    """Writes the table (header, rows) to ``path``, atomically."""
    atomic_write_text(path, csv_text(rows, columns))
