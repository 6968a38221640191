"""Matplotlib figures drawn from ``metrics.jsonl``: train and eval loss in one figure."""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none wanted
import matplotlib.pyplot as plt


def _save(figure, path: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}.png"
    figure.savefig(temporary, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)


def loss_scale(values: list) -> str:
    """``log`` when the losses span more than a factor of 20 (an untrained first evaluation
    far above the rest would flatten them on a linear axis), else ``linear``."""
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return "linear"
    return "log" if max(finite) / min(finite) > 20 else "linear"


def plot_metrics(records: list[dict], plots_dir: str) -> list[str]:
    """Writes ``loss.png``, ``learning_rate.png`` and one PNG per eval metric; returns paths."""
    if not records:
        return []
    os.makedirs(plots_dir, exist_ok=True)
    epochs = [r["epoch"] for r in records]
    written = []

    figure, axis = plt.subplots(figsize=(6, 4))
    train = [r.get("train_loss") for r in records]
    evaluation = [r.get("eval_loss") for r in records]
    axis.plot(epochs, train, "o-", label="train loss")
    axis.plot(epochs, evaluation, "s-", label="eval loss")
    axis.set_yscale(loss_scale(train + evaluation))
    axis.set(xlabel="epoch", ylabel="loss", title="Loss: a widening gap means overfitting")
    axis.grid(alpha=0.3)
    axis.legend()
    written.append(os.path.join(plots_dir, "loss.png"))
    _save(figure, written[-1])

    names = [k for k in records[-1] if k.startswith("eval_") and k != "eval_loss"]
    for name in [*names, "learning_rate"]:
        values = [r.get(name) for r in records]
        if all(v is None for v in values):
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(epochs, values, "o-")
        axis.set(xlabel="epoch", ylabel=name, title=name.replace("_", " "))
        axis.grid(alpha=0.3)
        written.append(os.path.join(plots_dir, f"{name}.png"))
        _save(figure, written[-1])
    return written
