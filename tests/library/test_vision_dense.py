"""The image kit for dense outputs: labels of any kind parsed from records (a class, a float,
a float vector, an encoded mask), images decoded to one channel, a mask cropped and flipped
with its image and resized by its nearest pixel, the record and key of a corrupt or missing
mask named, and the figures of masks and boxes in TensorBoard and in the best folder."""

import os
import types

import numpy as np
import pytest
import tensorflow as tf
from support import event_tags, jpeg_bytes, textured_image

from library.data.records import example
from library.recorders.base import Evaluation, Recorders, Run
from library.recorders.summaries import Summaries
from library.vision import figures, images, records, serving


def png(pixels) -> bytes:
    return records.png_bytes(np.asarray(pixels, dtype=np.uint8))


def picture_and_mask(seed=0, height=40, width=60):
    """A textured RGB picture and a mask that is a function of its pixels (where the red
    channel is bright), so that wherever the two go, the mask can be told from the
    picture."""
    picture = np.asarray(textured_image(width, height, seed=seed))
    mask = np.where(picture[..., 0] > 127, 255, 0).astype(np.uint8)
    return picture, mask


# -- records ----------------------------------------------------------------------------------


def test_each_label_kind_parses_from_records():
    picture, mask = picture_and_mask()
    serialized = [
        records.serialize_image(
            png(picture),
            f"{i}.png",
            mask=png(mask),
            features={records.LABEL: i, "value": 0.5 + i, "box": [0.1 * i, 0.2, 0.3, 0.4]},
        )
        for i in range(3)
    ]
    batch = tf.constant(serialized)
    # The classifier's call, unchanged: an int64 class comes as int32.
    classes = records.parse_batch(batch, records.ENCODED, records.LABEL)
    assert classes["label"].dtype == tf.int32 and classes["label"].numpy().tolist() == [0, 1, 2]
    assert classes["filename"].numpy().tolist() == [b"0.png", b"1.png", b"2.png"]
    floats = records.parse_batch(batch, label_key="value", label="float")
    assert floats["label"].dtype == tf.float32
    np.testing.assert_allclose(floats["label"].numpy(), [0.5, 1.5, 2.5])
    vector = records.parse_batch(
        batch, label_key="box", label=tf.io.FixedLenFeature([4], tf.float32)
    )
    assert vector["label"].shape == (3, 4)
    np.testing.assert_allclose(vector["label"].numpy()[:, 0], [0.0, 0.1, 0.2], atol=1e-6)
    masks = records.parse_batch(batch, label_key=records.MASK, label="mask")
    assert masks["label"].dtype == tf.string
    decoded = images.decode(masks["label"][1], channels=1).numpy()
    np.testing.assert_array_equal(decoded[..., 0], mask)  # PNG: the mask's values, exactly
    # The same inside tf.data, with an extra feature and no label at all.
    parsed = next(
        iter(
            tf.data.Dataset.from_tensor_slices(serialized)
            .batch(3)
            .map(
                lambda s: records.parse_batch(
                    s, label_key=None, extra={"value": records.LABEL_KINDS["float"]}
                )
            )
        )
    )
    assert "label" not in parsed and parsed["value"].numpy().tolist() == [0.5, 1.5, 2.5]
    # The image's format and size come from its header.
    feature = tf.train.Example.FromString(serialized[0]).features.feature
    assert feature[records.FORMAT].bytes_list.value == [b"png"]
    assert feature[records.HEIGHT].int64_list.value == [40]
    assert feature[records.WIDTH].int64_list.value == [60]
    with pytest.raises(ValueError, match="label kind 'box'"):
        records.parse_batch(batch, label_key="box", label="box")
    with pytest.raises(ValueError, match=r"bad\.png: not an image"):
        records.serialize_image(b"not an image", "bad.png")


# -- decoding, crops and flips ----------------------------------------------------------------


