"""Image folders to sharded TFRecords: ``DIR/<class>/<images>`` -> ``OUT/NAME-0000k-of-0000K``.

JPEGs already small enough are stored byte for byte; everything else is decoded, turned to
RGB, rotated by its EXIF orientation, resized so its longer edge fits ``max_edge`` and
encoded as JPEG. Every image is fully decoded first, so truncated or corrupt files are
skipped and reported instead of poisoning a shard. Work is spread over processes; the
records go through the library's writer (``library/data/records.py``): a killed conversion
never leaves output that looks finished.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from library.base.errors import UserError, first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
LABELS_FILE = "labels.txt"
JPEG_QUALITY = 95
RECORDS_PER_SHARD = 1000
EXIF_ORIENTATION = 0x0112


class ConvertError(UserError):
    """Bad input for a conversion: reported as one line, exit status 2."""


@dataclass(frozen=True)
class ConvertOptions:
    dataset_dir: str
    tfrecord_filename: str
    tfrecord_dir: str
    max_edge: int = 384
    num_shards: int = 0
    labels_file: str = ""
    num_workers: int = 0
    overwrite: bool = False
    strict: bool = False
    seed: int = 0


def list_images(dataset_dir: str, classes: Sequence[str]) -> list[tuple[str, int]]:
    """(path, label) of every image below each class folder, nested folders included."""
    found: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(dataset_dir, name)
        if not os.path.isdir(class_dir):
            continue
        for folder, subfolders, files in os.walk(class_dir):
            subfolders.sort()
            found.extend(
                (os.path.join(folder, f), label)
                for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
    return found


def read_classes(options: ConvertOptions) -> list[str]:
    """Sorted class folders, or the classes of an earlier conversion (``--labels_file``)."""
    if not os.path.isdir(options.dataset_dir):
        raise ConvertError(
            f"{options.dataset_dir}: no such folder (expected <class>/<image> folders)"
        )
    folders = sorted(
        d
        for d in os.listdir(options.dataset_dir)
        if os.path.isdir(os.path.join(options.dataset_dir, d)) and not d.startswith(".")
    )
    if not options.labels_file:
        return folders
    if not os.path.isfile(options.labels_file):
        raise ConvertError(f"{options.labels_file}: labels file not found")
    with open(options.labels_file, encoding="utf-8") as stream:
        classes = [line.strip() for line in stream if line.strip()]
    missing = [d for d in folders if d not in classes]
    if missing:
        raise ConvertError(
            f"{options.labels_file}: has no class {missing[0]!r} found in {options.dataset_dir}; "
            "convert with the same classes or drop --labels_file"
        )
    return classes


def image_problem(error: Exception) -> str:
    """Why an image cannot be used, in words (PIL's messages name in-memory buffers)."""
    if isinstance(error, Image.DecompressionBombError):
        return "cannot decode: too many pixels (PIL's decompression-bomb guard)"
    if isinstance(error, UnidentifiedImageError):
        return "cannot decode: not an image, or a format PIL cannot read"
    message = first_line(error)
    if "truncated" in message.lower():
        return "cannot decode: truncated (the file ends before the image does)"
    return f"cannot decode: {re.sub(r' ?<[^>]*object at 0x[0-9a-f]+>', '', message)}"


def check_image(path: str) -> str | None:
    """None if ``path`` decodes completely, else why not (for predict: named and skipped)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return image_problem(error)
    return None


def prepare_image(path: str, max_edge: int) -> tuple[bytes, int, int] | str:
    """JPEG bytes, height and width of one image; or the reason it cannot be used.

    Runs in worker processes (spawned clean), so it touches no TensorFlow.
    """
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
        image: Image.Image = Image.open(io.BytesIO(raw))  # the file's, then an RGB copy
        source_format = image.format
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        image.load()  # decodes everything: truncated files fail here, not in training
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return image_problem(error)
    width, height = image.size
    if (
        source_format == "JPEG"
        and image.mode == "RGB"
        and orientation == 1
        and max(width, height) <= max_edge
    ):
        return raw, height, width
    image = ImageOps.exif_transpose(image)
    if image.mode in ("P", "PA", "LA", "RGBA") or "transparency" in image.info:
        # Flatten transparency onto white rather than the black that convert("RGB") gives.
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    elif image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    if max(width, height) > max_edge:
        scale = max_edge / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        width, height = size
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), height, width


def _prepare(task: tuple[int, str, int, int]) -> tuple[int, bytes | str, int, int]:
    index, path, _, max_edge = task
    result = prepare_image(path, max_edge)
    if isinstance(result, str):
        return index, result, 0, 0
    return index, *result


def convert(options: ConvertOptions) -> dict:
    """Converts ``options.dataset_dir`` into TFRecord shards; returns the manifest.

    Raises:
        ConvertError: missing folder, no images, one class only, existing output without
            ``overwrite``, unwritable output, or any skipped image with ``strict``.
    """
    classes, tasks, stray = _checked_tree(options)
    random.Random(options.seed).shuffle(tasks)  # so that no shard holds a single class
    num_shards = options.num_shards or max(
        min(len(tasks), 4), math.ceil(len(tasks) / RECORDS_PER_SHARD)
    )
    from library.base.quiet import import_tensorflow

    import_tensorflow()  # the parent alone needs TensorFlow, to write records
    from library.data.records import RecordError, RecordWriter

    try:
        writer = RecordWriter(
            options.tfrecord_dir, options.tfrecord_filename, num_shards, options.overwrite
        )
    except RecordError as error:
        raise ConvertError(str(error)) from None
    try:
        class_counts, skipped = _write_records(options, classes, tasks, writer)
        if skipped and options.strict:
            raise ConvertError(f"{skipped[0]['file']}: {skipped[0]['reason']} (--strict)")
    except BaseException:
        writer.abort()
        raise
    return writer.close(
        extra_files={LABELS_FILE: "".join(f"{c}\n" for c in classes)},
        classes=classes,
        class_counts={classes[k]: class_counts.get(k, 0) for k in range(len(classes))},
        skipped=skipped,
        ignored=stray,
        options=asdict(options),
    )


def _checked_tree(options: ConvertOptions) -> tuple[list[str], list, list[str]]:
    """``(classes, (path, label) of each image, files ignored at the top)`` of the folder
    tree, which must hold images of two classes or more in ``<class>/`` folders.

    Raises:
        ConvertError: what is wrong with it, in one line naming the folder.
    """
    if options.max_edge < 1 or options.num_shards < 0 or options.num_workers < 0:
        raise ConvertError("--max_edge must be positive, --num_shards and --num_workers >= 0")
    classes = read_classes(options)
    tasks = list_images(options.dataset_dir, classes)
    if not tasks:
        raise ConvertError(f"{options.dataset_dir}: no images found in <class>/ folders")
    found = {label for _, label in tasks}
    empty = [
        name
        for label, name in enumerate(classes)
        if label not in found and os.path.isdir(os.path.join(options.dataset_dir, name))
    ]
    if empty and not options.labels_file:  # with --labels_file, a split may lack a class
        raise ConvertError(
            f"{os.path.join(options.dataset_dir, empty[0])}: class folder holds no images; "
            "add images or remove the folder (its class would be one no example has)"
        )
    if len(found) < 2 and not options.labels_file:
        raise ConvertError(f"{options.dataset_dir}: only one class folder; need at least two")
    stray = sorted(
        f
        for f in os.listdir(options.dataset_dir)
        if not f.startswith(".") and os.path.isfile(os.path.join(options.dataset_dir, f))
    )
    if stray:
        shown = ", ".join(stray[:5]) + (f" and {len(stray) - 5} more" if len(stray) > 5 else "")
        print(
            f"warning: ignored {len(stray)} files at the top of {options.dataset_dir} "
            f"(images belong in <class>/ folders): {shown}",
            file=sys.stderr,
        )
    return classes, tasks, stray


def _write_records(options, classes, tasks, writer):
    import tensorflow as tf

    from library.vision.records import serialize_example

    class_counts: Counter[int] = Counter()  # by label
    skipped: list[dict[str, str]] = []
    progress = tf.keras.utils.Progbar(
        len(tasks),
        verbose=1 if sys.stdout.isatty() else 2,  # no bar redrawn into log files
        unit_name="image",
        stateful_metrics=["img/s"],
    )
    jobs = [(i, path, label, options.max_edge) for i, (path, label) in enumerate(tasks)]
    workers = options.num_workers or os.cpu_count() or 1
    start = time.perf_counter()
    for done, (index, result, height, width) in enumerate(_prepared(jobs, workers), 1):
        path, label = tasks[index]
        relative = os.path.relpath(path, options.dataset_dir)
        if isinstance(result, str):
            skipped.append({"file": relative, "reason": result})
            print(f"\nskipped {path}: {result}", file=sys.stderr)
        else:
            writer.write(serialize_example(result, label, classes[label], height, width, relative))
            class_counts[label] += 1
        progress.update(done, [("img/s", done / max(time.perf_counter() - start, 1e-9))])
    return class_counts, skipped


def _prepared(jobs: list, workers: int):
    """The prepared images, in order: from worker processes, or from this one when one
    worker is asked for (starting a process would cost more than it saves)."""
    if workers == 1:
        yield from map(_prepare, jobs)
        return
    # spawn: workers start clean instead of inheriting TensorFlow's threads through fork.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_prepare, jobs, chunksize=8)


def summarize(manifest: dict, out_dir: str) -> str:
    skipped = manifest["skipped"]
    lines = [
        f"wrote {manifest['num_records']} records of {len(manifest['classes'])} classes "
        f"in {len(manifest['shards'])} shards to {out_dir}",
    ]
    if skipped:
        lines.append(
            f"skipped {len(skipped)} unreadable files (listed in {manifest['name']}.manifest.json)"
        )
    return "\n".join(lines)
