"""The figures of searches: the best metric against the value of a one-key sweep, and
Optuna's history and parameter importances of a study."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping

import numpy as np
from optuna.trial import TrialState

from library.base.files import atomic_write_bytes
from library.recorders.plots import plt, save_figure


def plot_sweep(
    key: str,
    values: list,
    losses: list,
    path: str,
    log_x: bool = False,
    metric: str = "loss",
    mode: str = "min",
) -> str:
    """The best ``metric`` of each value of a sweep; the best one (by ``mode``) marked."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    positions = list(values) if numeric else list(range(len(values)))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(positions, losses, "o-")
    best = int(np.argmin(losses) if mode == "min" else np.argmax(losses))
    axis.plot([positions[best]], [losses[best]], "*", markersize=16, label=f"best: {values[best]}")
    if numeric and log_x:
        axis.set_xscale("log")
    if not numeric:
        axis.set_xticks(positions, [str(v) for v in values])
    axis.set(xlabel=key, ylabel=f"best eval {metric}", title=f"Sweep over {key}")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path)
    return path


def draw_figures(study, root: str, say) -> list[str]:
    """Optuna's history and parameter-importance figures, as PNGs (drawn where there are
    enough trials; a figure that cannot be drawn is said and left out)."""
    from optuna.visualization import matplotlib as figures

    written: list[str] = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:  # nothing to draw
        return written
    plots: Mapping[str, Callable] = {"history.png": figures.plot_optimization_history}
    if len(complete) >= 2 and len(study.best_trial.params) >= 1:
        plots = {**plots, "importances.png": figures.plot_param_importances}
    for name, plot in plots.items():
        try:
            axis = plot(study, target_name=f"best {study.user_attrs.get('metric', 'value')}")
            out = io.BytesIO()
            axis.figure.savefig(out, format="png", dpi=110, bbox_inches="tight")
            plt.close(axis.figure)
        except Exception as error:
            say(f"note: {name} not drawn ({type(error).__name__}: {error})")
            continue
        path = os.path.join(root, name)
        atomic_write_bytes(path, out.getvalue())
        written.append(path)
    return written
