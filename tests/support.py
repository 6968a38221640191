"""What the tests share: the test project's params and argv, the command line run in-process or
as a process, images made on the spot, and TensorBoard events read back."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import types
from dataclasses import dataclass

import numpy as np
from PIL import Image
from projects import classifier, regression

from library.contract import project_functions

declarations = classifier  # what the test classifier declares (its package)
REGRESSION = regression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the test project's configuration ---------------------------------------------------------


def paths(records=None, folder=None) -> dict[str, str]:
    """The data and output keys for ``records`` (a folder of train-* and eval-* shards) and
    ``folder`` (``model`` and ``best`` inside it)."""
    values = {}
    if records is not None:
        values["train_files"] = os.path.join(records, "train-*.tfrecord")
        values["eval_files"] = os.path.join(records, "eval-*.tfrecord")
    if folder is not None:
        values["model_dir"] = os.path.join(folder, "model")
        values["best_model_dir"] = os.path.join(folder, "best")
    return values


def argv(records=None, folder=None, *extra, config_set="default") -> list[str]:
    """The command line of a run of the test project (its YAML set, then ``paths``)."""
    flags = ["--project_file", classifier.PROJECT_FILE, "--config_set", config_set]
    for key, value in paths(records, folder).items():
        flags += [f"--{key}", value]
    return [*flags, *extra]


def params(records=None, folder=None, config_set="default", **overrides):
    """The test project's resolved configuration (its YAML set), then ``paths`` and
    ``overrides``: what ``run.py`` would resolve from ``argv`` with the same values."""
    from library import config

    resolved, _ = config.resolve(
        argv(config_set=config_set),
        declarations.HYPERPARAMETERS,
        metrics=declarations.METRICS,
        check=declarations.check,
        run_options=declarations.RUN_OPTIONS,
    )
    return resolved.replace(**{**paths(records, folder), **overrides})


def resolve_argv(argv, project=None):
    """The configuration ``run.py`` of a test project (the classifier by default) resolves
    from ``argv``."""
    from library import config

    declared = project or classifier
    resolved, _ = config.resolve(
        argv,
        declared.HYPERPARAMETERS,
        metrics=declared.METRICS,
        check=getattr(declared, "check", None),
        run_options=getattr(declared, "RUN_OPTIONS", ()),
    )
    return resolved


def functions(**replaced):
    """The test project's functions (``library.contract.Functions``), some maybe replaced."""
    return project_functions(classifier).replace(**replaced)


def variant(project, **replaced):
    """``project`` (a package) with some of its functions replaced: a package of its own,
    for ``run_cli(..., project=variant(...))``."""
    copy = types.ModuleType(project.__name__)
    copy.__dict__.update({k: v for k, v in vars(project).items() if not k.startswith("__")})
    copy.load_functions = lambda: project_functions(project).replace(**replaced)
    return copy


def estimator(run_params, records=48, **replaced):
    """The Estimator ``run.py`` builds for ``run_params``, with a plan for ``records``."""
    from library.cli import modes
    from library.engine import schedule

    plan = schedule.make_plan(run_params, records)
    return modes.build_estimator(run_params, functions(**replaced), plan)


def specs(run_params, max_steps, eval_files=None):
    """Train and eval specs of the test project's input_fn."""
    from library.contract import ModeKeys
    from library.engine.estimator import EvalSpec, TrainSpec

    input_fn = functions().input_fn
    train = TrainSpec(
        lambda ctx=None: input_fn(run_params.train_files, ModeKeys.TRAIN, run_params, ctx),
        max_steps,
    )
    files = eval_files or run_params.eval_files
    evaluation = EvalSpec(lambda ctx=None: input_fn(files, ModeKeys.EVAL, run_params, ctx))
    return train, evaluation


def regression_argv(data=None, folder=None, *extra) -> list[str]:
    """The command line of a run of the regression project on ``data`` (train-* and eval-*
    records with manifests), into ``folder``."""
    flags = ["--project_file", regression.PROJECT_FILE]
    if data is not None:
        flags += ["--train_files", os.path.join(data, "train-*.tfrecord")]
        flags += ["--eval_files", os.path.join(data, "eval-*.tfrecord")]
    if folder is not None:
        flags += ["--model_dir", os.path.join(folder, "model")]
        flags += ["--best_model_dir", os.path.join(folder, "best")]
    return [*flags, *extra]


