"""A sweep over one hyperparameter: train each value in turn, each in its own folder, until the
best ``best_metric`` gets worse from one value to the next.

    run.py --config_set NAME --sweep learning_rate=1e-4:1e-2:3.16   # geometric
    run.py --config_set NAME --sweep encoder=small_cnn,resnet [--sweep_all]

Each value trains into ``<model_dir>/sweep/KEY=VALUE/`` (its best checkpoint in ``best/``
below it); a value whose folder holds ``sweep_result.json`` is finished and skipped when the
sweep runs again. ``sweep.csv`` and ``sweep.png`` (the best metric against the value) are
rewritten after each value. This module imports no TensorFlow: the value list is checked
before TensorFlow loads.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from typing import Any

from library.config import ConfigError, Params, Schema
from library.outputs.files import atomic_write_text, exists, read_text

RESULT_FILE = "sweep_result.json"


def parse_sweep(text: str, schema: Schema) -> tuple[str, list[Any], bool]:
    """``KEY=V1,V2,...`` or ``KEY=START:STOP:FACTOR`` (a geometric range, both ends included)
    as ``(key, values, geometric)``; each value checked against the key's type and range."""
    key, separator, spec = text.partition("=")
    if not separator or not spec:
        raise ConfigError(f"--sweep {text}: use KEY=V1,V2,... or KEY=START:STOP:FACTOR")
    field = schema.by_name.get(key)
    if field is None:
        raise schema.unknown(key, "--sweep")
    geometric = spec.count(":") == 2 and field.type in (int, float)
    if geometric:
        try:
            start, stop, factor = (float(part) for part in spec.split(":"))
        except ValueError:
            raise ConfigError(f"--sweep {text}: START:STOP:FACTOR must be numbers") from None
        if start <= 0 or stop <= 0 or factor <= 0 or factor == 1:
            raise ConfigError(
                f"--sweep {text}: a geometric range needs positive numbers, FACTOR != 1"
            )
        raw, value = [], start
        rising = factor > 1
        while (value <= stop * (1 + 1e-9)) if rising else (value >= stop * (1 - 1e-9)):
            raw.append(float(f"{value:.6g}"))
            value *= factor
            if len(raw) > 100:
                raise ConfigError(f"--sweep {text}: more than 100 values")
    else:
        raw = [part.strip() for part in spec.split(",") if part.strip()]
    values = [schema.coerce(key, v, f"--sweep {key}") for v in raw]
    if not values:
        raise ConfigError(f"--sweep {text}: no values")
    return key, values, geometric


def label(key: str, value: Any) -> str:
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{key}={shown}"


def best_evaluation(model_dir: str, metric: str = "loss", mode: str = "min") -> dict | None:
    """The row of ``metrics.jsonl`` with the best ``metric`` (``best_metric``, in the
    direction of ``best_mode``)."""
    from library.recorders.metrics_log import read_metrics

    key = f"eval_{metric}"
    rows = [r for r in read_metrics(model_dir) if math.isfinite(r.get(key, math.nan))]
    if not rows:
        return None
    return (min if mode == "min" else max)(rows, key=lambda r: r[key])


def run_sweep(
    params: Params,
    key: str,
    values: list[Any],
    train: Callable[[Params], int],
    sweep_all: bool = False,
    geometric: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Trains ``params`` with each value of ``key`` in turn; returns an exit status.

    Each value is judged by its best ``best_metric`` (in the direction of ``best_mode``), as
    the best checkpoint is chosen.

    Args:
        params: the resolved configuration; each value gets its own model_dir below it.
        key, values, geometric: what ``parse_sweep`` returned.
        train: trains and evaluates one configuration (``run.py``'s train_and_evaluate);
            returns its exit status.
        sweep_all: run every value, even after the metric got worse.
        say: where one-line messages go.
    """
    metric, mode = params.best_metric, params.best_mode
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    root = os.path.join(params.model_dir, "sweep")
    results: list[dict] = []
    for value in values:
        name = label(key, value)
        folder = os.path.join(root, name)
        result_path = os.path.join(folder, RESULT_FILE)
        result = json.loads(read_text(result_path)) if exists(result_path) else None
        if result is not None and result.get("metric") == metric:
            say(f"{name}: finished before (best {metric} {result['best']:.4g}): skipped")
        else:
            say(f"{name}: training into {folder}")
            changes = {
                key: value,
                "model_dir": folder,
                "best_model_dir": os.path.join(folder, "best"),
            }
            status = train(params.replace(**changes))
            if status:
                return status
            best = best_evaluation(folder, metric, mode)
            if best is None:
                say(f"{name}: no finite evaluation of {metric}; the sweep stops here")
                return 1
            result = {"value": value, "metric": metric, "best": best[f"eval_{metric}"]}
            result.update({"step": best["step"]})
            result.update({k: v for k, v in best.items() if k.startswith("eval_")})
            atomic_write_text(result_path, json.dumps(result, indent=2) + "\n")
        results.append(result)
        _write_outputs(root, key, results, geometric, metric, mode)
        if not sweep_all and len(results) > 1:
            previous, current = results[-2]["best"], results[-1]["best"]
            if better(previous, current):
                say(
                    f"the best {metric} got worse from {label(key, results[-2]['value'])} "
                    f"({previous:.4g}) to {name} ({current:.4g}): the sweep stops "
                    "(--sweep_all runs every value)"
                )
                break
    best = (min if mode == "min" else max)(results, key=lambda r: r["best"])
    say(
        f"best {label(key, best['value'])}: {metric} {best['best']:.4g} at step "
        f"{best['step']}; {os.path.join(root, 'sweep.csv')}, {os.path.join(root, 'sweep.png')}"
    )
    return 0


def _write_outputs(
    root: str, key: str, results: list[dict], geometric: bool, metric: str, mode: str
) -> None:
    metrics = sorted({k for r in results for k in r if k.startswith("eval_")})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([key, f"best_{metric}", "step", *metrics])
    for result in results:
        writer.writerow(
            [result["value"], result["best"], result["step"], *(result.get(m, "") for m in metrics)]
        )
    atomic_write_text(os.path.join(root, "sweep.csv"), out.getvalue())
    from library.recorders import plots

    plots.plot_sweep(
        key,
        [r["value"] for r in results],
        [r["best"] for r in results],
        os.path.join(root, "sweep.png"),
        log_x=geometric,
        metric=metric,
        mode=mode,
    )
