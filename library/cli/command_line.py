"""run.py's entry: resolve the configuration first (no TensorFlow yet), then run the mode."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from library.base.errors import UserError
from library.config import TRAINING_MODES, ConfigError, resolve, to_yaml
from library.contract import project_functions
from library.search.space import parse_space, parse_sweep


def main(argv: Sequence[str], project: ModuleType, prog: str = "run.py") -> int:
    """Runs one mode of ``run.py``; returns the exit status.

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
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(to_yaml(params))
        return 0
    sweep = None
    if args.sweep:
        try:
            sweep = parse_sweep(args.sweep, params.schema)
        except ConfigError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        if args.mode not in ("train_and_evaluate", "search"):
            print(f"{prog}: error: --sweep trains and evaluates: drop --mode", file=sys.stderr)
            return 2
    if args.mode == "search":
        if sweep is not None:
            print(f"{prog}: error: --sweep and --mode search: choose one", file=sys.stderr)
            return 2
        try:
            parse_space(params)
        except ConfigError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return 2
        if importlib.util.find_spec("optuna") is None:
            print(
                f"{prog}: error: --mode search runs on Optuna, which is not installed for "
                f"{sys.executable}: make requirements (it is in requirements.txt)",
                file=sys.stderr,
            )
            return 2
    if importlib.util.find_spec("tensorflow") is None:
        print(
            f"{prog}: error: TensorFlow is not installed for {sys.executable}; use the "
            f"project's environment: .venv/bin/python {prog} ... (make requirements creates it)",
            file=sys.stderr,
        )
        return 2
    if args.mode in TRAINING_MODES:  # what trains is worth reading in full; a lookup is not
        print(
            f"{prog}: mode {args.mode}, config set {params.config_set!r}, "
            f"hyperparameter set {params.hyperparameter_set!r}"
        )
        print(to_yaml(params), end="")
        print(f"{prog}: output folder {os.path.abspath(params.model_dir)}", flush=True)
    else:
        print(
            f"{prog}: mode {args.mode}, config set {params.config_set!r}, "
            f"checkpoint {params.checkpoint!r}",
            flush=True,
        )

    if args.mode in TRAINING_MODES:
        runs = [params]
        if sweep is not None:  # one process trains every value: any value at risk decides
            key, values = sweep[0], sweep[1]
            runs = [params.replace(**{key: value}) for value in values]
        _choose_onednn(runs, getattr(project, "onednn_off", None), prog)
    from library.base.quiet import import_tensorflow

    # Deferred until the configuration is valid: it takes seconds.
    import_tensorflow(probe_devices=params.distribution != "multi_worker")
    from library.cli import modes

    try:
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


def _choose_onednn(runs, onednn_off, prog: str) -> None:
    """Turns oneDNN off before TensorFlow loads (the only time it can be) when asked to.

    TF 2.21's oneDNN kernel for a convolution's filter gradient crashes the process (SIGSEGV
    or SIGABRT) on some CPUs for 1x1 stride-2 convolutions with few input channels (3-8) on
    maps near 60 px, which pretrained modules' early layers have. Without oneDNN training
    is slower (bench/onednn.py: up to 0.41x for a ResNet), so ``auto`` turns it off only for the ``runs`` (the configurations
    one process trains) the project says are at risk.
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
