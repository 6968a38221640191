"""Scale: two MultiWorkerMirrored workers on loopback, the tf.data service, mixed precision
and profiling, through run.py and the library as a user runs them."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from support import ROOT, argv, estimator, one_line, params, run_cli, specs, start_process

# A worker as run.py starts it, which also prints a digest of the weights it trained.
WORKER = r"""
import json, os, sys
sys.path[:0] = [{root!r}, os.path.join({root!r}, "tests")]
from library.cli import main
from library.recorders.base import Recorder
from projects import classifier
from support import variant

built = []
own = classifier.load_functions()

def recording_model_fn(params):
    built.append(own.model_fn(params))
    return built[-1]

class Tracker(Recorder):  # a project's tracker, one file for the whole run (TRACKER)
    def on_evaluation(self, evaluation):
        with open(os.environ["TRACKER"], "a") as stream:
            stream.write(f"{{evaluation.step}}\n")

callbacks = own.callbacks_fn
if os.environ.get("TRACKER"):
    callbacks = lambda params: [*own.callbacks_fn(params), Tracker()]
project = variant(classifier, model_fn=recording_model_fn, callbacks_fn=callbacks)
status = main(sys.argv[1:], project)
if status == 0:  # the first model built is the one that trains
    print("WEIGHTS " + json.dumps([w.numpy().astype(float).ravel()[:4].tolist() for w in built[0].weights]))
