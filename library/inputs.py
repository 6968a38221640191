"""tf.data building blocks that a project's ``input_fn`` composes: no policy lives here.

The shape of a fast image pipeline (see BENCHMARKS.md for why each step is where it is)::

    list_files -> interleave(TFRecordDataset) -> shuffle -> repeat -> batch
      -> parse the whole batch (tf.io.parse_example) -> decode_and_crop_jpeg each image
      -> resize, augment, normalise (the project's choices) -> prefetch

The library then hands batches to the devices (``library/distribute.py``). What to crop,
flip or normalise is the project's augmentation policy (``project/inputs.py``).

All file access goes through ``tf.io.gfile`` and ``tf.data``, so ``gs://`` or HDFS patterns
work unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import tensorflow as tf

from library import records

AUTOTUNE = tf.data.AUTOTUNE
READ_BUFFER_BYTES = 8 << 20


class InputError(Exception):
    """A problem with the input files, reported as one line naming the file."""


def match_files(file_pattern: str) -> list[str]:
    """The sorted files matching a glob pattern; an error naming the pattern if none."""
    try:
        files = sorted(tf.io.gfile.glob(file_pattern))
    except tf.errors.OpError as error:
        raise InputError(f"{file_pattern}: cannot list files ({error.message})") from None
    if not files:
        raise InputError(
            f"{file_pattern}: no files match (run convert_dataset.py or fix the pattern)"
        )
    return files


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C = _crc32c_table()
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image?)"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file (a compressed TFRecord? not supported here)"),
)


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def looks_like_tfrecord(head: bytes) -> bool:
    """Whether a file's first 12 bytes frame a TFRecord: an 8-byte length and its masked
    CRC-32C (what TensorFlow checks first). An empty file is an empty TFRecord file."""
    if not head:
        return True
    return len(head) >= 12 and int.from_bytes(head[8:12], "little") == _masked_crc32c(head[:8])


def what_it_is(head: bytes) -> str:
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "not a TFRecord file"


def check_tfrecords(file_pattern: str) -> list[str]:
    """The files of ``file_pattern``, each checked to start like a TFRecord file.

    Raises:
        InputError: naming the first file that is not one, with what it seems to be.
    """
    files = match_files(file_pattern)
    for path in files:
        with tf.io.gfile.GFile(path, "rb") as stream:
            head = stream.read(12)
        if not looks_like_tfrecord(head):
            raise InputError(
                f"{path}: {what_it_is(head)}, not TFRecord shards; convert image folders with "
                "convert_dataset.py and point the pattern at its NAME-*.tfrecord files"
            )
    return files


def expand_files(spec: str, extensions: Sequence[str]) -> list[str]:
    """The files named by a glob, a folder (its files with ``extensions``, recursively) or a
    comma-separated list of either, in order and without repeats.

    Raises:
        InputError: naming the part of ``spec`` that matches nothing.
    """
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if tf.io.gfile.isdir(part):
            found = sorted(
                os.path.join(folder, name)
                for folder, _, names in tf.io.gfile.walk(part)
                for name in names
                if name.lower().endswith(tuple(extensions))
            )
            if not found:
                raise InputError(f"{part}: no {'/'.join(extensions)} files in this folder")
        else:
            found = match_files(part)
        files.extend(f for f in found if f not in files)
    if not files:
        raise InputError(f"{spec!r}: names no files (a glob, a folder or a comma list)")
    return files


def replica_batch_size(global_batch_size: int, input_context=None) -> int:
    """The batch one input pipeline makes: the global batch divided among the replicas.

    ``input_context`` is the ``tf.distribute.InputContext`` the library passes to
    ``input_fn`` (None without a distribution strategy).
    """
    if input_context is None:
        return global_batch_size
    return input_context.get_per_replica_batch_size(global_batch_size)


def read_records(
    file_pattern: str,
    training: bool,
    cycle_length: int = 4,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    skip_corrupt: bool = False,
    input_context=None,
) -> tf.data.Dataset:
    """Serialized records from interleaved shards; shuffled and repeated for training.

    With several input pipelines (multi-worker training), each reads its own share of the
    files; with fewer files than pipelines, every pipeline reads all files and keeps its
    share of the records (slower: each reads everything), said in a warning.
    """
    count = len(match_files(file_pattern))
    files = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=seed)
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    by_record = pipelines > 1 and count < pipelines
    if by_record:
        print(
            f"warning: {file_pattern}: {count} files for {pipelines} input pipelines; each "
            "reads them all and keeps its share of the records (convert into more shards)"
        )
    elif pipelines > 1:
        files = files.shard(pipelines, input_context.input_pipeline_id)

    def read(path):
        dataset = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
        return dataset.ignore_errors() if skip_corrupt else dataset

    dataset = files.interleave(
        read,
        cycle_length=cycle_length,
        num_parallel_calls=AUTOTUNE,
        # Training takes whichever shard is ready first, unless pipelines split the records
        # by position: then each must see the same order.
        deterministic=not training or by_record,
    )
    if by_record:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    return dataset


def decode_and_random_crop(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    min_area: float = 0.25,
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """A random window of an encoded image, as uint8 ``[h, w, 3]``.

    JPEGs are decoded only inside the window (``decode_and_crop_jpeg``); other formats are
    decoded whole, then cropped. ``seed`` (shape [2]) drives stateless random ops: the
    pipeline holds no random state, so its position can be saved in a checkpoint.
    """

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([shape[0], shape[1], 3]),
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=seed,
            min_object_covered=min_area,
            aspect_ratio_range=aspect_ratio_range,
            area_range=(min_area, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin[0], begin[1], size[0], size[1]

    return _decode_window(encoded, window)


def decode_and_central_crop(encoded: tf.Tensor, fraction: float = 0.875) -> tf.Tensor:
    """The central square of an encoded image (side: ``fraction`` of the shorter edge)."""

    def window(shape):
        height, width = shape[0], shape[1]
        side = tf.cast(fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
        return (height - side) // 2, (width - side) // 2, side, side

    return _decode_window(encoded, window)


def _decode_window(encoded: tf.Tensor, window) -> tf.Tensor:
    def jpeg():
        top, left, h, w = window(tf.image.extract_jpeg_shape(encoded))
        return tf.image.decode_and_crop_jpeg(encoded, tf.stack([top, left, h, w]), channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        top, left, h, w = window(tf.shape(image))
        return tf.image.crop_to_bounding_box(image, top, left, h, w)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image (or each of a batch) left-right with probability 1/2, statelessly."""
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # independent of the crops
    return tf.image.stateless_random_flip_left_right(images, flip_seed)


