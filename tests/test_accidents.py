"""What a new user does by accident: two runs in one folder, a resume that changes the config,
bad values and files, a bad image at predict time, Ctrl-C and SIGTERM, output fit to read."""

import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, jpeg_bytes, make_class_tree, run_script, textured_image

from library import checkpoints, plots, progress, schedule
from library.config import CHANGES_FILE


def smoke_argv(records, model_dir, *extra):
    return [
        "--config_set", "smoke",
        "--train_files", str(records / "train-*.tfrecord"),
        "--eval_files", str(records / "eval-*.tfrecord"),
        "--model_dir", str(model_dir), "--best_model_dir", str(model_dir) + "-best",
        "--progress", "log", *extra,
    ]  # fmt: skip


def start(argv):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "run.py"), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(model_dir, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and not checkpoints.numbered_checkpoints(str(model_dir)):
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    assert checkpoints.numbered_checkpoints(str(model_dir)), "no checkpoint in time"


def test_second_run_into_a_folder_is_refused_then_sigterm_saves_and_resumes(
    stripes_records, tmp_path
):
    model_dir = tmp_path / "model"
    long_run = smoke_argv(
        stripes_records, model_dir, "--train_steps", "5000", "--save_checkpoints_steps", "5",
        "--steps_between_evals", "5000",
    )  # fmt: skip
    first = start(long_run)
    try:
        wait_for_checkpoint(model_dir, first)
        second = run_script("run.py", *long_run, "--learning_rate", "0.0001")
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"is in use by another run (pid {first.pid}" in lines[0]
        # The refused run changed nothing: no config history, the saved sets of the first.
        assert not (model_dir / CHANGES_FILE).exists()
        assert "learning_rate: 0.001" in (model_dir / "hyperparameters.yaml").read_text()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    reached = checkpoints.numbered_checkpoints(str(model_dir))[0][0]
    assert f"stopped by SIGTERM at step {reached};" in lines[0]
    assert f"resumes from step {reached}" in lines[0]
    assert not (model_dir / ".lock").exists()  # released on the way out
    resumed = run_script("run.py", *long_run[:-6], "--train_steps", str(reached + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {reached} " in resumed.stdout and "resuming from" in resumed.stdout


def test_ctrl_c_saves_at_the_step_reached_and_a_stale_lock_is_taken_over(stripes_records, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    stale = {"host": socket.gethostname(), "pid": 2**22 + 12345, "started": "yesterday"}
    (model_dir / ".lock").write_text(json.dumps(stale))
    argv = smoke_argv(
        stripes_records, model_dir, "--train_steps", "5000", "--save_checkpoints_steps", "1000",
        "--steps_between_evals", "5000", "--log_steps", "3",
    )  # fmt: skip
    run = start(argv)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (model_dir / "train").exists():
            time.sleep(0.1)
        time.sleep(3)  # training, between periodic checkpoints (every 1000 steps)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "taking over the lock of a run that is gone" in out
    reached = checkpoints.numbered_checkpoints(str(model_dir))[0][0]
    assert 0 < reached < 1000  # saved at the step reached, not the last periodic checkpoint
    assert err.strip().splitlines() == [
        f"run.py: stopped by SIGINT at step {reached}; checkpoint saved "
        f"({model_dir}/ckpt-{reached}): the same command resumes from step {reached}"
    ]


@pytest.fixture(scope="module")
def trained(stripes_records, tmp_path_factory):
    """A small run of 4 steps, for the resume and read-only cases."""
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    result = run_script("run.py", *smoke_argv(stripes_records, model_dir))
    assert result.returncode == 0, result.stderr
    return model_dir


def test_a_refused_resume_leaves_the_saved_configuration_untouched(stripes_records, trained):
    saved = (trained / "hyperparameters.yaml").read_text()
    refused = run_script(
        "run.py", *smoke_argv(stripes_records, trained, "--encoder", "resnet", "--train_steps", "6")
    )
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "does not restore" in refused.stderr or "none of" in refused.stderr
    assert (trained / "hyperparameters.yaml").read_text() == saved
    assert not (trained / CHANGES_FILE).exists()
    # A plain resume reports nothing about a configuration that never trained.
    again = run_script("run.py", *smoke_argv(stripes_records, trained, "--train_steps", "4"))
    assert again.returncode == 0 and "configuration changed" not in again.stdout


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--encoder", "smal_cnn"], "encoder must be one of small_cnn, resnet, hub, got 'smal_cnn' (did you mean 'small_cnn'?)"),
        (["--train_batch_size", "-4"], "train_batch_size must be in [1, inf), got -4"),
        (["--best_metric", "acuracy"], "got 'acuracy' (did you mean 'accuracy'?)"),
        (["--dropout_rate", "1.5"], "dropout_rate must be in [0, 1), got 1.5"),
    ],
)  # fmt: skip
def test_values_tensorflow_would_reject_are_refused_before_it_loads(argv, fragment):
    started = time.perf_counter()
    result = run_script("run.py", *argv)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"run.py: error: --{argv[0][2:]}: {fragment}"
    ] or (len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert elapsed < 20  # no TensorFlow import: a sanity bound, not a benchmark


def test_image_files_given_as_train_files_are_named(tmp_path, stripes_records):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(jpeg_bytes(textured_image(20, 20, seed=1)))
    result = run_script(
        "run.py",
        *smoke_argv(stripes_records, tmp_path / "m"),
        "--train_files",
        str(photos / "*.jpg"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{photos / 'cat.jpg'}: a JPEG image, not TFRecord shards" in lines[0]
    assert "convert_dataset.py" in lines[0]


def test_converter_refuses_an_empty_class_and_names_stray_files_and_reasons(tmp_path):
    tree = tmp_path / "images"
    make_class_tree(str(tree), per_class=3)
    (tree / "empty").mkdir()
    (tree / "stray.jpg").write_bytes(jpeg_bytes(textured_image(10, 10, seed=2)))
    argv = [
        "--dataset_dir",
        str(tree),
        "--tfrecord_filename",
        "t",
        "--tfrecord_dir",
        str(tmp_path / "out"),
    ]
    refused = run_script("convert_dataset.py", *argv)
    assert refused.returncode == 2
    assert f"{tree / 'empty'}: class folder holds no images" in refused.stderr
    (tree / "empty").rmdir()
    (tree / "vertical" / "broken.jpg").write_bytes(b"not an image at all")
    converted = run_script("convert_dataset.py", *argv)
    assert converted.returncode == 0, converted.stderr
    assert "ignored 1 files at the top of" in converted.stderr and "stray.jpg" in converted.stderr
    manifest = json.loads((tmp_path / "out" / "t.manifest.json").read_text())
    assert manifest["ignored"] == ["stray.jpg"]
    (reason,) = [s["reason"] for s in manifest["skipped"]]
    assert reason == "cannot decode: not an image, or a format PIL cannot read"
    assert "object at 0x" not in converted.stderr


def test_predict_skips_a_bad_image_names_the_checkpoint_and_writes_a_csv(
    trained, stripes_records, tmp_path
):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(jpeg_bytes(textured_image(30, 30, seed=i)))
    whole = jpeg_bytes(textured_image(64, 64, seed=9))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    extra = tmp_path / "extra.jpg"
    extra.write_bytes(jpeg_bytes(textured_image(30, 30, seed=7)))
    result = run_script(
        "run.py", "--config_set", "smoke", "--mode", "predict", "--model_dir", str(trained),
        "--labels_file", str(stripes_records / "labels.txt"),
        "--predict_files", f"{folder},{extra}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"skipped {folder / 'truncated.jpg'}: cannot decode: truncated (the file ends before the image does)"
    ]
    assert f"predicting 4 images with {trained}/ckpt-4" in result.stdout
    assert "train_files:" not in result.stdout  # a short header, not the whole configuration
    with open(trained / "predictions.csv", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(os.path.basename(r["file"]) for r in rows) == [
        "0.jpg",
        "1.jpg",
        "2.jpg",
        "extra.jpg",
    ]
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["class"] in "01" for r in rows)


def test_throughput_leaves_evaluation_time_out():
    plan = schedule.Plan(10, 100, 10, 10, 10)
    meter = progress.Progress("log", 100, plan, 8, 0)
    meter.last_time -= 1.0  # one second of training for ten steps...
    meter.pause()
    time.sleep(0.5)  # ...then half a second of evaluation
    meter.resume()
    with contextlib.redirect_stdout(io.StringIO()):
        figures = meter.log(10, {"loss": 1.0, "learning_rate": 0.1})
    assert figures["steps_per_sec"] == pytest.approx(10.0, rel=0.1)


def test_evaluation_lines_start_on_their_own_line_under_the_bar(capsys):
    meter = progress.Progress("bar", 10, schedule.Plan(10, 10, 5, 5, 5), 8, 0)
    meter.advance(5)
    meter.say("eval at step 5: loss 0.5")
    out = capsys.readouterr().out
    assert "\neval at step 5" in out


def test_loss_plot_stays_readable_when_the_first_evaluation_is_far_above(tmp_path):
    records = [
        {"epoch": 1, "train_loss": 1.2, "eval_loss": 40.0},
        {"epoch": 2, "train_loss": 0.3, "eval_loss": 0.4},
        {"epoch": 3, "train_loss": 0.2, "eval_loss": 0.35},
    ]
    assert plots.loss_scale([r["eval_loss"] for r in records]) == "log"
    assert plots.loss_scale([0.5, 0.4, 0.3]) == "linear"
    written = plots.plot_metrics(records, str(tmp_path))
    assert os.path.basename(written[0]) == "loss.png"


def test_sample_predictions_mark_the_wrong_ones_in_red(tmp_path):
    import numpy as np
    from PIL import Image

    grey = np.full((24, 20, 20, 1), 0.5, np.float32)  # grey images: any red is the marking
    labels = np.arange(24) % 3

    def red_pixels(predicted, name):
        path = plots.plot_sample_predictions(
            grey, labels, predicted, np.ones(24), ["a", "b", "c"], str(tmp_path / name)
        )
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return int(((red > 180) & (green < 90) & (blue < 90)).sum())

    assert red_pixels(labels, "right.png") == 0
    wrong = labels.copy()
    wrong[5] = (wrong[5] + 1) % 3
    assert red_pixels(wrong, "one_wrong.png") > 100  # its title and a frame around it


def test_readme_quick_start_uses_the_project_venv():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        quick_start = stream.read().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ".venv/bin/python run.py" in quick_start
