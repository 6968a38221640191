"""Imports TensorFlow without the C++ start-up chatter that hides the useful lines.

TensorFlow 2.21 logs oneDNN, CUDA-probing and CPU-feature lines to stderr before its logging is
initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. We hold stderr aside while
TensorFlow loads and probes its devices, and replay it only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow(probe_devices: bool = True):
    """Returns the ``tensorflow`` module, imported (once) with its start-up noise held back.

    ``probe_devices`` False leaves the runtime unstarted (a multi-worker strategy must
    configure it first).
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            if probe_devices:  # device probing logs too: do it while held
                tf.config.list_logical_devices()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # TensorFlow's Python warnings speak to its developers, not to users of a command line:
    # e.g. a checkpoint that does not restore (said in one line of ours) is followed by
    # hundreds of "Value in checkpoint could not be found" lines when it is collected.
    tf.get_logger().setLevel("ERROR")
    return tf