def test_images_decode_to_one_channel():
    picture, mask = picture_and_mask()
    grey = np.asarray(textured_image(60, 40, seed=1, mode="L"))
    for encoded in (png(mask), png(grey)):
        assert images.decode(tf.constant(encoded), channels=1).shape == (40, 60, 1)
    rgb = images.decode(tf.constant(png(picture)), channels=1)
    assert rgb.shape == (40, 60, 1)  # a colour picture turned grey
    jpeg = tf.constant(jpeg_bytes(textured_image(60, 40, seed=2)))
    crop, _ = images.decode_and_random_crop(jpeg, tf.constant([1, 2], tf.int64), 0.3, channels=1)
    assert crop.shape[-1] == 1
    assert images.decode_and_central_crop(png(mask), 1.0, channels=1).shape == (40, 40, 1)
    batch = tf.constant([png(mask), png(grey)])
    decoded = images.map_images(
        lambda e: tf.image.resize(images.decode(e, channels=1), [8, 8]), batch, (8, 8), channels=1
    )
    assert decoded.shape == (2, 8, 8, 1)


def test_a_mask_cropped_and_flipped_with_its_image_stays_aligned():
    flips = set()
    for first in range(1, 13, 2):
        # 37 x 53: sizes whose fractions come back a hair under the pixel in float32
        picture, mask = picture_and_mask(seed=first, height=37, width=53)
        seed = tf.constant([first, first + 1], tf.int64)
        crop, window = images.decode_and_random_crop(tf.constant(png(picture)), seed, 0.3)
        cut = images.crop_to_window(images.decode(tf.constant(png(mask)), channels=1), window)
        unflipped = crop.numpy()
        crop, flipped = images.random_flip(crop, seed)
        cut = images.flip_if(cut, flipped)
        flips.add(bool(flipped))
        np.testing.assert_array_equal(crop.numpy(), unflipped[:, ::-1] if flipped else unflipped)
        assert cut.shape[:2] == crop.shape[:2] and crop.shape[:2] != picture.shape[:2]
        # The mask, worked out again from the cropped and flipped picture, is the one cut.
        expected = np.where(crop.numpy()[..., 0] > 127, 255, 0)
        np.testing.assert_array_equal(cut.numpy()[..., 0], expected)
        # Resized by its nearest pixel, a mask holds no value it did not hold.
        resized = images.resize_mask(cut, [17, 23])
        assert resized.dtype == tf.uint8 and set(np.unique(resized.numpy())) <= {0, 255}
    assert flips == {True, False}


# -- diagnosis --------------------------------------------------------------------------------

DIAGNOSE = serving.undecodable(options=("image_key", "mask_key"))
PARAMS = {"image_key": records.ENCODED, "mask_key": records.MASK}
ERROR = tf.errors.InvalidArgumentError(None, None, "Unknown image file format. [[DecodeImage]]")


def write_records(path, bad):
    """Three good records, then ``bad`` (a serialized record), then a good one."""
    picture, mask = picture_and_mask()
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(3):
            writer.write(records.serialize_image(png(picture), f"{index}.png", mask=png(mask)))
        writer.write(bad)
        writer.write(records.serialize_image(png(picture), "4.png", mask=png(mask)))
    return path


def test_the_diagnosis_names_the_record_and_key_of_a_corrupt_mask(tmp_path):
    picture, _ = picture_and_mask()
    corrupt = records.serialize_image(png(picture), "odd.png", mask=b"\x89PNG\r\n\x1a\nbroken")
    good = write_records(
        str(tmp_path / "good.tfrecord"),
        records.serialize_image(png(picture), "3.png", mask=png(picture[..., 0])),
    )
    path = write_records(str(tmp_path / "bad.tfrecord"), corrupt)
    line = DIAGNOSE(str(tmp_path / "*.tfrecord"), PARAMS, ERROR)
    assert line.startswith(
        f"{path}: record 3 (odd.png) holds {records.MASK} bytes that do not decode"
    )
    assert len(line.splitlines()) == 1 and "{{" not in line
    assert DIAGNOSE(good, PARAMS, ERROR) is None
    # The image's own diagnosis looks at the image alone, which decodes.
    assert serving.find_undecodable_image(path, PARAMS, ERROR) is None
    # An error that is neither about decoding nor a missing feature scans nothing.
    shape_bug = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [8,2] vs [8,3]")
    assert DIAGNOSE(path, PARAMS, shape_bug) is None


