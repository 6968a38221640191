"""The tf.data service's servers, started from the command line: a dispatcher and any number of
workers that run the training input pipeline beside the trainers.

When decoding and augmenting images needs more CPUs than the trainer's machine has, start a
dispatcher and any number of workers (on other machines, each reading the same files), then
train with ``data_service_address: grpc://DISPATCHER_HOST:PORT``::

    python -m library.cli.data_service dispatcher --port 5050 --work_dir /shared/dispatcher
    python -m library.cli.data_service worker --port 5051 --dispatcher_address HOST:5050

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
import signal
import socket
import sys
import time
from collections.abc import Callable

from library.base.errors import DataServiceError, first_line
from library.base.quiet import import_tensorflow
from library.data.service import CONNECT_TIMEOUT_SECS, check_reachable

WORKER_WAIT_SECS = 120.0


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


def main(argv: list[str] | None = None) -> int:
    """Starts a dispatcher or a worker and serves until stopped; the exit status."""
    parser = _parser()
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
    tf = import_tensorflow()
    try:
        server = _dispatcher(tf, args) if args.role == "dispatcher" else _worker(tf, args)
    except tf.errors.OpError as error:
        print(
            f"{prog}: error: port {args.port}: {first_line(error)} (in use? choose another --port)",
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


def _dispatcher(tf, args):
    service = tf.data.experimental.service
    config = service.DispatcherConfig(
        port=args.port,
        work_dir=args.work_dir or None,
        fault_tolerant_mode=bool(args.work_dir),
        worker_timeout_ms=int(args.worker_timeout_secs * 1000),
    )
    server = service.DispatchServer(config)
    where = f"grpc://{socket.gethostname()}:{args.port}"
    journal = f", journal in {args.work_dir}" if args.work_dir else ""
    print(
        f"tf.data service dispatcher listening on {where} (data_service_address: {where}){journal}",
        flush=True,
    )
    return server


def _worker(tf, args):
    service = tf.data.experimental.service
    address = args.worker_address or f"{socket.gethostname()}:{args.port}"
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
    return server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m library.cli.data_service",
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
    return parser


if __name__ == "__main__":
    sys.exit(main())
