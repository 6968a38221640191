"""What a new user does by accident: two runs in one folder, Ctrl-C and SIGTERM, values
TensorFlow would reject, image files where records belong."""

import json
import signal
import socket
import time

import pytest
from support import (
    argv,
    declarations,
    jpeg_bytes,
    one_line,
    run_cli,
    start_process,
    textured_image,
)

from library.config import CHANGES_FILE
from library.outputs import checkpoints


def wait_for_checkpoint(model_dir, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and not checkpoints.numbered_checkpoints(str(model_dir)):
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    assert checkpoints.numbered_checkpoints(str(model_dir)), "no checkpoint in time"


def test_second_run_into_a_folder_is_refused_then_sigterm_saves_and_resumes(
    stripes_records, tmp_path
):
    model_dir = tmp_path / "model"
    long_run = argv(
        stripes_records, tmp_path, "--train_steps", "50000", "--save_checkpoints_steps", "5",
        "--steps_between_evals", "50000",
    )  # fmt: skip
    first = start_process(*long_run)
    try:
        wait_for_checkpoint(model_dir, first)
        second = run_cli(*long_run, "--learning_rate", "0.0001")
        assert second.returncode == 2, second.stderr
        assert f"is in use by another run (pid {first.pid}" in one_line(second.stderr)
        # The refused run changed nothing: no config history, the saved sets of the first.
        assert not (model_dir / CHANGES_FILE).exists()
        assert "learning_rate: 0.003" in (model_dir / "hyperparameters.yaml").read_text()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, err
    line = one_line(err)
    reached = checkpoints.numbered_checkpoints(str(model_dir))[0][0]
    assert f"stopped by SIGTERM at step {reached};" in line
    assert f"resumes from step {reached}" in line
    assert not (model_dir / ".lock").exists()  # released on the way out
    resumed = run_cli(*long_run, "--train_steps", str(reached + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {reached} " in resumed.stdout and "resuming from" in resumed.stdout


def test_ctrl_c_saves_at_the_step_reached_and_a_stale_lock_is_taken_over(stripes_records, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    stale = {"host": socket.gethostname(), "pid": 2**22 + 12345, "started": "yesterday"}
    (model_dir / ".lock").write_text(json.dumps(stale))
    command = argv(
        stripes_records, tmp_path, "--train_steps", "50000", "--save_checkpoints_steps", "10000",
        "--steps_between_evals", "50000", "--log_steps", "3",
    )  # fmt: skip
    run = start_process(*command)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (model_dir / "train").exists():
            assert run.poll() is None, run.communicate()
            time.sleep(0.05)
        time.sleep(2)  # training, between periodic checkpoints (every 10000 steps)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    assert "taking over the lock of a run that is gone" in out
    reached = checkpoints.numbered_checkpoints(str(model_dir))[0][0]
    assert 0 < reached < 10000  # saved at the step reached, not the last periodic checkpoint
    assert err.strip().splitlines() == [
        f"run.py: stopped by SIGINT at step {reached}; checkpoint saved "
        f"({model_dir}/ckpt-{reached}): the same command resumes from step {reached}"
    ]


def field(name):
    return next(f for f in declarations.HYPERPARAMETERS if f.name == name)


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--encoder", "con"], f"encoder must be one of {', '.join(field('encoder').choices)}, got 'con' (did you mean 'conv'?)"),
        (["--train_batch_size", "-4"], "train_batch_size must be in [1, inf), got -4"),
        (["--best_metric", "acuracy"], "got 'acuracy' (did you mean 'accuracy'?)"),
        (["--dropout_rate", "1.5"], "dropout_rate must be in [0, 1), got 1.5"),
    ],
)  # fmt: skip
def test_values_tensorflow_would_reject_are_refused_in_one_line(flags, fragment):
    """(That this happens before TensorFlow loads: test_config.py.)"""
    result = run_cli(*argv(None, None, *flags))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("run.py: error: ") and fragment in line
    assert result.stdout == ""


def test_image_files_given_as_train_files_are_named(tmp_path, stripes_records):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(jpeg_bytes(textured_image(20, 20, seed=1)))
    result = run_cli(*argv(stripes_records, tmp_path, "--train_files", str(photos / "*.jpg")))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"{photos / 'cat.jpg'}: a JPEG image, not TFRecord shards" in line
    assert "convert_dataset.py" in line


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_lock_is_whole_from_the_moment_it_exists(tmp_path, monkeypatch, hard_links):
    """The lock is written aside and linked into place (a process killed while taking it
    leaves no empty lock to block its folder), or created exclusively where the file system
    has no hard links: either way it holds its record, nothing staged is left, and a second
    taker is refused, naming the first."""
    import os

    from library.outputs.lock import FolderLock, LockError

    if not hard_links:

        def no_links(*args):
            raise PermissionError("hard links not supported")

        monkeypatch.setattr(os, "link", no_links)
    with FolderLock(str(tmp_path)):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # no staged file left
        with pytest.raises(LockError, match=f"in use by another run \\(pid {os.getpid()}"):
            FolderLock(str(tmp_path)).acquire()
    assert not (tmp_path / ".lock").exists()
