"""``--mode predict`` for any output, on the tabular regression (tests/projects/regression)
trained once: every key of predictions_fn written (encoded images and large arrays as files
named in the CSV), an earlier CSV never replaced, folders read without their subfolders
unless asked, bad rows named by their real line and skipped, a project's reader added to the
library's, and the image kit's reader leaving other files to them."""

import csv
import inspect
import json
import os
import re
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from support import REGRESSION, one_line, regression_argv, run_cli, textured_image, variant

from library.contract import project_functions
from library.vision import serving


@dataclass(frozen=True)
class Trained:
    folder: str
    data: str

    @property
    def model_dir(self):
        return os.path.join(self.folder, "model")

    def predict(self, files, *extra, project=REGRESSION, model_dir=None):
        """Predict ``files`` (a comma list of paths) with the latest checkpoint."""
        argv = regression_argv(self.data, self.folder, "--mode", "predict")
        argv += ["--predict_files", ",".join(str(f) for f in files)]
        argv += ["--model_dir", model_dir or self.model_dir, *extra]
        return run_cli(*argv, project=project)


@pytest.fixture(scope="module")
def trained(regression_data, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("predict-run"))
    argv = regression_argv(regression_data, folder, "--train_steps", "2")
    result = run_cli(*argv, project=REGRESSION)
    assert result.returncode == 0, result.stderr
    return Trained(folder, str(regression_data))


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def written_rows(path):
    return [os.path.basename(r["file"]) for r in read_csv(path)]


# -- every key of predictions_fn, whatever it is -------------------------------------------


def every_kind(outputs, params):
    """A PNG per example (a small uint8 image made from y), a large and a small array, text,
    and bytes that are neither text nor an image, under a key no file name could hold."""
    y = outputs["y"]
    level = tf.cast(tf.clip_by_value(tf.abs(y) * 40.0, 0.0, 255.0), tf.uint8)
    images = tf.tile(level[:, None, None, None], [1, 6, 8, 1])
    masks = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
    return {
        "y": y,
        "quantiles": outputs["quantiles"],
        "mask": masks,
        "field": tf.tile(y[:, None, None], [1, 16, 16]),
        "label": tf.where(y > 0, "up", "down"),
        "raw/bytes": tf.fill(tf.shape(y), b"\xff\x00raw"),
    }


def test_every_key_is_written_images_and_large_arrays_as_files(trained, tmp_path):
    out = tmp_path / "out" / "kinds.csv"
    project = variant(REGRESSION, predictions_fn=every_kind)
    eval_csv = os.path.join(trained.data, "eval.csv")  # 64 rows: two batches of 32
    result = trained.predict([eval_csv], "--predictions_file", str(out), project=project)
    assert result.returncode == 0, result.stderr
    table = read_csv(out)
    assert len(table) == 64
    assert list(table[0]) == ["file", "y", "quantiles", "mask", "field", "label", "raw/bytes"]
    folder = tmp_path / "out" / "kinds"  # named after the CSV
    for suffix in ("mask.png", "field.npy"):
        names = sorted(p.name for p in folder.glob(f"*-{suffix}"))
        assert names == [f"{i:06d}-{suffix}" for i in range(64)]
    assert len(os.listdir(folder)) == 3 * 64
    for index, row in enumerate(table):
        assert row["mask"] == f"kinds/{index:06d}-mask.png"  # relative to the CSV's folder
        with Image.open(out.parent / row["mask"]) as image:
            assert image.format == "PNG" and image.size == (8, 6)
        field = np.load(out.parent / row["field"])
        assert row["field"].endswith(".npy") and field.shape == (16, 16)
        np.testing.assert_allclose(field, float(row["y"]), atol=1e-5)
        assert len(json.loads(row["quantiles"])) == 2  # a small array: a JSON list
        assert row["label"] == ("up" if float(row["y"]) > 0 else "down")
        assert re.fullmatch(rf"kinds/{index:06d}-raw_bytes-[0-9a-f]{{8}}\.bin", row["raw/bytes"])
        assert (out.parent / row["raw/bytes"]).read_bytes() == b"\xff\x00raw"
    assert len(list(folder.glob("*.png"))) == 64  # one per input
    # One line per prediction for the first 20, then the CSV only; the files counted.
    shown = [line for line in result.stdout.splitlines() if line.startswith(eval_csv)]
    assert len(shown) == 20 and "mask kinds/000000-mask.png" in shown[0]
    final = f"predictions of 64 examples written to {out} and 192 files in {folder}/"
    assert result.stdout.strip().splitlines()[-1] == final
    assert not [p for p in os.listdir(out.parent) if ".tmp-" in p]  # nothing left behind