def random_seeds(seed: int) -> tf.data.Dataset:
    """An endless dataset of stateless-op seeds (shape [2]) to zip beside the data."""
    return tf.data.Dataset.random(seed=seed).batch(2)


def map_images(fn, encoded: tf.Tensor, image_shape: Sequence[int], seed: tf.Tensor | None = None):
    """Applies ``fn(encoded_image)`` (or ``fn(encoded_image, seed)``) to each image of a batch.

    With ``seed`` (shape [2]), each image gets its own seed split from it. Returns float32
    ``[batch, *image_shape]``.
    """
    signature = tf.TensorSpec(list(image_shape), tf.float32)
    if seed is None:
        return tf.map_fn(fn, encoded, fn_output_signature=signature, parallel_iterations=16)
    seeds = tf.random.experimental.stateless_split(seed, tf.shape(encoded)[0])
    return tf.map_fn(
        lambda args: fn(*args),
        (encoded, seeds),
        fn_output_signature=signature,
        parallel_iterations=16,
    )


# -- What the engine needs to know about the files -------------------------------------


def _manifest_counts(files: Sequence[str]) -> dict[str, int]:
    """Record counts per shard from the ``*.manifest.json`` files beside the shards."""
    counts = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        for manifest_path in tf.io.gfile.glob(os.path.join(folder, "*.manifest.json")):
            with tf.io.gfile.GFile(manifest_path) as stream:
                manifest = json.load(stream)
            for shard in manifest.get("shards", []):
                counts[os.path.join(folder, shard["file"])] = int(shard["num_records"])
    return counts


def count_records(file_pattern: str) -> int:
    """Records in the matched shards: from the manifests, or by reading shards without one."""
    files = check_tfrecords(file_pattern)
    known = _manifest_counts(files)
    total = 0
    for path in files:
        if path in known:
            total += known[path]
            continue
        try:  # records from another tool: count them once
            total += int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        except tf.errors.DataLossError as error:
            raise InputError(
                f"{path}: corrupt or truncated shard ({error.message.splitlines()[0]}); "
                "re-create it, or set skip_corrupt_records: true to skip the damaged rest"
            ) from None
    return total


def manifest_paths(file_pattern: str) -> list[str]:
    """The ``*.manifest.json`` files beside the shards of ``file_pattern``."""
    folders = sorted({os.path.dirname(f) for f in match_files(file_pattern)})
    return [
        m for folder in folders for m in tf.io.gfile.glob(os.path.join(folder, "*.manifest.json"))
    ]


def class_names(params: Mapping) -> list[str]:
    """Class names from ``labels_file``, or ``labels.txt`` beside the training shards."""
    path = params["labels_file"]
    if not path:
        first = match_files(params["train_files"])[0]
        path = os.path.join(os.path.dirname(first), "labels.txt")
    if not tf.io.gfile.exists(path):
        raise InputError(f"{path}: labels file not found (set labels_file or num_classes)")
    with tf.io.gfile.GFile(path) as stream:
        return [line.strip() for line in stream if line.strip()]


def scan_shard(path: str) -> tuple[int, str]:
    """(records read, error message or '') for one shard, read to its end."""
    count = 0
    iterator = iter(tf.data.TFRecordDataset(path))
    while True:
        try:
            next(iterator)
        except StopIteration:
            return count, ""
        except tf.errors.OpError as error:
            return count, error.message.splitlines()[0]
        count += 1


def report_lost_records(file_pattern: str) -> list[str]:
    """One line per shard that cannot be read to its end, with the records lost."""
    files = match_files(file_pattern)
    expected = _manifest_counts(files)
    lines = []
    for path in files:
        readable, error = scan_shard(path)
        if error:
            total = expected.get(path)
            lost = f"{total - readable} of {total}" if total is not None else "the rest"
            lines.append(
                f"{path}: corrupt after record {readable}; skipping {lost} records ({error})"
            )
    return lines


def diagnose(file_pattern: str, params: Mapping) -> str | None:
    """Finds the shard or record behind a data error that TensorFlow does not name.

    Returns one line naming the corrupt shard or the undecodable record, or None if the
    files are fine (then the error came from elsewhere).
    """
    for path in match_files(file_pattern):
        readable, error = scan_shard(path)
        if error:
            return (
                f"{path}: corrupt or truncated shard after record {readable} ({error}); "
                "re-create it, or set skip_corrupt_records: true to skip the damaged rest"
            )
        for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
            parsed = records.parse_batch(serialized, params["image_key"], params["label_key"])
            try:
                tf.io.decode_image(parsed["image"], channels=3, expand_animations=False)
            except tf.errors.OpError:
                name = parsed["filename"].numpy().decode() or "(no image/filename)"
                return f"{path}: record {index} ({name}) holds an image that does not decode"
    return None
