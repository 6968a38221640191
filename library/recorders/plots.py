"""Matplotlib figures drawn from ``metrics.jsonl``: train and eval loss in one figure, each
loss term, each metric, the learning rate. ``DrawPlots`` redraws them after each evaluation,
in the background."""

from __future__ import annotations

import io
import math
import os

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none wanted
import matplotlib.pyplot as plt

from library.base.files import atomic_write_bytes
from library.recorders.base import Background, Evaluation, Recorder
from library.recorders.metrics_log import read_metrics


def save_figure(figure, path: str) -> None:
    """Writes ``figure`` as a PNG atomically, and closes it."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, out.getvalue())


def loss_scale(values: list) -> str:
    """``log`` when the losses span more than a factor of 20 (an untrained first evaluation
    far above the rest would flatten them on a linear axis), else ``linear``."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) > 20 else "linear"


def plot_metrics(records: list[dict], plots_dir: str) -> list[str]:
    """Writes ``loss.png`` (train and eval loss), ``loss_terms.png`` (each term, train and
    eval, when the loss has terms), one PNG per eval metric and ``learning_rate.png``;
    returns their paths. The x axis is the epoch when the records of an epoch are counted,
    else the step."""
    if not records:
        return []
    by_epoch = all(r.get("epoch") is not None for r in records)
    x = [r["epoch"] if by_epoch else r["step"] for r in records]
    xlabel = "epoch" if by_epoch else "step"
    written = []

    def curves(path, title, ylabel, named, log_scale=False):
        figure, axis = plt.subplots(figsize=(6, 4))
        everything = []
        for label, key, style in named:
            values = [r.get(key) for r in records]
            everything += values
            # A value missing from a record (None) is a gap in the curve, as NaN draws it.
            axis.plot(x, [math.nan if v is None else v for v in values], style, label=label)
        if log_scale:
            axis.set_yscale(loss_scale(everything))
        axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
        axis.grid(alpha=0.3)
        if len(named) > 1:
            axis.legend()
        written.append(os.path.join(plots_dir, path))
        save_figure(figure, written[-1])

    # Several evaluation sets: each set's loss (eval_<set>/loss) beside the training loss.
    set_losses = [k for k in records[-1] if k.startswith("eval_") and k.endswith("/loss")]
    evaluated = [(f"eval {k[5:-5]} loss", k, "s-") for k in set_losses] or [
        ("eval loss", "eval_loss", "s-")
    ]
    curves(
        "loss.png",
        "Loss: a widening gap means overfitting",
        "loss",
        [("train loss", "train_loss", "o-"), *evaluated],
        log_scale=True,
    )
    terms = [k.removeprefix("eval_loss/") for k in records[-1] if k.startswith("eval_loss/")]
    if terms:
        named = []
        for term in terms:
            named += [(f"train {term}", f"train_loss/{term}", "o-")]
            named += [(f"eval {term}", f"eval_loss/{term}", "s--")]
        curves("loss_terms.png", "Loss terms", "loss", named, log_scale=True)
    names = [k for k in records[-1] if k.startswith("eval_") and not k.startswith("eval_loss")]
    for name in [*names, "learning_rate"]:
        if all(r.get(name) is None for r in records):
            continue
        file = name.replace("/", "_")  # a set's metric: eval_<set>/<metric>
        curves(f"{file}.png", name.replace("_", " "), name, [(name, name, "o-")])
    return written


class DrawPlots(Recorder):
    """Redraws the PNG plots from ``metrics.jsonl`` in the background (matplotlib is slow);
    a drawing asked for while one runs is made once that one ends."""

    def __init__(self, model_dir: str, say=print):
        self.model_dir = model_dir
        self.background = Background("plots", coalesce=True, report=say)

    def on_evaluation(self, evaluation: Evaluation) -> None:
        self.background.submit(self._draw)

    def _draw(self) -> None:
        plot_metrics(read_metrics(self.model_dir), os.path.join(self.model_dir, "plots"))

    def finish(self) -> None:
        self.background.wait()
