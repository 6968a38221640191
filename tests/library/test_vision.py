"""The image-classification kit: crops that say where they cut (so boxes follow), flips that
say whether they flipped, and figures whose failure never turns a run's result."""

import numpy as np
import tensorflow as tf
from support import argv, run_cli, textured_image

from library.recorders.metrics_log import read_metrics
from library.vision import figures, images


def test_a_random_crop_returns_its_window_and_boxes_follow_it():
    picture = np.asarray(textured_image(60, 40, seed=3))  # 40 high, 60 wide
    png = tf.io.encode_png(picture)
    for seed in ([1, 2], [3, 4], [5, 6]):
        crop, window = images.decode_and_random_crop(png, tf.constant(seed, tf.int64), 0.3)
        ymin, xmin, ymax, xmax = window.numpy() * [40, 60, 40, 60]
        top, left, bottom, right = (round(v) for v in (ymin, xmin, ymax, xmax))
        np.testing.assert_array_equal(crop.numpy(), picture[top:bottom, left:right])
    # A box the crop must keep stays whole, and lands where the crop puts it.
    box = tf.constant([0.2, 0.3, 0.6, 0.7])
    for seed in ([7, 8], [9, 10]):
        crop, window = images.decode_and_random_crop(
            png, tf.constant(seed, tf.int64), 0.3, keep=box
        )
        ymin, xmin, ymax, xmax = window.numpy()
        assert (
            ymin <= 0.2 + 1e-6 and xmin <= 0.3 + 1e-6 and ymax >= 0.6 - 1e-6 and xmax >= 0.7 - 1e-6
        )
        moved = images.boxes_in_window(box, window).numpy()
        height, width = crop.shape[:2]
        expected = [(0.2 * 40 - ymin * 40) / height, (0.3 * 60 - xmin * 60) / width,
                    (0.6 * 40 - ymin * 40) / height, (0.7 * 60 - xmin * 60) / width]  # fmt: skip
        np.testing.assert_allclose(moved, expected, atol=1e-5)


def test_a_flip_says_whether_it_flipped_and_boxes_follow_it():
    image = tf.constant(np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3))
    seen = set()
    for s in range(8):
        flipped_image, flipped = images.random_flip(image, tf.constant([s, 0], tf.int64))
        expected = tf.image.flip_left_right(image) if flipped else image
        np.testing.assert_array_equal(flipped_image.numpy(), expected.numpy())
        seen.add(bool(flipped))
    assert seen == {True, False}
    box = tf.constant([0.1, 0.2, 0.5, 0.4])
    np.testing.assert_allclose(images.flip_boxes(box, tf.constant(True)), [0.1, 0.6, 0.5, 0.8])
    np.testing.assert_allclose(images.flip_boxes(box, tf.constant(False)), box)


def test_a_figure_that_fails_is_said_at_once_and_the_run_still_succeeds(
    stripes_records, tmp_path, monkeypatch
):
    def broken(*args, **kwargs):
        raise ValueError("a figure that cannot be drawn")

    monkeypatch.setattr(figures, "plot_sample_predictions", broken)
    result = run_cli(*argv(stripes_records, tmp_path, "--plots", "true"))
    assert result.returncode == 0, result.stderr
    assert "warning: figures failed (ValueError: a figure that cannot be drawn)" in result.stdout
    assert [r["step"] for r in read_metrics(str(tmp_path / "model"))] == [2, 4]
    assert (tmp_path / "best" / "confusion_matrix.png").exists()  # the rest was drawn


def test_the_confusion_matrix_counts_true_against_predicted_classes_over_batches():
    from library.vision.figures import ConfusionMatrix

    matrix = ConfusionMatrix(3, lambda logits: tf.argmax(logits, -1), label="class")
    logits = tf.one_hot([0, 2, 2, 1], 3)  # predicted 0, 2, 2, 1
    matrix.update_state({"class": tf.constant([0, 2, 1, 1])}, logits)
    matrix.update_state({"class": tf.constant([[2], [0]])}, tf.one_hot([2, 1], 3))
    np.testing.assert_array_equal(matrix.result(), [[1, 1, 0], [0, 1, 1], [0, 0, 2]])
    matrix.reset_state()
    assert int(tf.reduce_sum(matrix.result())) == 0
