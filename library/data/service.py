"""A trainer's side of the tf.data service (servers that run the training input pipeline
beside the trainers, started with ``python -m library.cli.data_service``: see there): is the
dispatcher there, the dataset sent to it, a failure of the service in one line.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlparse

from library.base.errors import DataServiceError

CONNECT_TIMEOUT_SECS = 10.0


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
            "start the dispatcher first: python -m library.cli.data_service dispatcher --port "
            f"{parsed.port}"
        ) from None


def failure_line(error, address: str, model_dir: str) -> str | None:
    """One line for a training input that failed in the tf.data service (a lost worker, a
    dispatcher restarted without its journal); None for an error of another kind."""
    import tensorflow as tf

    # The errors of a server gone (a data error raised in a worker, say a corrupt record, is
    # an InvalidArgumentError and is reported as it is).
    lost = (
        tf.errors.NotFoundError,
        tf.errors.UnavailableError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
        tf.errors.DeadlineExceededError,
    )
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
