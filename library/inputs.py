"""tf.data building blocks that a project's ``input_fn`` composes.

The shape of a fast image pipeline (see BENCHMARKS.md for why each step is where it is)::

    list_files -> interleave(TFRecordDataset) -> shuffle -> repeat -> batch
      -> parse the whole batch (tf.io.parse_example) -> decode_and_crop_jpeg each image
      -> resize, augment, normalise -> prefetch (to the accelerator when there is one)

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


def read_records(
    file_pattern: str,
    training: bool,
    cycle_length: int = 4,
    shuffle_buffer: int = 1000,
    seed: int | None = None,
    skip_corrupt: bool = False,
) -> tf.data.Dataset:
    """Serialized records from interleaved shards; shuffled and repeated for training."""
    match_files(file_pattern)
    files = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=seed)

    def read(path):
        dataset = tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES)
        return dataset.ignore_errors() if skip_corrupt else dataset

    dataset = files.interleave(
        read,
        cycle_length=cycle_length,
        num_parallel_calls=AUTOTUNE,
        deterministic=not training,  # training takes whichever shard is ready first
    )
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    return dataset


def decode_image(
    encoded: tf.Tensor,
    training: bool,
    image_size: int,
    crop_min_area: float = 0.25,
    eval_crop_fraction: float = 0.875,
    seed: tf.Tensor | None = None,
) -> tf.Tensor:
    """One encoded image to a float32 ``[image_size, image_size, 3]`` tensor in [0, 1].

    JPEGs are decoded only inside the crop window (``decode_and_crop_jpeg``): a random
    window for training, a central one for evaluation. Other formats (records from other
    tools) are decoded whole, then cropped the same way.

    Training needs ``seed`` (shape [2]) for the random window: the augmentation uses
    stateless random ops, so the pipeline holds no random state and its position can be saved
    in a checkpoint. Flips are a separate step (``random_flip``).
    """
    if training and seed is None:
        raise ValueError("decode_image(training=True) needs a seed: see random_seeds()")

    def crop_window(shape):
        height, width = shape[0], shape[1]
        if training:
            begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.stack([height, width, 3]),
                bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
                seed=seed,
                min_object_covered=crop_min_area,
                aspect_ratio_range=(3 / 4, 4 / 3),
                area_range=(crop_min_area, 1.0),
                max_attempts=10,
                use_image_if_no_bounding_boxes=True,
            )
            return begin[0], begin[1], size[0], size[1]
        side = tf.cast(
            eval_crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32
        )
        return (height - side) // 2, (width - side) // 2, side, side

    def jpeg():
        top, left, h, w = crop_window(tf.image.extract_jpeg_shape(encoded))
        return tf.image.decode_and_crop_jpeg(encoded, tf.stack([top, left, h, w]), channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        top, left, h, w = crop_window(tf.shape(image))
        return tf.image.crop_to_bounding_box(image, top, left, h, w)

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    image = tf.image.resize(image, [image_size, image_size], antialias=not training)
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image (or each of a batch) left-right with probability 1/2, statelessly."""
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # independent of the crops
    return tf.image.stateless_random_flip_left_right(images, flip_seed)


def random_seeds(seed: int) -> tf.data.Dataset:
    """An endless dataset of stateless-op seeds (shape [2]) to zip beside the data."""
    return tf.data.Dataset.random(seed=seed).batch(2)


def decode_batch(
    encoded: tf.Tensor, training: bool, params: Mapping, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """A batch of encoded images to ``[batch, size, size, 3]`` float32 (see ``decode_image``).

    ``seed`` (training only) is split into one seed per image.
    """
    size = params["image_size"]
    if not training:
        return tf.map_fn(
            lambda image: decode_image(
                image, False, size, eval_crop_fraction=params["eval_crop_fraction"]
            ),
            encoded,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            parallel_iterations=16,
        )
    seeds = tf.random.experimental.stateless_split(seed, tf.shape(encoded)[0])
    flip = params["augment_flip"]

    def augmented(args):
        image = decode_image(args[0], True, size, params["train_crop_min_area"], seed=args[1])
        return random_flip(image, args[1]) if flip else image  # per image: only half are copied

    return tf.map_fn(
        augmented,
        (encoded, seeds),
        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        parallel_iterations=16,
    )


def parse_and_decode(
    serialized: tf.Tensor, training: bool, params: Mapping, seed: tf.Tensor | None = None
) -> tuple:
    """A batch of serialized Examples to ``({"image", "filename"}, label)``."""
    parsed = records.parse_batch(serialized, params["image_key"], params["label_key"])
    images = decode_batch(parsed["image"], training, params, seed)
    return {"image": images, "filename": parsed["filename"]}, parsed["label"]


def prefetch_to_accelerator(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Prefetches onto the GPU when there is one (the last stage), else in host memory.

    String features (filenames) cannot live on a GPU and the train step does not use them:
    they are dropped before the copy.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return dataset.prefetch(AUTOTUNE)
    features_spec = dataset.element_spec[0]
    if isinstance(features_spec, Mapping):
        keep = [k for k, spec in features_spec.items() if spec.dtype != tf.string]
        dataset = dataset.map(lambda features, labels: ({k: features[k] for k in keep}, labels))
    return dataset.apply(tf.data.experimental.prefetch_to_device(gpus[0].name, buffer_size=2))


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
    files = match_files(file_pattern)
    known = _manifest_counts(files)
    total = 0
    for path in files:
        if path in known:
            total += known[path]
        else:  # records from another tool: count them once
            total += int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
    return total


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
