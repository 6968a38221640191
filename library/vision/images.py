"""Decoding and augmenting images inside tf.data: crops decoded only inside their window,
flips, and the boxes that follow them.

Every random op is stateless (``seed``, shape [2]): the pipeline holds no random state, so
its position can be saved in a checkpoint. The crop and the flip say what they did (the
window, whether it flipped), so that boxes or masks can follow the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def decode_and_random_crop(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    min_area: float = 0.25,
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
    keep: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random window of an encoded image: ``(uint8 [h, w, 3], window)``, ``window`` being
    ``[ymin, xmin, ymax, xmax]`` of the crop in the whole image, as fractions (what
    ``boxes_in_window`` takes).

    With ``keep`` (a box ``[ymin, xmin, ymax, xmax]`` in fractions), the window holds that
    box whole (an object that must stay in the picture). JPEGs are decoded only inside the
    window (``decode_and_crop_jpeg``); other formats are decoded whole, then cropped.
    """
    if keep is None:
        boxes, covered = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]), min_area
    else:
        boxes, covered = tf.reshape(tf.cast(keep, tf.float32), [1, 1, 4]), 1.0

    def window(shape):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([shape[0], shape[1], 3]),
            bounding_boxes=boxes,
            seed=seed,
            min_object_covered=covered,
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

    image, _ = _decode_window(encoded, window)
    return image


def _decode_window(encoded: tf.Tensor, window) -> tuple[tf.Tensor, tf.Tensor]:
    def fractions(shape, top, left, h, w):
        height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
        box = tf.cast(tf.stack([top, left, top + h, left + w]), tf.float32)
        return box / tf.stack([height, width, height, width])

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        top, left, h, w = window(shape)
        image = tf.image.decode_and_crop_jpeg(encoded, tf.stack([top, left, h, w]), channels=3)
        return image, fractions(shape, top, left, h, w)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        shape = tf.shape(image)
        top, left, h, w = window(shape)
        cropped = tf.image.crop_to_bounding_box(image, top, left, h, w)
        return cropped, fractions(shape, top, left, h, w)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(image, flipped)``: the image flipped left-right with probability 1/2, and whether
    it was (for ``flip_boxes``)."""
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)  # independent of the crop
    flipped = tf.random.stateless_uniform([], flip_seed) < 0.5
    return tf.cond(flipped, lambda: tf.image.flip_left_right(image), lambda: image), flipped


def boxes_in_window(boxes: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Boxes ``[..., 4]`` (``[ymin, xmin, ymax, xmax]``, fractions of the whole image) as
    fractions of the crop ``window``, clipped to it."""
    ymin, xmin, ymax, xmax = tf.unstack(window)
    origin = tf.stack([ymin, xmin, ymin, xmin])
    scale = tf.stack([ymax - ymin, xmax - xmin, ymax - ymin, xmax - xmin])
    return tf.clip_by_value((tf.cast(boxes, tf.float32) - origin) / scale, 0.0, 1.0)


def flip_boxes(boxes: tf.Tensor, flipped: tf.Tensor) -> tf.Tensor:
    """Boxes of an image flipped left-right when ``flipped``."""
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    mirrored = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    return tf.where(flipped, mirrored, tf.cast(boxes, tf.float32))


def map_images(
    fn,
    encoded: tf.Tensor,
    image_shape: Sequence[int],
    seed: tf.Tensor | None = None,
    output_signature=None,
):
    """Applies ``fn(encoded_image)`` (or ``fn(encoded_image, seed)``) to each image of a batch
    (or ``fn(element)`` / ``fn(element, seed)`` to each element of a structure of batches).

    With ``seed`` (shape [2]), each image gets its own seed split from it. Returns float32
    ``[batch, *image_shape]``, or ``output_signature``'s structure when given.
    """
    signature = output_signature or tf.TensorSpec(list(image_shape), tf.float32)
    if seed is None:
        return tf.map_fn(fn, encoded, fn_output_signature=signature, parallel_iterations=16)
    count = tf.shape(tf.nest.flatten(encoded)[0])[0]
    seeds = tf.random.experimental.stateless_split(seed, count)
    return tf.map_fn(
        lambda args: fn(*args),
        (encoded, seeds),
        fn_output_signature=signature,
        parallel_iterations=16,
    )
