"""The modes of run.py: resolve the configuration first (no TensorFlow yet), then act."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

from library.config import ConfigError, Field, resolve, to_yaml

ProjectLoader = Callable[[], Mapping[str, Callable]]


def main(
    argv: Sequence[str],
    hyperparameters: Sequence[Field],
    load_project: ProjectLoader,
    prog: str = "run.py",
) -> int:
    """Runs one mode of ``run.py``; returns the exit status.

    Args:
        argv: command-line arguments without the program name.
        hyperparameters: the project's hyperparameter schema (``project/hyperparameters.py``).
        load_project: returns the project's functions by contract name (``input_fn``,
            ``model_fn``, ``loss_fn``, ``optimizer_fn``, optional ``metrics_fn``,
            ``predictions_fn``, ``serving_fn``); called only after the configuration is valid,
            so that ``--help`` and configuration errors do not wait for TensorFlow.
        prog: program name for messages.
    """
    try:
        params, args = resolve(argv, hyperparameters, prog=prog)
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(to_yaml(params))
        return 0
    print(
        f"{prog}: mode {args.mode}, config set {params.config_set!r}, "
        f"hyperparameter set {params.hyperparameter_set!r}"
    )
    print(to_yaml(params), end="")
    print(f"{prog}: output folder {os.path.abspath(params.model_dir)}", flush=True)

    from library.quiet import import_tensorflow

    import_tensorflow()  # deferred until the configuration is valid: it takes seconds
    from library import commands

    try:
        return commands.run_mode(args.mode, params, load_project())
    except commands.UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\n{prog}: interrupted; the same command resumes from the last checkpoint",
            file=sys.stderr,
        )
        return 130
