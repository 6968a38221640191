"""The segmentation example as its one command runs it, on tiny data: run.py's modes in this
process (train, evaluate, export, predict), the exported model reloaded in a process of its
own, the kit's mask figure, and a corrupt or missing mask named by record and key."""

import csv
import glob
import json
import os
import re

import numpy as np
import pytest
from PIL import Image
from support import event_tags, one_line, run_cli

from examples import segmentation
from examples.segmentation import __main__ as journey
from examples.segmentation import data
from library.recorders.metrics_log import read_metrics
from library.vision import records

SMALL = ("--image_size", "32", "--filters", "[4, 8]")  # the model each mode builds
TRAIN = journey.flags(
    train_epochs="2",
    epochs_between_evals="1",
    train_batch_size="10",
    best_saved_model="false",
    batch_norm_refresh_batches="0",
)


def run(argv):
    return run_cli("--project_file", segmentation.PROJECT_FILE, *argv, project=segmentation)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The journey's commands on 50 canvases (30 train, 10 validation, 10 test)."""
    folder = tmp_path_factory.mktemp("segmentation")
    dataset, out = str(folder / "data"), str(folder / "out")
    assert data.write_data(dataset, count=50) == {"train": 30, "validation": 10, "test": 10}
    commands = journey.commands(dataset, out, *TRAIN)
    printed = {}
    for name in ("train", "evaluate", "export"):
        printed[name] = run([*commands[name], *SMALL])
        assert printed[name].returncode == 0, (name, printed[name].stderr[-3000:])
    return dataset, out, commands, printed


def test_it_trains_evaluates_and_draws_its_masks(trained):
    _, out, _, printed = trained
    rows = read_metrics(os.path.join(out, "checkpoints"))
    assert [r["step"] for r in rows] == [3, 6]
    for row in rows:  # two loss terms, beside the total they sum to, and both IoUs
        assert row["eval_loss"] == pytest.approx(
            row["eval_loss/cross_entropy"] + row["eval_loss/dice"], rel=1e-5
        )
        assert 0 <= row["eval_iou"] <= 1 and 0 <= row["eval_foreground_iou"] <= 1
    with open(os.path.join(out, "best", "best.json"), encoding="utf-8") as stream:
        assert json.load(stream)["metric"] == "iou"
    assert re.search(
        r"on .*test-\*\.tfrecord: loss [0-9.]+, .* iou [0-9.]+", printed["evaluate"].stdout
    )
    # The kit's figure: in the best folder, and in TensorBoard at each evaluation.
    with open(os.path.join(out, "best", "masks.png"), "rb") as stream:
        assert stream.read(4) == b"\x89PNG"
    assert event_tags(os.path.join(out, "checkpoints", "eval"))["masks"] == [3, 6]


def test_the_reloaded_saved_model_gives_a_mask(trained, tmp_path):
    dataset, _, _, printed = trained
    export_dir = re.search(r"exported SavedModel: (\S+)", printed["export"].stdout).group(1)
    image = sorted(glob.glob(os.path.join(dataset, "test_images", "*.png")))[0]
    mask = str(tmp_path / "mask.png")
    said = journey.predict_with_saved_model(export_dir, image, mask)
    assert re.search(r"mask written to .*mask\.png \(the digit on [0-9.]+% of the pixels\)", said)
    with Image.open(mask) as picture:
        assert picture.size == (32, 32) and set(np.unique(picture)) <= {0, 255}


def test_predict_writes_a_mask_png_per_image(trained):
    dataset, out, commands, _ = trained
    predicted = run([*commands["predict"], *SMALL])
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    predictions_csv = os.path.join(out, "best", "predictions.csv")
    with open(predictions_csv, encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 10 and {"file", "mask", "foreground"} <= set(table[0])
    masks = journey.predicted_masks(predictions_csv)
    for row in table:
        assert 0 <= float(row["foreground"]) <= 1
        with Image.open(masks[row["file"]]) as mask:
            assert mask.format == "PNG" and mask.size == (32, 32)
            share = float(np.mean(np.asarray(mask) > 127))
        assert share == pytest.approx(float(row["foreground"]), abs=1e-6)
    figure = journey.draw_predictions(
        masks, os.path.join(dataset, "test_masks"), os.path.join(out, "predictions.png")
    )
    assert os.path.getsize(figure) > 0


def records_with(folder, bad):
    """Nine good records and ``bad`` (a serialized record) last, in ``folder``: one batch of
    ten holds them all, so the first training step reads ``bad``."""
    from library.data.records import RecordWriter

    writer = RecordWriter(folder, "train", num_shards=1)
    picture = (np.random.default_rng(0).uniform(0, 255, (64, 64, 3))).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    for index in range(9):
        writer.write(
            records.serialize_image(
                records.png_bytes(picture), f"{index}.png", mask=records.png_bytes(mask)
            )
        )
    writer.write(bad)
    writer.close()
    return os.path.join(folder, "train-*.tfrecord")


@pytest.mark.parametrize(
    "mask", [b"\x89PNG\r\n\x1a\n not a mask", None], ids=["corrupt", "missing"]
)
def test_a_corrupt_or_missing_mask_is_one_line_naming_the_record_and_key(mask, trained, tmp_path):
    dataset, _, _, _ = trained
    picture = records.png_bytes(np.zeros((64, 64, 3), np.uint8))
    bad = records.serialize_image(picture, "broken.png", mask=mask)
    train_files = records_with(str(tmp_path / "data"), bad)
    argv = journey.flags(
        train_files=train_files,
        eval_files=os.path.join(dataset, "validation-*.tfrecord"),
        model_dir=str(tmp_path / "model"),
        best_model_dir=str(tmp_path / "best"),
        train_steps="2",
        train_batch_size="10",
    )
    result = run([*argv, *SMALL])
    assert result.returncode == 2, result.stderr[-3000:]
    line = one_line(result.stderr)
    shard = glob.glob(train_files)[0]
    assert line.startswith(f"run.py: error: {shard}: record 9 (broken.png) ")
    assert records.MASK in line
    assert ("bytes that do not decode" if mask else "has no") in line
