"""Input functions: ``input_fn(file_pattern, mode, params) -> tf.data.Dataset``.

Each yields ``(features, labels)`` batches, features being a dict with at least ``image``.
``input_fn`` reads the TFRecords written by convert_dataset.py (or any tool using the same
schema). ``folder_input_fn`` and ``generator_input_fn`` are examples of other sources: switch
by wiring one of them in run.py.
"""

import numpy as np
import tensorflow as tf

from library import inputs
from library.modes import ModeKeys


def input_fn(file_pattern, mode, params):
    """Batches of images and labels from interleaved TFRecord shards."""
    training = mode == ModeKeys.TRAIN
    dataset = inputs.read_records(
        file_pattern,
        training,
        cycle_length=params.interleave_cycle_length,
        shuffle_buffer=params.shuffle_buffer,
        seed=params.random_seed,
        skip_corrupt=params.skip_corrupt_records,
    )
    batch_size = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if training:  # stateless augmentation, one seed per batch: the pipeline can be saved
        dataset = tf.data.Dataset.zip(dataset, inputs.random_seeds(params.random_seed))
        dataset = dataset.map(
            lambda serialized, seed: inputs.parse_and_decode(serialized, True, params, seed),
            num_parallel_calls=inputs.AUTOTUNE,
            deterministic=False,
        )
    else:
        dataset = dataset.map(
            lambda serialized: inputs.parse_and_decode(serialized, False, params),
            num_parallel_calls=inputs.AUTOTUNE,
        )
    return dataset.prefetch(inputs.AUTOTUNE)


def serving_fn(encoded_images, params):
    """Features for a batch of encoded image bytes, as the exported model receives them."""
    return {"image": inputs.decode_batch(encoded_images, False, params)}


def folder_input_fn(file_pattern, mode, params):
    """Images straight from ``<class>/<image>`` folders, e.g. ``dataset/train/*/*.jpg``.

    No conversion step, at the price of one file open per image. Labels are the class
    folder's index in the labels file (``inputs.class_names``).
    """
    training = mode == ModeKeys.TRAIN
    inputs.match_files(file_pattern)
    names = inputs.class_names(params)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(names, tf.range(len(names), dtype=tf.int32)), -1
    )

    def load(path, seed):
        class_name = tf.strings.split(path, "/")[-2]
        image = inputs.decode_image(
            tf.io.read_file(path),
            training,
            params.image_size,
            params.train_crop_min_area,
            params.eval_crop_fraction,
            seed=seed if training else None,
        )
        if training and params.augment_flip:
            image = inputs.random_flip(image, seed)
        return {"image": image, "filename": path}, table.lookup(class_name)

    dataset = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=params.random_seed)
    if training:
        dataset = dataset.repeat()
    dataset = tf.data.Dataset.zip(dataset, inputs.random_seeds(params.random_seed))
    dataset = dataset.map(load, num_parallel_calls=inputs.AUTOTUNE, deterministic=not training)
    batch_size = params.train_batch_size if training else params.eval_batch_size
    return dataset.batch(batch_size, drop_remainder=training).prefetch(inputs.AUTOTUNE)


def stripes(image_size, seed):
    """Endless (image, label) pairs made in Python: label 0 horizontal stripes, 1 vertical."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    while True:
        label = int(rng.integers(2))
        period = rng.uniform(3.0, 8.0)
        wave = np.sin(2 * np.pi * (x if label else y) / period + rng.uniform(0, 2 * np.pi))
        colour = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        yield (0.5 + 0.5 * wave)[..., None] * colour, label


def generator_input_fn(file_pattern, mode, params):
    """Data produced in Python through ``Dataset.from_generator`` (``file_pattern`` unused).

    Evaluation draws a fixed stream (its own seed) so every evaluation sees the same data.
    """
    training = mode == ModeKeys.TRAIN
    size = params.image_size
    seed = params.random_seed + (0 if training else 1)
    dataset = tf.data.Dataset.from_generator(
        lambda: stripes(size, seed),
        output_signature=(
            tf.TensorSpec([size, size, 3], tf.float32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    if not training:
        dataset = dataset.take(4 * params.eval_batch_size)
    batch_size = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.map(lambda image, label: ({"image": image}, label)).prefetch(inputs.AUTOTUNE)
