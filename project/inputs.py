"""Input functions: ``input_fn(file_pattern, mode, params, input_context=None) -> Dataset``.

Each yields ``(features, labels)`` batches, features being a dict with ``image``.
``input_context`` (a ``tf.distribute.InputContext``, None on one device) says how many input
pipelines there are: the batch is the per-replica share of the global batch, and each pipeline
reads its share of the files. ``input_fn`` reads the TFRecords written by convert_dataset.py
(or any tool using the same schema). ``folder_input_fn`` and ``generator_input_fn`` are
examples of other sources: switch by wiring one of them in run.py.

The augmentation policy lives here too (``preprocess_train``, ``preprocess_eval``): crops,
flips and the normalisation of pixel values are the project's choices, built from the image
kit's blocks (``library/vision/images.py``). ``serving_fn`` turns the exported model's
input (the kit's ``image_bytes``) into the same features.
"""

import numpy as np
import tensorflow as tf

from library import ModeKeys, random_seeds, read_records, replica_batch_size
from library.vision import images, records


def normalise(image):
    """uint8 (or float) pixels to float32 in [0, 1]: what the encoders expect."""
    return tf.clip_by_value(tf.cast(image, tf.float32) / 255.0, 0.0, 1.0)


def preprocess_train(encoded, seed, params):
    """A random crop (at least ``train_crop_min_area``), resized, maybe flipped."""
    crop, _ = images.decode_and_random_crop(encoded, seed, params.train_crop_min_area)
    image = tf.image.resize(crop, [params.image_size, params.image_size])
    if params.augment_flip:
        image, _ = images.random_flip(image, seed)
    return normalise(image)


def preprocess_eval(encoded, params):
    """The central crop (``eval_crop_fraction`` of the shorter edge), resized the way training
    resizes (an anti-aliased evaluation of images trained without it sees other statistics:
    fine textures such as stripes then evaluate at chance)."""
    crop = images.decode_and_central_crop(encoded, params.eval_crop_fraction)
    image = tf.image.resize(crop, [params.image_size, params.image_size])
    return normalise(image)


def decode_batch(encoded, training, params, seed=None):
    """A batch of encoded images to float32 ``[batch, size, size, 3]``."""
    shape = (params.image_size, params.image_size, 3)
    if training:
        return images.map_images(
            lambda image, image_seed: preprocess_train(image, image_seed, params),
            encoded,
            shape,
            seed,
        )
    return images.map_images(lambda image: preprocess_eval(image, params), encoded, shape)


def parse_and_decode(serialized, training, params, seed=None):
    """A batch of serialized Examples to ``({"image", "filename"}, label)``."""
    parsed = records.parse_batch(serialized, params.image_key, params.label_key)
    return to_features(parsed, decode_batch(parsed["image"], training, params, seed))


def to_features(parsed, images):
    """``({"image", "filename"}, label)`` from a parsed batch and its decoded images."""
    return {"image": images, "filename": parsed["filename"]}, parsed["label"]


def input_fn(file_pattern, mode, params, input_context=None):
    """Batches of images and labels from interleaved TFRecord shards."""
    training = mode == ModeKeys.TRAIN
    dataset = read_records(
        file_pattern,
        training,
        cycle_length=params.interleave_cycle_length,
        shuffle_buffer=params.shuffle_buffer,
        seed=params.random_seed,
        skip_corrupt=params.skip_corrupt_records,
        input_context=input_context,
    )
    global_batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(
        replica_batch_size(global_batch, input_context), drop_remainder=training
    )
    # Parsing and decoding as maps of their own, named: the library's input check times
    # each stage of the pipeline by its map's name.
    if training:  # stateless augmentation, one seed per batch: the pipeline can be saved
        dataset = tf.data.Dataset.zip(dataset, random_seeds(params.random_seed))

        def parse(serialized, seed):
            return records.parse_batch(serialized, params.image_key, params.label_key), seed

        def decode_and_augment(parsed, seed):
            return to_features(parsed, decode_batch(parsed["image"], True, params, seed))

        # In any order unless the run option deterministic asks (the library sets the
        # training dataset's options, which these maps follow).
        dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.map(decode_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(
            lambda serialized: parse_and_decode(serialized, False, params),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def serving_fn(inputs, params):
    """Features for a batch of the exported model's inputs: encoded images (``image_bytes``,
    the kit's ``serving.image_bytes_inputs``)."""
    return {"image": decode_batch(inputs["image_bytes"], False, params)}


def folder_input_fn(file_pattern, mode, params, input_context=None):
    """Images straight from ``<class>/<image>`` folders, e.g. ``dataset/train/*/*.jpg``.

    No conversion step, at the price of one file open per image. Labels are the class
    folder's index in ``class_names`` (the labels file's, filled in by ``prepare_fn``).
    """
    training = mode == ModeKeys.TRAIN
    names = list(params.class_names)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(names, tf.range(len(names), dtype=tf.int32)), -1
    )

    def load(path, seed):
        class_name = tf.strings.split(path, "/")[-2]
        encoded = tf.io.read_file(path)
        if training:
            image = preprocess_train(encoded, seed, params)
        else:
            image = preprocess_eval(encoded, params)
        return {"image": image, "filename": path}, table.lookup(class_name)

    dataset = tf.data.Dataset.list_files(file_pattern, shuffle=training, seed=params.random_seed)
    if training:
        dataset = dataset.repeat()
    dataset = tf.data.Dataset.zip(dataset, random_seeds(params.random_seed))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    global_batch = params.train_batch_size if training else params.eval_batch_size
    batch_size = replica_batch_size(global_batch, input_context)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


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


def generator_input_fn(file_pattern, mode, params, input_context=None):
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
    global_batch = params.train_batch_size if training else params.eval_batch_size
    dataset = dataset.batch(
        replica_batch_size(global_batch, input_context), drop_remainder=training
    )
    return dataset.map(lambda image, label: ({"image": image}, label)).prefetch(tf.data.AUTOTUNE)
