"""Small file helpers: nothing half-written is ever visible under its final name."""

from __future__ import annotations

import os


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to a temporary name beside ``path``, then renames it into place."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
