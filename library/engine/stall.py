"""A watchdog for a trainer fed by the tf.data service: a service whose every worker is gone
makes a step wait for ever, and a blocked step cannot be interrupted from Python."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable


class StallWatch:
    """Ends the process with one line when training makes no step for ``timeout_secs`` while
    it waits on the tf.data service: a service whose every worker is gone makes the trainer
    wait for ever (TensorFlow retries without end), and a blocked step cannot be interrupted
    from Python. The last checkpoint stays; the same command resumes from it.

    Armed only around a chunk of training steps (``with watch:``), after the first chunk (the
    first includes tracing, and the service starting its job on the workers).
    """

    def __init__(
        self, read_step: Callable[[], int], timeout_secs: float, message: Callable[[], str]
    ):
        self.read_step, self.timeout_secs, self.message = read_step, timeout_secs, message
        self.chunks = 0
        self.done: threading.Event | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> StallWatch:
        self.chunks += 1
        if self.chunks > 1:  # a thread per chunk: none is left once training ends
            self.done = threading.Event()
            self.thread = threading.Thread(
                target=self._watch, args=(self.done,), daemon=True, name="stall-watch"
            )
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is not None and self.done is not None:  # started together
            self.done.set()
            self.thread.join()
            self.thread = self.done = None

    def _watch(self, done: threading.Event) -> None:
        poll = min(1.0, self.timeout_secs / 4)
        last_step, since = self.read_step(), time.monotonic()
        while not done.wait(poll):
            step = self.read_step()
            if step != last_step:
                last_step, since = step, time.monotonic()
            elif time.monotonic() - since > self.timeout_secs and not done.is_set():
                print(f"run.py: error: {self.message()}", file=sys.stderr, flush=True)
                os._exit(1)
