"""Metrics of one part of structured labels and outputs.

A metric of ``metrics_fn`` is updated with ``(labels, outputs)`` as the project's model and
input give them, of any structure. For dicts (one encoder, several heads), ``Selected``
hands a Keras metric the part it scores::

    def metrics_fn(params):
        return {
            "accuracy": Selected(keras.metrics.SparseCategoricalAccuracy(), "class"),
            "box_iou": Selected(BoxIoU(), "box"),
        }
"""

from __future__ import annotations

import keras


class Selected(keras.metrics.Metric):
    """``metric`` updated with ``labels[labels_key]`` and ``outputs[outputs_key]``.

    Args:
        metric: any Keras metric.
        labels_key: the key of the labels it scores.
        outputs_key: the key of the outputs (default: the same as ``labels_key``).
    """

    def __init__(self, metric: keras.metrics.Metric, labels_key: str, outputs_key: str = ""):
        super().__init__(name=metric.name)
        self.metric = metric
        self.labels_key, self.outputs_key = labels_key, outputs_key or labels_key

    def update_state(self, labels, outputs, sample_weight=None):
        self.metric.update_state(
            labels[self.labels_key], outputs[self.outputs_key], sample_weight=sample_weight
        )

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()
