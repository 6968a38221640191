"""run.py's entry: resolve the configuration first (no TensorFlow yet), then run the mode."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from library.base.errors import UserError
from library.base.quiet import import_tensorflow
from library.config import TRAINING_MODES, Params, resolve, to_yaml
from library.contract import Project, project_functions
from library.search.space import parse_space, parse_sweep


def main(argv: Sequence[str], project: Project, prog: str = "run.py") -> int:
    """Runs one mode of ``run.py``; returns the exit status (``library.cli.modes.run_mode``
    says which).

    Args:
        argv: command-line arguments without the program name.
        project: the project package (``library/contract.py``): what it declares before
            TensorFlow loads (``HYPERPARAMETERS``, ``METRICS``, ``RUN_OPTIONS``, ``check``,
            ``onednn_off``) and ``load_functions()``, called only after the configuration is
            valid, so that ``--help`` and configuration errors do not wait for TensorFlow.
        prog: program name for messages.
    """
    try:
        params, args = resolve(
            argv,
            project.HYPERPARAMETERS,
            prog,
            metrics=getattr(project, "METRICS", ()),
            check=getattr(project, "check", None),
            run_options=getattr(project, "RUN_OPTIONS", ()),
        )
        if args.print_config:
            sys.stdout.write(to_yaml(params))
            return 0
        sweep = _checked_request(params, args, prog)
        _say_what_runs(params, args.mode, prog)
        if args.mode in TRAINING_MODES:
            runs = [params]
            if sweep is not None:  # one process trains every value: any value at risk decides
                key, values = sweep[0], sweep[1]
                runs = [params.replace(**{key: value}) for value in values]
            _choose_onednn(runs, getattr(project, "onednn_off", None), prog)
        # Deferred until the configuration is valid: it takes seconds.
        import_tensorflow(probe_devices=params.distribution != "multi_worker")
        from library.cli import modes

        functions = project_functions(project)
        if sweep is not None:
            return modes.run_sweep(params, functions, *sweep, sweep_all=args.sweep_all)
        return modes.run_mode(args.mode, params, functions)
    except UserError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\n{prog}: interrupted; the same command resumes from the last checkpoint",
            file=sys.stderr,
        )
        return 130


def _checked_request(
    params: Params, args: argparse.Namespace, prog: str
) -> tuple[str, list[Any], bool] | None:
    """What the command line asks besides the configuration, checked before TensorFlow
    loads: the sweep (``(key, values, geometric)``, or None), the search's space, the
    packages the mode needs.

    Raises:
        UserError: one line.
    """
    sweep = parse_sweep(args.sweep, params.schema) if args.sweep else None
    if sweep is not None and args.mode not in ("train_and_evaluate", "search"):
        raise UserError("--sweep trains and evaluates: drop --mode")
    if args.mode == "search":
        if sweep is not None:
            raise UserError("--sweep and --mode search: choose one")
        parse_space(params)
        if importlib.util.find_spec("optuna") is None:
            raise UserError(
                f"--mode search runs on Optuna, which is not installed for {sys.executable}: "
                "make requirements (it is in requirements.txt)"
            )
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(
            f"TensorFlow is not installed for {sys.executable}; use the project's "
            f"environment: .venv/bin/python {prog} ... (make requirements creates it)"
        )
    return sweep


def _say_what_runs(params, mode: str, prog: str) -> None:
    """The header: what trains is worth reading in full (the configuration); a lookup is
    one line."""
    if mode in TRAINING_MODES:
        print(
            f"{prog}: mode {mode}, config set {params.config_set!r}, "
            f"hyperparameter set {params.hyperparameter_set!r}"
        )
        print(to_yaml(params), end="")
        print(f"{prog}: output folder {os.path.abspath(params.model_dir)}", flush=True)
    else:
        print(
            f"{prog}: mode {mode}, config set {params.config_set!r}, "
            f"checkpoint {params.checkpoint!r}",
            flush=True,
        )


def _choose_onednn(runs, onednn_off, prog: str) -> None:
    """Turns oneDNN off before TensorFlow loads (the only time it can be) when asked to.

    TF 2.21's oneDNN kernel for a convolution's filter gradient crashes the process (SIGSEGV
    or SIGABRT) on some CPUs for 1x1 stride-2 convolutions with few input channels (3-8) on
    maps near 60 px, which pretrained modules' early layers have. Without oneDNN training
    is slower (bench/onednn.py: up to 0.41x for a ResNet), so ``auto`` turns it off only
    for the ``runs`` (the configurations one process trains) the project says are at risk.
    A ``TF_ENABLE_ONEDNN_OPTS`` the user set wins over all of this.
    """
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
        return
    params = runs[0]
    off = params.onednn == "off" or (
        params.onednn == "auto" and onednn_off is not None and any(map(onednn_off, runs))
    )
    if off:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
        if params.onednn == "auto":
            print(
                f"{prog}: oneDNN off for this run (fine-tuning a module meets TF 2.21's "
                "crashing oneDNN conv-gradient kernel); onednn: on keeps it",
                flush=True,
            )
