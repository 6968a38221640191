"""The command line: ``run.py``'s entry (``main``, in ``command_line``: the configuration
first, before TensorFlow), what each ``--mode`` does (``modes``), prediction on files
(``predict``), TensorFlow imported quietly (``quiet``)."""

from library.cli.command_line import main

__all__ = ["main"]