def regression_rows(count, seed):
    """``count`` rows ``{a, b, c, y}``: y = 2a - b + c/2 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 3)).astype(np.float32)
    y = 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + rng.normal(scale=0.1, size=count)
    return [
        {"a": float(a), "b": float(b), "c": float(c), "y": float(t)}
        for (a, b, c), t in zip(x, y.astype(np.float32), strict=True)
    ]


TOPICS = (
    ("cat", "dog", "purr", "fur", "paw", "kitten", "bark", "whisker"),
    ("rocket", "orbit", "launch", "moon", "engine", "fuel", "star", "comet"),
)
FILLER = ("the", "a", "of", "and", "with", "near", "big", "small", "old", "new")


def text_rows(count, seed, topics=TOPICS):
    """``count`` rows ``{text, label}``: sentences of a topic's words among filler words,
    labelled by their topic."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        label = index % len(topics)
        words = [*rng.choice(topics[label], 3), *rng.choice(FILLER, 4)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_text_records(folder, name, rows, num_shards=2):
    """``rows`` as records of the library's writer (shards and a manifest)."""
    from library.data.records import RecordWriter, example

    writer = RecordWriter(str(folder), name, num_shards=num_shards, overwrite=True)
    for row in rows:
        writer.write(example(row))
    writer.close()
    return os.path.join(str(folder), f"{name}-*.tfrecord")


# -- the command line -------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, project=None) -> Result:
    """``run.py`` of a test project (the classifier by default; a package) in this process:
    its exit status and what it printed.

    An exception the command line lets through is raised here (a user would see a
    traceback). The environment variable it may set for a subprocess-free run (oneDNN) is
    put back, so that it does not leak into later tests.
    """
    from library.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args), project or classifier)
            except SystemExit as exit_:  # --help
                status = exit_.code
    finally:
        if saved is None:
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
        else:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = saved
    return Result(status, out.getvalue(), err.getvalue())


def run_process(*args: str, script: str = classifier.RUN_PY, cwd=None, timeout=300, env=None):
    """A script (the test project's run.py by default) in a process of its own."""
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def start_process(*args: str, script: str = classifier.RUN_PY, **kwargs) -> subprocess.Popen:
    """The same, started in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, script, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def one_line(text: str) -> str:
    """The single line of ``text`` (an error must be one line)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# -- images -----------------------------------------------------------------------------------


def textured_image(width, height, seed, mode="RGB"):
    """An image with real structure (gradients, stripes, a blob), not flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frequency = rng.uniform(0.05, 0.3)
    channels = [
        127 + 120 * np.sin(frequency * (x * np.cos(a) + y * np.sin(a)))
        for a in rng.uniform(0, np.pi, 3)
    ]
    cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
    blob = 80 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (0.05 * width * height))
    pixels = np.clip(np.stack(channels, -1) + blob[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def save(image, path, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, **kwargs)
    return path


def jpeg_bytes(image):
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_class_tree(root, classes=("horizontal", "vertical"), per_class=6, size=40, seed=0):
    """A learnable two-class tree: stripes running one way or the other, varied colours (the
    image kit's sample)."""
    from library.vision.sample import write_class_tree

    return write_class_tree(root, classes, per_class, size, seed)


# -- TensorBoard events -----------------------------------------------------------------------


def events(folder):
    """``(step, value)`` of every summary value in the event files of ``folder``."""
    import glob

    import tensorflow as tf

    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                yield event.step, value


def event_tags(folder) -> dict[str, list[int]]:
    """``{tag: [steps]}`` of the TensorBoard events in ``folder``."""
    tags: dict[str, list[int]] = {}
    for step, value in events(folder):
        tags.setdefault(value.tag, []).append(step)
    return {tag: sorted(steps) for tag, steps in tags.items()}


def scalars(folder, tag) -> list[tuple[int, float]]:
    """``(step, value)`` of one scalar tag, by step."""
    import tensorflow as tf

    return sorted(
        (step, float(tf.make_ndarray(value.tensor)))
        for step, value in events(folder)
        if value.tag == tag
    )
