"""The tf.data service: servers that run the training input pipeline beside the trainers.

When decoding and augmenting images needs more CPUs than the trainer's machine has, start a
dispatcher and any number of workers (on other machines, each reading the same files), then
train with ``data_service_address: grpc://DISPATCHER_HOST:PORT``::

    python -m library.data.service dispatcher --port 5050
    python -m library.data.service worker --port 5051 --dispatcher_address HOST:5050

They run until stopped (Ctrl-C or SIGTERM) and say where they listen. The trainer sends its
input pipeline (the graph of ``input_fn``'s dataset) to the dispatcher; the workers run it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from urllib.parse import urlparse

CONNECT_TIMEOUT_SECS = 10.0


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
    worker = roles.add_parser("worker", help="runs input pipelines for the dispatcher")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--dispatcher_address", required=True, help="HOST:PORT")
    worker.add_argument(
        "--worker_address",
        default="",
        help="HOST:PORT at which trainers reach this worker (default: this host's name)",
    )
    args = parser.parse_args(argv)
    prog = parser.prog
    if args.role == "worker":
        try:
            check_reachable(args.dispatcher_address)
        except DataServiceError as error:
            print(
                f"{prog}: error: {str(error).replace('data_service_address', 'dispatcher')}",
                file=sys.stderr,
            )
            return 2
    from library.cli.quiet import import_tensorflow

    tf = import_tensorflow()
    service = tf.data.experimental.service
    host = socket.gethostname()
    try:
        if args.role == "dispatcher":
            server = service.DispatchServer(service.DispatcherConfig(port=args.port))
            where = f"grpc://{host}:{args.port}"
            print(
                f"tf.data service dispatcher listening on {where} (data_service_address: {where})",
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
    with contextlib.suppress(KeyboardInterrupt):
        server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
