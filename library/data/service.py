"""The tf.data service: servers that run the training input pipeline beside the trainers.

When decoding and augmenting images needs more CPUs than the trainer's machine has, start a
dispatcher and any number of workers (on other machines, each reading the same files), then
train with ``data_service_address: grpc://DISPATCHER_HOST:PORT``::

    python -m library.data.service dispatcher --port 5050 --work_dir /shared/dispatcher
    python -m library.data.service worker --port 5051 --dispatcher_address HOST:5050

They start in any order, as a cluster scheduler starts them: a worker waits for its
dispatcher (``--wait_secs``, saying so). They run until stopped (Ctrl-C or SIGTERM) and say
where they listen. The trainer sends its input pipeline (the graph of ``input_fn``'s dataset)
to the dispatcher; the workers run it. A dispatcher given ``--work_dir`` journals its state
there: restarted on the same port and folder, it carries on with the jobs it had. A worker
that stops is dropped by the dispatcher after ``--worker_timeout_secs``; the others go on
with the epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlparse

CONNECT_TIMEOUT_SECS = 10.0
WORKER_WAIT_SECS = 120.0


class DataServiceError(Exception):
    """The dispatcher cannot be reached: one line, exit status 2."""


def check_reachable(address: str, timeout_secs: float = CONNECT_TIMEOUT_SECS) -> None:
    """Raises ``DataServiceError`` in at most ``timeout_secs`` when nothing answers at
    ``address`` (``grpc://HOST:PORT`` or ``HOST:PORT``): the tf.data client itself would
    retry for ever."""
    parsed = urlparse(address if "://" in address else f"grpc://{address}")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_secs):
            pass
    except OSError as error:
        raise DataServiceError(
            f"data_service_address {address}: nothing answers there ({error.strerror or error}); "
            "start the dispatcher first: python -m library.data.service dispatcher --port "
            f"{parsed.port}"
        ) from None


def wait_until_reachable(
    address: str, wait_secs: float, say: Callable[[str], None], poll_secs: float = 0.5
) -> None:
    """Returns once something answers at ``address``; says once that it waits. Raises
    ``DataServiceError`` after ``wait_secs``."""
    deadline = time.monotonic() + wait_secs
    said = False
    while True:
        try:
            check_reachable(address, timeout_secs=min(CONNECT_TIMEOUT_SECS, wait_secs or 1))
            return
        except DataServiceError:
            if time.monotonic() >= deadline:
                raise
        if not said:
            say(f"waiting for the dispatcher at {address} (up to {wait_secs:g} s: --wait_secs)")
            said = True
        time.sleep(poll_secs)


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
        if self.thread is not None:
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


def failure_line(error, address: str, model_dir: str) -> str | None:
    """One line for a training input that failed in the tf.data service (a lost worker, a
    dispatcher restarted without its journal); None for an error of another kind."""
    import tensorflow as tf

    # The errors of a server gone (a data error raised in a worker, say a corrupt record, is
    # an InvalidArgumentError and is reported as it is).
    lost = (tf.errors.NotFoundError, tf.errors.UnavailableError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.DeadlineExceededError)  # fmt: skip
    if not isinstance(error, lost):
        return None
    message = error.message
    again = f"run the same command: it resumes from the last checkpoint in {model_dir}"
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    # TensorFlow's first line is often "Graph execution error:": the cause is further down.
    first = next((line for line in lines if "Failed" in line), lines[0] if lines else "")
    first = first.split(". ")[0][:160]
    if "not configured to be fault tolerant" in message:
        return (
            f"the tf.data service's dispatcher at {address} restarted and lost its jobs "
            f"({first}); start it with --work_dir so that a restart keeps them, and {again}"
        )
    match = re.search(r"Failed to get element from worker (\S+?):? ", message)
    if match is None:
        return None
    who = f"worker {match.group(1)}"
    return (
        f"the tf.data service at {address} lost {who} mid-epoch ({first}); start the workers "
        f"again and {again}"
    )


def distribute(dataset, address: str):
    """``dataset`` run by the tf.data service at ``address``.

    ``distributed_epoch``: the dispatcher hands the input files out to the service workers,
    so several workers never deliver the same records in the same order (as they would
    with ``parallel_epochs``, every worker running the whole pipeline with the same seed).
    """
    import tensorflow as tf

    return dataset.apply(
        tf.data.experimental.service.distribute(
            processing_mode="distributed_epoch", service=address
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m library.data.service",
        description="Start a tf.data service dispatcher or worker; it runs until stopped.",
    )
    roles = parser.add_subparsers(dest="role", required=True)
    dispatcher = roles.add_parser("dispatcher", help="the server trainers and workers talk to")
    dispatcher.add_argument("--port", type=int, required=True)
    dispatcher.add_argument(
        "--work_dir",
        default="",
        help="a folder (any file system TensorFlow serves) where the dispatcher journals its "
        "state, so that restarted on the same port it carries on with its jobs",
    )
    dispatcher.add_argument(
        "--worker_timeout_secs",
        type=float,
        default=10.0,
        help="a worker silent this long is dropped and its share of the epoch goes to the others",
    )
    worker = roles.add_parser("worker", help="runs input pipelines for the dispatcher")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--dispatcher_address", required=True, help="HOST:PORT")
    worker.add_argument(
        "--worker_address",
        default="",
        help="HOST:PORT at which trainers reach this worker (default: this host's name)",
    )
    worker.add_argument(
        "--wait_secs",
        type=float,
        default=WORKER_WAIT_SECS,
        help="how long to wait for the dispatcher to answer before giving up",
    )
    args = parser.parse_args(argv)
    prog = parser.prog
    if args.role == "worker":
        try:
            wait_until_reachable(
                args.dispatcher_address, args.wait_secs, lambda line: print(line, flush=True)
            )
        except DataServiceError as error:
            print(
                f"{prog}: error: {str(error).replace('data_service_address', 'dispatcher')} "
                f"(waited {args.wait_secs:g} s: --wait_secs)",
                file=sys.stderr,
            )
            return 2
    from library.cli.quiet import import_tensorflow

    tf = import_tensorflow()
    service = tf.data.experimental.service
    host = socket.gethostname()
    try:
        if args.role == "dispatcher":
            config = service.DispatcherConfig(
                port=args.port,
                work_dir=args.work_dir or None,
                fault_tolerant_mode=bool(args.work_dir),
                worker_timeout_ms=int(args.worker_timeout_secs * 1000),
            )
            server = service.DispatchServer(config)
            where = f"grpc://{host}:{args.port}"
            journal = f", journal in {args.work_dir}" if args.work_dir else ""
            print(
                f"tf.data service dispatcher listening on {where} (data_service_address: "
                f"{where}){journal}",
                flush=True,
            )
        else:
            address = args.worker_address or f"{host}:{args.port}"
            server = service.WorkerServer(
                service.WorkerConfig(
                    dispatcher_address=args.dispatcher_address.removeprefix("grpc://"),
                    worker_address=address,
                    port=args.port,
                )
            )
            print(
                f"tf.data service worker listening on {address}, serving the dispatcher at "
                f"{args.dispatcher_address}",
                flush=True,
            )
    except tf.errors.OpError as error:
        reason = error.message.strip().splitlines()[0]
        print(
            f"{prog}: error: port {args.port}: {reason} (in use? choose another --port)",
            file=sys.stderr,
        )
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # Waiting in Python, not in server.join(): a signal reaches its handler only between
    # Python bytecodes, and join() blocks in C++ until the server ends (it never does).
    with contextlib.suppress(KeyboardInterrupt):
        while server is not None:  # holds the server, which stops when collected
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
