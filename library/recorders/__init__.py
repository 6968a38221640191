"""What happens with each training log and each evaluation: the ``Recorder`` interface (and
``Action``, every N steps) and the library's recorders: TensorBoard summaries, metrics.jsonl,
plots, the best checkpoint, plateau and early stopping, the evaluation line, a CSV logger.
A project adds its own through ``callbacks_fn`` (``library/contract.py``)."""