def test_the_diagnosis_names_the_record_and_key_missing(tmp_path):
    picture, _ = picture_and_mask()
    no_mask = records.serialize_image(png(picture), "lonely.png")
    path = write_records(str(tmp_path / "a.tfrecord"), no_mask)
    missing = tf.errors.InvalidArgumentError(
        None,
        None,
        f"Feature: {records.MASK} (data type: string) is required but could not be found.",
    )
    assert DIAGNOSE(path, PARAMS, missing) == (
        f"{path}: record 3 (lonely.png) has no {records.MASK} (a feature every record needs)"
    )
    # Without a file name feature, the record is named by its index alone.
    nameless = example({records.MASK: png(picture[..., 0])})
    path = write_records(str(tmp_path / "b.tfrecord"), nameless)
    expected = f"record 3 (no image/filename) has no {records.ENCODED} (a feature every"
    assert DIAGNOSE(path, PARAMS, missing).startswith(f"{path}: {expected}")
    with pytest.raises(ValueError, match="name the keys"):
        serving.undecodable()


# -- figures ----------------------------------------------------------------------------------


def fake_run(folder, said):
    params = types.SimpleNamespace(
        model_dir=str(folder / "model"), best_model_dir=str(folder / "best")
    )
    return Run(params, Summaries(params.model_dir, train=False), said.append)


def evaluation(step, best, batch, outputs):
    return Evaluation(
        step, None, {}, None, None, None, "", first_batch=batch, first_outputs=outputs, is_best=best
    )


def mask_batch(count=4, size=16):
    rng = np.random.default_rng(0)
    pictures = rng.uniform(0, 1, (count, size, size, 3)).astype(np.float32)
    truth = (rng.uniform(0, 1, (count, size, size, 1)) > 0.7).astype(np.int32)
    logits = np.where(truth > 0, 2.0, -2.0).astype(np.float32)
    logits[:, :4] = 3.0  # some pixels wrong
    return ({"image": pictures}, truth), logits


def box_batch(count=4, size=32):
    rng = np.random.default_rng(1)
    pictures = rng.uniform(0, 1, (count, size, size, 3)).astype(np.float32)
    true = np.tile([0.2, 0.2, 0.7, 0.8], (count, 1)).astype(np.float32)
    return ({"image": pictures}, {"where": true}), {"where": true + 0.05}


@pytest.mark.parametrize(
    ("make", "recorder", "tag", "png_name"),
    [
        (mask_batch, lambda: figures.MaskFigures(), "masks", figures.MASKS_PNG),
        (box_batch, lambda: figures.BoxFigures("where", "where"), "boxes", figures.BOXES_PNG),
    ],
)
def test_the_figure_recorders_write_a_png_and_a_tensorboard_image(
    make, recorder, tag, png_name, tmp_path
):
    said = []
    run = fake_run(tmp_path, said)
    pictures = recorder()
    pictures.start(run)
    batch, outputs = make()
    pictures.on_evaluation(evaluation(2, True, batch, outputs))
    pictures.finish()
    path = tmp_path / "best" / png_name
    with open(path, "rb") as stream:
        assert stream.read(4) == b"\x89PNG"
    os.remove(path)
    pictures.on_evaluation(evaluation(4, False, batch, outputs))  # not a new best
    pictures.finish()
    run.writers.flush()
    assert event_tags(str(tmp_path / "model" / "eval"))[tag] == [2, 4]  # at each evaluation
    assert not path.exists() and said == []  # the PNG is the best's alone


def test_a_figure_recorder_says_its_failure_once_and_the_rest_of_the_run_goes_on(tmp_path):
    said = []
    run = fake_run(tmp_path, said)
    broken = figures.MaskFigures()

    def compose(*args):
        raise ValueError("cannot draw")

    broken.compose = compose
    recorders = Recorders([broken], said.append)
    recorders.start(run)
    batch, outputs = mask_batch()
    for step in (2, 4, 6):
        recorders.on_evaluation(evaluation(step, True, batch, outputs))
        broken.finish()
    recorders.finish()
    assert len(said) == 1 and "MaskFigures failed (ValueError: cannot draw)" in said[0]


def test_the_digit_boxes_example_draws_its_boxes():
    from examples.digit_boxes import functions

    plots = functions.callbacks_fn(types.SimpleNamespace(plots=True, best_model_dir=""))
    boxes = [r for r in plots if isinstance(r, figures.BoxFigures)]
    assert len(boxes) == 1 and (boxes[0].label, boxes[0].output) == ("box", "box")
    assert not any(
        isinstance(r, figures.BoxFigures)
        for r in functions.callbacks_fn(types.SimpleNamespace(plots=False, best_model_dir=""))
    )