sys.exit(status)
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        for s in sockets:
            stack.enter_context(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


class Cluster:
    """Two workers of one run.py command on loopback ports, each with its TF_CONFIG; every
    process is killed when the block ends, however it ends."""

    def __init__(self, work, argv):
        self.work, self.argv, self.processes = work, argv, []

    def start(self, name, **env_vars):
        cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
        self.processes, self.logs = [], []
        for index in range(2):
            task = {"type": "worker", "index": index}
            env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": task}))
            env.update(env_vars)
            log = open(os.path.join(self.work, f"{name}-{index}.log"), "w+")  # noqa: SIM115
            command = [sys.executable, "-c", WORKER.format(root=ROOT), *self.argv]
            self.processes.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            )
            self.logs.append(log)
        return self

    def wait(self, timeout=300):
        deadline = time.time() + timeout
        for process in self.processes:
            process.wait(timeout=max(1, deadline - time.time()))
        return [p.returncode for p in self.processes]

    def output(self, index):
        self.logs[index].seek(0)
        return self.logs[index].read()

    def kill(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def cluster_argv(records, tmp_path, *extra):
    return argv(
        records, tmp_path, "--distribution", "multi_worker", "--collective_timeout_secs", "60",
        *extra,
    )  # fmt: skip


def weights_of(output):
    lines = [line for line in output.splitlines() if line.startswith("WEIGHTS ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("WEIGHTS ") :])


def test_a_sigterm_to_one_worker_stops_both_at_one_step_and_they_resume_as_one(
    stripes_records, tmp_path
):
    """Preemption of the worker that is not the chief: every worker agrees on the step,
    saves once and exits 143; started again, both resume there and finish as one model; a
    tracker the project shares between them gets each evaluation once (the chief's)."""
    from library.outputs import checkpoints
    from library.recorders import metrics_log as summaries

    model_dir = str(tmp_path / "model")
    tracker = str(tmp_path / "tracker.txt")
    command = cluster_argv(
        stripes_records, tmp_path,
        "--train_steps", "16", "--save_checkpoints_steps", "4", "--steps_between_evals", "4",
        "--best_saved_model", "true",
        # Batch-norm statistics are each worker's own between checkpoints; re-estimated
        # before each save, they are all-reduced: the same on every worker.
        "--batch_norm_refresh_batches", "2",
    )  # fmt: skip
    with Cluster(str(tmp_path), command) as cluster:
        cluster.start("first", TRACKER=tracker)
        wait_for(lambda: checkpoints.numbered_checkpoints(model_dir), 240, "a first checkpoint")
        cluster.processes[1].send_signal(signal.SIGTERM)  # the worker that is not the chief
        sent = time.time()
        assert cluster.wait(timeout=60) == [143, 143], cluster.output(0)[-3000:]
        assert time.time() - sent < 30
        said = [re.search(r"stopped by SIGTERM.* at step (\d+)", cluster.output(i)) for i in (0, 1)]  # fmt: skip
        assert all(said), (cluster.output(0)[-2000:], cluster.output(1)[-2000:])
        stopped_at = {int(m.group(1)) for m in said}
        assert len(stopped_at) == 1 and "to another worker" in cluster.output(0)
        stopped_at = stopped_at.pop()
        assert checkpoints.numbered_checkpoints(model_dir)[0][0] == stopped_at < 16
        assert cluster.start("again", TRACKER=tracker).wait() == [0, 0], cluster.output(0)[-3000:]
        outputs = [cluster.output(0), cluster.output(1)]
    # Both resumed from the agreed checkpoint.
    resumed_at = {int(re.search(r"resuming from \S+ at step (\d+)", o).group(1)) for o in outputs}
    assert resumed_at == {stopped_at}, resumed_at
    # One model on both workers: the same weights, bit for bit.
    assert weights_of(outputs[0]) == weights_of(outputs[1])
    # One set of outputs, the chief's; the other worker left nothing behind.
    assert checkpoints.numbered_checkpoints(model_dir)[0][0] == 16
    assert not [n for n in os.listdir(model_dir) if n.startswith(".workertemp")]
    steps = [r["step"] for r in summaries.read_metrics(model_dir)]
    assert steps == [4, 8, 12, 16]
    with open(tracker, encoding="utf-8") as stream:
        assert stream.read().split() == ["4", "8", "12", "16"]
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    assert best["saved_model_step"] == best["step"]
    assert (tmp_path / "best" / "saved_model" / "saved_model.pb").exists()


def test_a_worker_that_dies_stops_the_other_with_one_line(stripes_records, tmp_path):
    from library.outputs import checkpoints

    model_dir = str(tmp_path / "model")
    command = cluster_argv(
        stripes_records, tmp_path,
        "--train_steps", "100000", "--save_checkpoints_steps", "4", "--steps_between_evals",
        "100000", "--collective_timeout_secs", "20",
    )  # fmt: skip
    with Cluster(str(tmp_path), command) as cluster:
        cluster.start("run")
        wait_for(lambda: checkpoints.numbered_checkpoints(model_dir), 240, "a first checkpoint")
        cluster.processes[1].send_signal(signal.SIGKILL)
        started = time.time()
        cluster.processes[0].wait(timeout=120)
        stopped_after = time.time() - started
        output = cluster.output(0)
    assert cluster.processes[0].returncode == 1, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert re.match(r"run\.py: error: /job:worker/(replica:0/)?task:1 stopped answering", last), (
        last
    )
    assert f"resume from the last checkpoint in {model_dir}" in last
    assert "Traceback" not in output
    assert stopped_after < 60


def test_multi_worker_without_tf_config_is_one_line(stripes_records, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = run_cli(*cluster_argv(stripes_records, tmp_path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.endswith('"task": {"type": "worker", "index": 0}}'), line
    assert "distribution multi_worker needs TF_CONFIG" in line


@contextlib.contextmanager
def servers(*commands):
    """Processes started as a user starts them, killed by PID at the end."""
    processes = []
    try:
        for argv, env, log in commands:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "library.cli.data_service", *argv],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=ROOT,
                )
            )  # fmt: skip
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_tf_data_service_started_worker_first_trains_and_a_lost_worker_ends_the_run(
    stripes_records, tmp_path
):
    """As a cluster scheduler starts them: the worker before its dispatcher (it waits, saying
    so). Training reads from the service; then a run whose only worker is killed mid-run
    ends within data_service_timeout_secs with one line, its checkpoint kept."""
    from library.outputs import checkpoints

    dispatcher_port, worker_port = free_ports(2)
    names = ("dispatcher", "worker")
    logs = [open(tmp_path / f"{name}.log", "w+") for name in names]  # noqa: SIM115
    journal = tmp_path / "journal"
    dispatcher = (
        ["dispatcher", "--port", str(dispatcher_port), "--work_dir", str(journal)], {}, logs[0]
    )  # fmt: skip
    worker = (
        ["worker", "--port", str(worker_port), "--dispatcher_address", f"localhost:{dispatcher_port}"],
        {"TF_CPP_MIN_LOG_LEVEL": "0"},  # the worker's own log says what it read
        logs[1],
    )  # fmt: skip

    def said(log, text):
        log.seek(0)
        return text in log.read()

    address = f"grpc://localhost:{dispatcher_port}"
    with servers(worker) as (worker_process,):
        wait_for(lambda: said(logs[1], "waiting for the dispatcher at"), 60, "the worker to wait")
        with servers(dispatcher) as (dispatcher_process,):
            wait_for(lambda: said(logs[0], "dispatcher listening on"), 120, "the dispatcher")
            wait_for(lambda: said(logs[1], "worker listening on"), 120, "the worker")
            result = run_cli(*argv(stripes_records, tmp_path, "--data_service_address", address))
            assert result.returncode == 0, result.stderr[-3000:]
            assert f"training input from the tf.data service at {address}" in result.stdout
            assert checkpoints.numbered_checkpoints(str(tmp_path / "model"))[0][0] == 4
            assert said(logs[1], "tf_record_dataset_op"), "the service worker read no TFRecords"
            assert any(journal.iterdir())  # the dispatcher's state, for a restart

            long_run = argv(
                stripes_records, tmp_path / "lost", "--data_service_address", address,
                "--train_steps", "100000", "--steps_between_evals", "100000",
                "--save_checkpoints_steps", "50", "--data_service_timeout_secs", "3",
            )  # fmt: skip
            trainer = start_process(*long_run)
            try:
                wait_for(lambda: (tmp_path / "lost" / "model" / "checkpoint").exists(), 120, "a checkpoint")  # fmt: skip
                worker_process.kill()
                _, err = trainer.communicate(timeout=60)  # bounded: never a hang
            finally:
                if trainer.poll() is None:
                    trainer.kill()
            assert trainer.returncode == 1, err[-3000:]
            assert "(data_service_timeout_secs)" in one_line(err) or "lost" in one_line(err)
            assert "it resumes from step" in one_line(err)
            assert checkpoints.numbered_checkpoints(str(tmp_path / "lost" / "model"))
            dispatcher_process.send_signal(signal.SIGTERM)  # servers stop on SIGTERM
            assert dispatcher_process.wait(timeout=30) == 0


def test_a_data_service_address_where_nothing_answers_is_one_line(stripes_records, tmp_path):
    (port,) = free_ports(1)
    started = time.time()
    result = run_cli(*argv(stripes_records, tmp_path, "--data_service_address", f"grpc://localhost:{port}"))  # fmt: skip
    assert result.returncode == 2 and time.time() - started < 120
    line = one_line(result.stderr)
    assert line.startswith(f"run.py: error: data_service_address grpc://localhost:{port}: nothing")
    assert "python -m library.cli.data_service dispatcher" in line
    malformed = run_cli(*argv(None, None, "--data_service_address", "localhost"))
    assert malformed.returncode == 2
    assert "data_service_address must be grpc://HOST:PORT" in one_line(malformed.stderr)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_in_16_bits_and_restores_into_float32(
    policy, stripes_records, tmp_path
):
    import keras
    import tensorflow as tf
    from projects.classifier import functions

    from library.engine.estimator import train_and_evaluate
    from library.recorders import metrics_log as summaries

    built = []

    def recording_model_fn(run_params):
        built.append(functions.model_fn(run_params))
        return built[-1]

    run_params = params(stripes_records, tmp_path, mixed_precision=policy)
    train, evaluation = specs(run_params, 4)
    learner = estimator(run_params, model_fn=recording_model_fn)
    assert train_and_evaluate(learner, train, evaluation) == 4
    model = built[0]  # the model that trained
    convolution = next(x for x in model.layers if isinstance(x, keras.layers.Conv2D))
    assert convolution.compute_dtype == policy.removeprefix("mixed_")
    assert model.get_layer("logits").compute_dtype == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    latest = tf.train.latest_checkpoint(run_params.model_dir)
    names = [name for name, _ in tf.train.list_variables(latest)]
    assert any(n.startswith("loss_scale/") for n in names) == (policy == "mixed_float16")
    # In float32, the best checkpoint evaluates as the mixed-precision run evaluated it.
    float32 = run_params.replace(mixed_precision="none")
    learner = estimator(float32)
    results = learner.evaluate(evaluation.input_fn, checkpoint="best")
    with open(os.path.join(run_params.best_model_dir, "best.json"), encoding="utf-8") as stream:
        best = json.load(stream)
    recorded = next(
        r for r in summaries.read_metrics(run_params.model_dir) if r["step"] == best["step"]
    )
    # bfloat16 keeps 8 bits of mantissa: an example on the decision boundary may flip.
    assert abs(results["accuracy"] - recorded["eval_accuracy"]) <= 1 / 16 + 1e-6
    assert results["loss"] == pytest.approx(best["value"], rel=0.05, abs=0.02)
    # And training resumes in float32 from the mixed-precision checkpoint.
    assert learner.train(train.input_fn, 6) == 6


def test_profile_steps_write_a_tensorboard_profile(stripes_records, tmp_path):
    from library.engine.estimator import train_and_evaluate

    # With early stopping too (no improvement counts: it stops after the second evaluation),
    # which must still be able to stop the run.
    run_params = params(
        stripes_records, tmp_path, profile_steps=[2, 4], train_steps=6,
        early_stopping_patience=1, early_stopping_min_delta=100.0,
    )  # fmt: skip
    lines = []
    learner = estimator(run_params)
    learner.say = lines.append
    train, evaluation = specs(run_params, 6)
    assert train_and_evaluate(learner, train, evaluation) == 4
    profile = os.path.join(run_params.model_dir, "profile")
    assert f"profiling steps 3-4 into {profile}" in lines
    assert any(line.startswith(f"profile written to {profile}") for line in lines)
    traces = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(os.path.join(profile, "plugins", "profile"))
        for name in names
        if name.endswith(".xplane.pb")
    ]
    assert traces and all(os.path.getsize(t) > 0 for t in traces), traces


def test_scale_settings_are_checked_in_one_line(monkeypatch):
    """(Before TensorFlow loads: test_config.py.)"""
    cases = [
        (["--profile_steps", "[4, 2]"], None, "profile_steps must be [start, stop] with start < stop"),
        (["--distribution", "multi_worker"], '{"cluster": {}}',
         "TF_CONFIG must name the cluster and this task in it"),
        (["--distribution", "multi_worker"], '{"cluster": {"worker": ["h:1"]}, '
         '"task": {"type": "worker", "index": 3}}', "TF_CONFIG must name the cluster"),
        (["--mixed_precision", "float16"], None, "mixed_float16"),
        (["--data_service_address", "grpc://h:1", "--checkpoint_input_pipeline", "true"], None,
         "the tf.data service holds the input pipeline"),
    ]  # fmt: skip
    for flags, tf_config, message in cases:
        if tf_config is None:
            monkeypatch.delenv("TF_CONFIG", raising=False)
        else:
            monkeypatch.setenv("TF_CONFIG", tf_config)
        result = run_cli(*argv(None, None, *flags))
        assert result.returncode == 2, (flags, result.stderr)
        assert message in one_line(result.stderr)


# What TensorFlow 2.21 said here when a service worker was killed under a run with two, and
# when a dispatcher without --work_dir was killed and restarted under a run.
LOST_WORKER = (
    "Graph execution error:\n\nDetected at node while/IteratorGetNext defined at ...\n"
    "Failed to get element from worker vm:6052: Failed to get an element, with a nonretryable "
    "error: Failed to get element: Failed to get split: Iteration id 2001 not found"
)
RESTARTED = (
    "Graph execution error:\n\nDetected at node while/IteratorGetNext defined at ...\n"
    "Failed to get tasks: Unknown iteration client id 3000. The dispatcher is not configured "
    "to be fault tolerant, so this could be caused by a dispatcher restart."
)


def test_tf_data_service_failures_are_one_line_naming_the_cause():
    import tensorflow as tf

    from library.data.service import failure_line

    def line(message):
        return failure_line(tf.errors.NotFoundError(None, None, message), "grpc://d:1", "m")

    assert "lost worker vm:6052 mid-epoch (Failed to get element from worker" in line(LOST_WORKER)
    restarted = line(RESTARTED)
    assert "dispatcher at grpc://d:1 restarted and lost its jobs" in restarted
    assert "--work_dir" in restarted and "resumes from the last checkpoint in m" in restarted
    assert "\n" not in restarted + line(LOST_WORKER)
    assert line("Graph execution error:\nsome other failure") is None
    # A data error raised in a worker names the worker too, but no worker was lost.
    corrupt = tf.errors.InvalidArgumentError(None, None, LOST_WORKER)
    assert failure_line(corrupt, "grpc://d:1", "m") is None