def test_predictions_with_files_go_to_another_file_system(trained):
    out = "ram://predictions-remote/run/kinds.csv"
    project = variant(REGRESSION, predictions_fn=every_kind)
    eval_csv = os.path.join(trained.data, "eval.csv")
    result = trained.predict([eval_csv], "--predictions_file", out, project=project)
    assert result.returncode == 0, result.stderr
    with tf.io.gfile.GFile(out) as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 64
    with tf.io.gfile.GFile(f"ram://predictions-remote/run/{table[5]['mask']}", "rb") as stream:
        assert stream.read(4) == b"\x89PNG"


# -- an earlier CSV is never replaced ------------------------------------------------------


def test_existing_predictions_are_refused_in_one_line_and_left_as_they_are(trained, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(trained.model_dir, copy)
    eval_csv = os.path.join(trained.data, "eval.csv")
    first = trained.predict([eval_csv], model_dir=str(copy))
    assert first.returncode == 0, first.stderr
    beside = copy / "predictions.csv"  # beside the checkpoint, by default
    before = beside.read_bytes()
    again = trained.predict([eval_csv], model_dir=str(copy))
    assert again.returncode == 2
    line = one_line(again.stderr)
    assert f"{beside}: it exists" in line and "--predictions_file" in line and "remove it" in line
    assert beside.read_bytes() == before
    assert "predicting" not in again.stdout  # refused before anything was predicted
    # Elsewhere it goes; a folder of files by the CSV's name is refused as well.
    elsewhere = tmp_path / "other" / "p.csv"
    moved = trained.predict([eval_csv], "--predictions_file", str(elsewhere), model_dir=str(copy))
    assert moved.returncode == 0, moved.stderr
    assert len(read_csv(elsewhere)) == 64 and beside.read_bytes() == before
    (tmp_path / "other" / "q").mkdir()
    taken = trained.predict([eval_csv], "--predictions_file", str(tmp_path / "other" / "q.csv"))
    assert taken.returncode == 2
    assert f"{tmp_path / 'other' / 'q'}: the folder of" in one_line(taken.stderr)
    assert not (tmp_path / "other" / "q.csv").exists()


def test_nothing_to_predict_is_one_line_and_leaves_no_file(trained, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\nx,1,1\n")
    out = tmp_path / "out" / "p.csv"
    result = trained.predict([bad], "--predictions_file", str(out))
    assert result.returncode == 2
    assert "nothing to predict in 1 files (1 examples skipped)" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()  # not even its folder


# -- folders, bad rows, a project's reader ------------------------------------------------


def test_a_folder_is_read_without_its_subfolders_unless_asked(trained, tmp_path):
    folder = tmp_path / "rows"
    (folder / "sub").mkdir(parents=True)
    (folder / "top.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    (folder / "sub" / "deep.csv").write_text("a,b,c\n0,0,0\n")
    flat = trained.predict([folder], "--predictions_file", str(tmp_path / "flat.csv"))
    assert flat.returncode == 0, flat.stderr
    assert written_rows(tmp_path / "flat.csv") == ["top.csv:2", "top.csv:3"]
    deeper = ("--predict_recursive", "true", "--predictions_file", str(tmp_path / "deep.csv"))
    deep = trained.predict([folder], *deeper)
    assert deep.returncode == 0, deep.stderr
    assert written_rows(tmp_path / "deep.csv") == ["deep.csv:2", "top.csv:2", "top.csv:3"]


def test_bad_utf8_rows_are_named_by_their_real_line_and_skipped(trained, tmp_path):
    rows = tmp_path / "rows.csv"
    # line 3 blank, line 5 not UTF-8, a cell over lines 6-7
    rows.write_bytes(b'a,b,c\n1,2,3\n\n1,2,3\n\xff,2,3\n"0.5\n",2,3\n-1,0,1\n')
    lines = tmp_path / "rows.jsonl"
    row = b'{"a": 1, "b": 2, "c": 3}\n'
    lines.write_bytes(row + b"\n" + row.replace(b"1", b'"\xe9"') + row)  # line 3 not UTF-8
    out = tmp_path / "p.csv"
    result = trained.predict([rows, lines], "--predictions_file", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"skipped {rows}:5: not UTF-8 text (in a)",
        f"skipped {lines}:3: not UTF-8 text (byte 8 of the line)",
    ]
    table = read_csv(out)
    names = [os.path.basename(r["file"]) for r in table]
    assert names == [f"rows.csv:{n}" for n in (2, 4, 6, 8)] + ["rows.jsonl:1", "rows.jsonl:4"]
    assert len({r["y"] for r in table if r["file"].endswith((":2", ":4", ":1"))}) == 1
    assert (
        "predictions of 6 examples written to" in result.stdout and "(2 skipped)" in result.stdout
    )


def read_abc(path, inputs, params):
    """A project's reader of ``.abc`` files (``a b c`` per line); None for any other."""
    if not path.endswith(".abc"):
        return None

    def rows():
        with open(path, encoding="utf-8") as stream:
            for number, text in enumerate(stream, 1):
                values = [np.float32(v) for v in text.split()]
                if len(values) != 3:
                    yield f"{path}:{number}", "not three numbers"
                    continue
                yield f"{path}:{number}", dict(zip("abc", values, strict=True))

    return rows()


def test_a_project_reader_adds_to_the_library_readers(trained, tmp_path):
    (tmp_path / "x.abc").write_text("1 2 3\n1 2\n")
    (tmp_path / "y.csv").write_text("a,b,c\n1,2,3\n")
    project = variant(REGRESSION, predict_reader=read_abc)
    out = tmp_path / "p.csv"
    files = [tmp_path / "x.abc", tmp_path / "y.csv"]
    result = trained.predict(files, "--predictions_file", str(out), project=project)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"skipped {tmp_path / 'x.abc'}:2: not three numbers"
    table = read_csv(out)
    assert [os.path.basename(r["file"]) for r in table] == ["x.abc:1", "y.csv:2"]
    assert table[0]["y"] == table[1]["y"]  # the same row, from either reader
    assert project_functions(REGRESSION).predict_reader is None


def test_the_image_kit_reader_leaves_other_files_to_the_library(tmp_path):
    assert serving.read_image_file(str(tmp_path / "rows.csv"), {}, None) is None
    assert not inspect.isgeneratorfunction(serving.read_image_file)
    image = tmp_path / "a.PNG"
    textured_image(12, 10, seed=1).save(image, format="PNG")
    ((name, values),) = list(serving.read_image_file(str(image), {}, None))
    assert name == str(image) and values[serving.IMAGE_BYTES].item() == image.read_bytes()
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    ((_, reason),) = list(serving.read_image_file(str(tmp_path / "bad.jpg"), {}, None))
    assert reason.startswith("cannot decode")


def refusing_999(inputs, params):
    """The regression's serving_fn, with an assertion TensorFlow fails for ``a == 999`` (as
    it fails on an image it cannot decode)."""
    check = tf.debugging.assert_none_equal(inputs["a"], 999.0, message="a is 999")
    with tf.control_dependencies([check]):
        return {name: tf.identity(value) for name, value in inputs.items()}


def test_a_batch_tensorflow_rejects_is_predicted_row_by_row_without_the_culprit(trained, tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,c\n1,2,3\n999,0,0\n4,5,6\n")
    out = tmp_path / "p.csv"
    project = variant(REGRESSION, serving_fn=refusing_999)
    result = trained.predict([rows], "--predictions_file", str(out), project=project)
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"skipped {rows}:3: TensorFlow cannot read it (") and "a is 999" in line
    assert written_rows(out) == ["rows.csv:2", "rows.csv:4"]
    assert (
        "predictions of 2 examples written to" in result.stdout and "(1 skipped)" in result.stdout
    )
