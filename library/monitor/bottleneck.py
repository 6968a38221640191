"""Which bounds training, the input pipeline or the step: each measured alone, once per run.

On a CPU-only machine the pipeline's threads and the step share the cores, so the time the
step waits in ``next()`` does not show the bottleneck (the step is slowed by the decoding
threads instead). While training pauses, a fresh copy of the training pipeline delivers
batches for a moment, then the step's forward and backward pass runs on one cached batch
(no update is applied). When the pipeline alone is slower than the step alone, the run is
input-bound: one line says so, which stage of the pipeline costs most (each prefix of the
pipeline is timed in turn: read, parse, decode, augment, as the project's ``input_fn`` names
its maps) and what to try. A compute-bound run says nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

# The pipeline is called input-bound when it delivers less than this share of the step's rate.
INPUT_BOUND_RATIO = 0.8
# A pipeline that delivers more batches a second than this alone (a small MLP's input of a
# few columns) costs less than 5 ms a batch: not worth a line, whatever the step's rate.
MATTERS_BATCHES_PER_SEC = 200.0
MEASURE_SECS = 1.0
STAGE_SECS = 0.5
# Transformations that only reorder, buffer or pair elements: never a stage of their own.
NOT_STAGES = (
    "Prefetch",
    "Shuffle",
    "Repeat",
    "Zip",
    "Options",
    "Model",
    "MaxIntraOpParallelism",
    "PrivateThreadPool",
    "Take",
    "Skip",
    "Cache",
)


@dataclass(frozen=True)
class Verdict:
    """The measurements and, when the pipeline bounds the run, the line that says so."""

    pipeline_batches_per_sec: float
    step_per_sec: float
    stages: tuple[tuple[str, float], ...] = ()  # (stage, seconds per example it adds)

    @property
    def input_bound(self) -> bool:
        return (
            self.pipeline_batches_per_sec < INPUT_BOUND_RATIO * self.step_per_sec
            and self.pipeline_batches_per_sec < MATTERS_BATCHES_PER_SEC
        )

    def line(self, training_steps_per_sec: float) -> str | None:
        if not self.input_bound:
            return None
        costliest, name = "", ""
        if self.stages:
            name, cost = max(self.stages, key=lambda stage: stage[1])
            total = sum(max(c, 0.0) for _, c in self.stages) or 1.0
            costliest = f"; its costliest stage: {name} ({max(cost, 0.0) / total:.0%} of its time)"
        return (
            f"warning: the run is input-bound: the input pipeline alone delivers "
            f"{self.pipeline_batches_per_sec:.1f} batches/s, the step alone runs "
            f"{self.step_per_sec:.1f} steps/s (training ran {training_steps_per_sec:.1f})"
            f"{costliest}; try {advice(name)}"
        )


def advice(stage: str) -> str:
    """What to try when ``stage`` (a name of ``stage_name``; empty: unknown) costs most."""
    if stage.startswith("read"):
        return (
            "more parallel reads (interleave_cycle_length), more and larger shards on a local "
            "disk, or the tf.data service (docs/scaling.md)"
        )
    return (
        "cheaper records (stored at the size the model reads), doing less per example "
        "(decode, resize, augment), caching what does not change, or the tf.data service "
        "for more CPUs (docs/scaling.md)"
    )


def stage_name(dataset: tf.data.Dataset) -> str | None:
    """A transformation's name for the line: a map by its function's name, others by kind;
    None for those that are no stage (shuffle, prefetch...)."""
    kind = type(dataset).__name__.strip("_").removesuffix("V2").removesuffix("Dataset")
    if any(kind.startswith(skip) for skip in NOT_STAGES):
        return None
    wrapper = getattr(dataset, "_map_func", None)
    function = getattr(wrapper, "_func", None)
    if kind.endswith("Map") and function is not None:
        name = getattr(function, "__name__", "")
        return f"map {name}" if name and name != "<lambda>" else "map (a lambda)"
    if "Interleave" in kind or kind in ("TFRecord", "FixedLengthRecord", "TextLine"):
        return f"read ({kind})"
    return kind.lower()


def stages_of(dataset: tf.data.Dataset) -> list[tuple[str, tf.data.Dataset]]:
    """The pipeline's stages from its source to its end, each with the dataset that ends at
    it (the pipeline up to and including that stage). Follows each transformation's first
    input (a zip's other inputs, such as seeds, are not stages)."""
    chain = []
    while dataset is not None:
        name = stage_name(dataset)
        if name is not None:
            chain.append((name, dataset))
        if name is not None and name.startswith("read"):
            break  # what a read reads from is its files' names
        inputs = dataset._inputs()
        dataset = inputs[0] if inputs else None
    return chain[::-1]


def _examples(element, batched: bool) -> int:
    first = tf.nest.flatten(element)[0]
    return int(first.shape[0]) if batched and first.shape.rank else 1


def delivery_rate(
    dataset: tf.data.Dataset, seconds: float, batched: bool = True, skip: int = 2
) -> tuple[float, float]:
    """``(elements/s, examples/s)`` of a fresh iterator of ``dataset`` over about ``seconds``
    (after ``skip`` elements, which also fill buffers and start threads); ``batched``: its
    elements are batches."""
    iterator = iter(dataset)
    elements = examples = 0
    try:
        for _ in range(skip):
            next(iterator)
        started = time.perf_counter()
        while True:
            element = next(iterator)
            elements, examples = elements + 1, examples + _examples(element, batched)
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and elements >= 3:
                break
    except (StopIteration, tf.errors.OutOfRangeError):
        elapsed = time.perf_counter() - started if elements else 0.0
    if not elements or elapsed <= 0:
        return float("inf"), float("inf")
    return elements / elapsed, examples / elapsed


def step_rate(gradients: Callable, batch, seconds: float) -> float:
    """Passes per second of ``gradients`` (a forward and backward pass that updates nothing)
    on one cached batch."""
    gradients(*batch).numpy()  # traced and warm
    count, started = 0, time.perf_counter()
    while True:
        gradients(*batch).numpy()
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and count >= 3:
            return count / elapsed


def measure(
    raw: tf.data.Dataset,
    taken: Callable[[tf.data.Dataset], tf.data.Dataset],
    gradients: Callable,
) -> Verdict:
    """The pipeline's and the step's rates alone, and the stages' costs when input-bound.

    Args:
        raw: a fresh copy of the training input pipeline, with the options training gives it.
        taken: what of each batch the model takes (the engine drops the other features).
        gradients: the step's forward and backward pass on a batch, updating nothing.
    """
    dataset = taken(raw)
    pipeline, _ = delivery_rate(dataset, MEASURE_SECS)
    step = step_rate(gradients, next(iter(dataset)), MEASURE_SECS)
    verdict = Verdict(pipeline, step)
    if not verdict.input_bound:
        return verdict
    costs, before, batched = [], 0.0, False
    for name, prefix in stages_of(raw):
        batched = batched or "batch" in name
        stage = prefix.with_options(raw.options())
        _, examples_per_sec = delivery_rate(stage, STAGE_SECS, batched)
        per_example = 1.0 / examples_per_sec if examples_per_sec > 0 else 0.0
        costs.append((name, per_example - before))
        before = per_example
    return Verdict(pipeline, step, tuple(costs))
