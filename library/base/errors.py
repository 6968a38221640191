"""The errors a user of the library meets, in one place (``library`` exports them).

Every ``UserError`` is bad input or a request that cannot be done as asked: ``run.py`` says it
in one line and exits with status 2. ``DivergedError`` (status 1) and ``Interrupted`` (a
signal: 128 + its number) end a training run otherwise. Nothing here imports TensorFlow.
"""

from __future__ import annotations

STACK_LINES = ("Graph execution error:", "Detected at node", "File ", "[[", "The op is created")


class UserError(Exception):
    """Bad input, or a request that cannot be done as asked: one line, exit status 2."""


class ConfigError(UserError):
    """A configuration problem: an unknown key or set, a wrong type, a value out of range."""


class ProjectError(UserError):
    """A project package that does not declare what the contract asks."""


class InputError(UserError):
    """A problem with the input files, naming the file."""


class RecordError(UserError):
    """Records cannot be written as asked (they exist, the folder is not writable)."""


class DataServiceError(UserError):
    """The tf.data service's dispatcher cannot be reached."""


class PlanError(UserError):
    """Durations that cannot be turned into steps."""


class CheckpointError(UserError):
    """Checkpoints exist but none can be restored: never silently start from scratch."""


class NotRestorableError(CheckpointError):
    """No checkpoint of ``directory`` restores into the model being trained."""

    def __init__(self, message: str, directory: str):
        super().__init__(message)
        self.directory = directory


class ExportError(UserError):
    """The project declares no serving inputs, or its predictions cannot be written."""


class LockError(UserError):
    """The folder is held by another run, named."""


class TransferError(UserError):
    """A warm start or an inspection that cannot be done as asked."""


class HubError(UserError):
    """A module that cannot be loaded or used."""


class StrategyError(UserError):
    """The distribution asked for cannot be had here (no TF_CONFIG, no TPU, ...)."""


class CompileError(UserError):
    """The step cannot be compiled as asked (``xla``)."""


class DivergedError(Exception):
    """The loss stayed NaN/Inf for ``max_nonfinite_steps`` steps in a row: exit status 1."""


class Interrupted(Exception):  # noqa: N818 - a way out, like KeyboardInterrupt
    """A stop signal ended training; a checkpoint holds the step reached. ``elsewhere``:
    the signal came to another worker of the run."""

    def __init__(self, signal_name: str, step: int, checkpoint: str, elsewhere: bool = False):
        super().__init__(f"{signal_name} at step {step}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.elsewhere = elsewhere


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The line of an error (or its message) that says what went wrong, at most ``limit``
    characters: the first, or for a TensorFlow graph's error (which opens with "Graph
    execution error:" and where it was raised) the last line that is neither stack nor
    node; the error's type when it says nothing."""
    text = error if isinstance(error, str) else (getattr(error, "message", None) or str(error))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(STACK_LINES)]
    if lines and lines[0] == "Graph execution error:" and said:
        line = said[-1]
    else:
        line = said[0] if said else (lines[0] if lines else "")
    if not line and not isinstance(error, str):
        line = type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
