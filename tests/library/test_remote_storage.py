"""model_dir and best_model_dir on another file system TensorFlow serves: its in-memory
``ram://`` one here, as gs:// would be (every output of a run goes through tf.io.gfile)."""

import json

import tensorflow as tf
from support import argv, run_cli

from library.outputs import checkpoints
from library.recorders.metrics_log import read_metrics


def test_a_run_trains_resumes_keeps_the_best_and_exports_on_ram(stripes_records):
    folder = "ram://remote-run"
    command = argv(stripes_records, None, "--model_dir", f"{folder}/model",
                   "--best_model_dir", f"{folder}/best", config_set="full")  # fmt: skip
    trained = run_cli(*command)
    assert trained.returncode == 0, trained.stderr
    model_dir, best_dir = f"{folder}/model", f"{folder}/best"
    assert [n for n, _ in checkpoints.numbered_checkpoints(model_dir)] == [4, 2]
    assert [r["step"] for r in read_metrics(model_dir)] == [2, 4]
    for name in ("project.yaml", "hyperparameters.yaml", "provenance.json", "model_summary.txt",
                 "plots/loss.png"):  # fmt: skip
        assert tf.io.gfile.exists(f"{model_dir}/{name}"), name
    with tf.io.gfile.GFile(f"{best_dir}/best.json") as stream:
        best = json.load(stream)
    assert best["saved_model_step"] == best["step"]
    assert tf.io.gfile.exists(f"{best_dir}/saved_model/saved_model.pb")
    resumed = run_cli(*command, "--train_steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {model_dir}/ckpt-4 at step 4" in resumed.stdout
    assert [r["step"] for r in read_metrics(model_dir)] == [2, 4, 6]
    exported = run_cli(*command, "--mode", "export", "--export_dir", f"{folder}/export")
    assert exported.returncode == 0, exported.stderr
    (path,) = tf.io.gfile.glob(f"{folder}/export/*")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    assert "image_bytes" in serve.structured_input_signature[1]
