"""The configuration reference, generated from the schemas: ``make docs`` runs

    python -m library.config.reference project.hyperparameters docs/configuration.md

which rewrites the part of the file between the ``config-reference`` markers (without a
file: prints the reference)."""

from __future__ import annotations

import importlib
import io
import os
import sys
from collections.abc import Sequence

from library.base.files import atomic_write_text
from library.config.params import Schema
from library.config.schema import HYPERPARAMETERS, PROJECT, Field, constraint, plain

START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def markdown_reference(
    hyperparameters: Sequence[Field] = (), run_options: Sequence[Field] = ()
) -> str:
    """Every key of both files as Markdown tables: type, default, meaning."""
    schema = Schema(hyperparameters, run_options)
    out = io.StringIO()
    for file in (PROJECT, HYPERPARAMETERS):
        out.write(f"\n`{file}.yaml`\n\n| key | type | default | meaning |\n|---|---|---|---|\n")
        for field in schema.file_fields(file):
            allowed = constraint(field).replace("|", ", ")
            out.write(
                f"| `{field.name}` | {field.type_name} | `{plain(field.default)!r}` | "
                f"{field.help}{allowed} |\n"
            )
    return out.getvalue()


def update_reference(
    path: str, hyperparameters: Sequence[Field] = (), run_options: Sequence[Field] = ()
) -> None:
    """Rewrites the reference between the ``config-reference`` markers of ``path``."""
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    head, rest = text.split(START, 1)
    reference = markdown_reference(hyperparameters, run_options)
    atomic_write_text(path, head + START + reference + END + rest.split(END, 1)[1])


def main(argv: list[str]) -> int:
    sys.path.insert(0, os.getcwd())
    declarations = importlib.import_module(argv[0])
    fields = declarations.HYPERPARAMETERS, getattr(declarations, "RUN_OPTIONS", ())
    if len(argv) > 1:
        update_reference(argv[1], *fields)
    else:
        sys.stdout.write(markdown_reference(*fields))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
