"""Where a run's wall time went, across its restarts (its goodput): start-up, training steps,
waiting for input, checkpoints, evaluations, and what each restart cost (the steps trained
past the last checkpoint and lost, and the time between the kill and the next start).

The account is ``goodput.json`` in ``model_dir``, written at each log line and at the end: an
output for people (and TensorBoard's ``goodput/``), read back only to go on counting. Its
``heartbeat`` (the step reached, and when) is what tells a restart how much was lost.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from library.base.files import atomic_write_text, exists, read_text

GOODPUT_FILE = "goodput.json"
PARTS = (
    "startup",
    "steps",
    "input_wait",
    "checkpoints",
    "evaluations",
    "other",
    "redone",
    "down",
)


def process_start() -> float:
    """When this process started (Linux: its /proc entry), else now."""
    try:
        return os.stat(f"/proc/{os.getpid()}").st_ctime
    except OSError:
        return time.time()


class Goodput:
    """The account of one run (``model_dir``), carried on by each start.

    Args:
        model_dir: where ``goodput.json`` lives.
        resumed_step: the step this start resumes from (None: a fresh run).
        started: when this start began (default: when the process did; the Estimator gives
            when it was made, so that a process training several runs, a search's, counts
            each apart).
    """

    def __init__(self, model_dir: str, resumed_step: int | None, started: float | None = None):
        self.path = os.path.join(model_dir, GOODPUT_FILE)
        saved = _read(self.path) if resumed_step is not None else {}
        self.seconds: dict[str, float] = {p: 0.0 for p in PARTS}
        self.seconds.update(saved.get("seconds", {}))
        self.steps = int(saved.get("steps", 0))  # trained and kept (not redone)
        self.restarts = int(saved.get("restarts", 0))
        self.lost_steps = int(saved.get("lost_steps", 0))
        self.started = started or process_start()
        self.first_step: float | None = None
        self.heartbeat = {"step": resumed_step or 0, "time": self.started}
        self.redo = 0  # steps of this start that only redo lost ones
        beat = saved.get("heartbeat")
        if resumed_step is not None and beat and not saved.get("ended"):
            self.restarts += 1
            self.redo = max(0, int(beat["step"]) - resumed_step)
            self.lost_steps += self.redo
            self.seconds["down"] += max(0.0, self.started - float(beat["time"]))
        self._at_start = sum(self.seconds.values()) - self.seconds["down"]

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += seconds

    def trained(self, steps: int, seconds: float) -> None:
        """``steps`` steps took ``seconds`` (their input wait is said apart: ``waited``)."""
        if self.first_step is None:
            self.first_step = time.time() - seconds
            self.seconds["startup"] += self.first_step - self.started
        redone = min(self.redo, steps)
        self.redo -= redone
        per_step = seconds / steps if steps else 0.0
        self.seconds["redone"] += redone * per_step
        self.seconds["steps"] += (steps - redone) * per_step
        self.steps += steps - redone

    def waited(self, seconds: float) -> None:
        """Of the steps' time, ``seconds`` went to waiting for input."""
        self.seconds["steps"] -= seconds
        self.seconds["input_wait"] += seconds

    def beat(self, step: int, ended: bool = False, every_secs: float = 0.0) -> None:
        """The step reached, and now: written with the account (``ended``: this start ended
        on its own, so the next one is no restart), at most every ``every_secs``."""
        now = time.time()
        if now - self.heartbeat["time"] < every_secs:
            return
        self.heartbeat = {"step": step, "time": now}
        account = {**self.to_dict(), "ended": ended}
        atomic_write_text(self.path, json.dumps(account, indent=1) + "\n", durable=ended)

    def close(self, step: int, ended: bool) -> None:
        """At the end of this start (at ``step``): the time no part counted (logging, the
        recorders, building the model) goes to ``other``, and the account is written."""
        counted = sum(self.seconds.values()) - self.seconds["down"] - self._at_start
        self.seconds["other"] += max(0.0, time.time() - self.started - counted)
        self.beat(step, ended)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "steps": self.steps,
            "restarts": self.restarts,
            "lost_steps": self.lost_steps,
            "heartbeat": self.heartbeat,
        }

    def line(self) -> str:
        """``trained 84% of 31 min; 2 restarts lost 41 s`` (the share of the wall time spent
        in steps that were kept)."""
        total = sum(self.seconds.values())
        share = self.seconds["steps"] / total if total else 0.0
        said = f"goodput: trained {share:.0%} of {_duration(total)}"
        said += (
            " ("
            + ", ".join(
                f"{part.replace('_', ' ')} {_duration(self.seconds[part])}"
                for part in ("startup", "input_wait", "checkpoints", "evaluations")
            )
            + ")"
        )
        if self.restarts:
            lost = self.seconds["redone"] + self.seconds["down"]
            plural = "s" if self.restarts > 1 else ""
            said += (
                f"; {self.restarts} restart{plural} lost {_duration(lost)} "
                f"({self.lost_steps} steps trained again)"
            )
        return said


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _read(path: str) -> dict[str, Any]:
    if not exists(path):
        return {}
    try:
        saved = json.loads(read_text(path))
    except ValueError:
        return {}
    return saved if isinstance(saved, dict) else {}
