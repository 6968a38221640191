"""The library's run options: the keys of ``project.yaml`` (data, durations, folders,
checkpoints, scale, workflows, transfer). A project adds its own hyperparameters (and may add
run options) in ``project/hyperparameters.py``."""

from __future__ import annotations

from library.config.schema import Field

MODES = (
    "train_and_evaluate",
    "train",
    "evaluate",
    "continuous_eval",
    "predict",
    "export",
    "export_encoder",
    "inspect",
    "search",
)
TRAINING_MODES = ("train_and_evaluate", "train", "search")
RENAMED = {"model": "checkpoint"}  # old key -> new key: a clear error instead of "unknown"

RUN_OPTIONS: tuple[Field, ...] = (
    # -- data ----------------------------------------------------------------------
    Field(
        "train_files",
        str,
        "dataset/train/train-*.tfrecord",
        "glob of the training files (TFRecord shards, or what the project's input_fn reads)",
    ),
    Field("eval_files", str, "dataset/test/test-*.tfrecord", "glob of the evaluation files"),
    Field(
        "eval_sets",
        dict[str, str],
        {},
        "several evaluation sets, by name ({validation: GLOB, test_hard: GLOB}): training "
        "evaluates each in place of eval_files and logs its results under its name "
        "(validation/loss); best_metric names the set (test_hard/accuracy; a bare metric is "
        "the first set's); {}: eval_files alone",
    ),
    Field(
        "train_records",
        int,
        0,
        "examples in one epoch of train_files; 0: from the manifests beside them (or by reading "
        "TFRecord shards once)",
        interval="[0, inf)",
    ),
    Field(
        "predict_files",
        str,
        "",
        "--mode predict: files, a glob, a folder or a comma list of them (CSV, JSON lines, "
        "TFRecords, or what the project's predict_reader reads)",
    ),
    Field(
        "predict_recursive",
        bool,
        False,
        "--mode predict: read the subfolders of a folder in predict_files too (false: only the "
        "files directly in it)",
    ),
    Field(
        "predictions_file",
        str,
        "",
        "--mode predict: the CSV of predictions (what a CSV cell cannot hold goes to files in the "
        "folder of its name: predictions.csv -> predictions/); never written over; empty: "
        "predictions.csv beside the checkpoint predicted with",
    ),
    Field(
        "train_batch_size",
        int,
        32,
        "examples per training step (the global batch, over all replicas)",
        interval="[1, inf)",
    ),
    Field(
        "accumulate_batches",
        int,
        1,
        "gradient accumulation: each update averages the gradients of this many training "
        "batches (one update of a batch this many times larger); the steps, the schedule and "
        "steps_per_epoch count updates",
        interval="[1, inf)",
    ),
    Field(
        "ema_decay",
        float,
        0.0,
        "a moving average of the weights, updated after each step with this decay (0.999: "
        "about the last 1000 steps), is what evaluation, the best checkpoint and the export "
        "use; 0: the trained weights",
        interval="[0, 1)",
    ),
    Field("eval_batch_size", int, 64, "examples per evaluation step", interval="[1, inf)"),
    Field(
        "shuffle_buffer", int, 1000, "records in the shuffle buffer (training)", interval="[1, inf)"
    ),
    Field("interleave_cycle_length", int, 4, "shards read at once", interval="[1, inf)"),
    Field(
        "skip_corrupt_records",
        bool,
        False,
        "skip the damaged rest of a corrupt shard instead of stopping",
    ),
    # -- durations (epochs, or steps when > 0) ---------------------------------------
    Field("train_epochs", float, 10.0, "training length in epochs", interval="(0, inf)"),
    Field(
        "train_steps",
        int,
        0,
        "training length in steps; overrides train_epochs when > 0",
        interval="[0, inf)",
    ),
    Field(
        "epochs_between_evals", float, 1.0, "evaluate every this many epochs", interval="(0, inf)"
    ),
    Field(
        "steps_between_evals",
        int,
        0,
        "evaluate every this many steps; overrides epochs_between_evals when > 0",
        interval="[0, inf)",
    ),
    Field(
        "eval_steps", int, 0, "batches per evaluation; 0: the whole eval set", interval="[0, inf)"
    ),
    Field(
        "steps_per_execution",
        int,
        1,
        "training steps run inside one tf.function call",
        interval="[1, inf)",
    ),
    Field(
        "log_steps",
        int,
        50,
        "log train loss and throughput every this many steps",
        interval="[1, inf)",
    ),
    # -- checkpoints and outputs -----------------------------------------------------
    Field(
        "hyperparameter_file",
        str,
        "hyperparameters.yaml",
        "hyperparameter file, relative to the project file",
    ),
    Field("hyperparameter_set", str, "default", "set in hyperparameter_file"),
    Field(
        "checkpoint", str, "latest", "checkpoint to evaluate/predict/export: latest, best or a path"
    ),
    Field(
        "model_dir", str, "out/current/checkpoints", "checkpoints, summaries, metrics.jsonl, plots"
    ),
    Field(
        "best_model_dir", str, "out/current/best", "best checkpoint, best.json and its SavedModel"
    ),
    Field(
        "export_dir", str, "", "SavedModel destination for --mode export; empty: <model_dir>/export"
    ),
    Field("keep_checkpoints", int, 5, "checkpoints kept in model_dir", interval="[1, inf)"),
    Field(
        "save_checkpoints_steps",
        int,
        0,
        "save every this many steps; 0: at each evaluation",
        interval="[0, inf)",
    ),
    Field(
        "checkpoint_input_pipeline",
        bool,
        False,
        "save the input pipeline's position (shuffle buffer included) in checkpoints, so a "
        "resumed run continues the same data order; larger checkpoints",
    ),
    Field(
        "best_metric",
        str,
        "loss",
        "evaluation result that picks the best checkpoint and that plateau and early stopping "
        "watch: loss or a name of METRICS in project/hyperparameters.py",
    ),
    Field(
        "best_mode",
        str,
        "min",
        "whether a lower or higher best_metric is better",
        choices=("min", "max"),
    ),
    Field(
        "best_saved_model",
        bool,
        True,
        "also export the best checkpoint as a SavedModel in best_model_dir/saved_model (written "
        "in the background; needs the project's serving_inputs and serving_fn)",
    ),
    Field(
        "plots",
        bool,
        True,
        "draw the matplotlib curves of metrics.jsonl in model_dir/plots after each evaluation",
    ),
    Field(
        "batch_norm_refresh_batches",
        int,
        4,
        "before each checkpoint, re-estimate batch-norm statistics with the weights being saved "
        "from this many training batches (PreciseBN); 0: off",
        interval="[0, inf)",
    ),
    Field(
        "max_nonfinite_steps",
        int,
        5,
        "stop after this many consecutive NaN/Inf steps",
        interval="[1, inf)",
    ),
    Field("random_seed", int, 42, "seed for weights, shuffling and augmentation"),
    Field(
        "deterministic",
        bool,
        False,
        "the training input in one order and TensorFlow's ops deterministic "
        "(tf.config.experimental.enable_op_determinism), the input position saved in checkpoints: "
        "a run killed and resumed ends bit-identical to one never killed, at a cost in speed "
        "(BENCHMARKS.md); false: reads and maps in parallel in any order",
    ),
    # -- scale (library/engine/distribute.py, library/data/service.py; docs/scaling.md) ----
    Field(
        "distribution",
        str,
        "auto",
        "tf.distribute strategy: auto (mirrored over several GPUs, else one device), one_device, "
        "mirrored, multi_worker (the cluster from TF_CONFIG) or tpu",
        choices=("auto", "one_device", "mirrored", "multi_worker", "tpu"),
    ),
    Field(
        "collective_timeout_secs",
        float,
        300.0,
        "multi_worker: a collective (gradient all-reduce) waiting longer than this for a worker "
        "that died stops the run",
        interval="(0, inf)",
    ),
    Field(
        "tpu_address",
        str,
        "",
        "distribution tpu: the TPU's name or grpc:// address; empty: the local TPU",
    ),
    Field(
        "input_check",
        bool,
        True,
        "measure once, early in a run, the input pipeline alone against the step alone, and say "
        "when the input bounds training, which stage costs most and what to try "
        "(library/monitor/bottleneck.py)",
    ),
    Field(
        "data_service_address",
        str,
        "",
        "grpc://HOST:PORT of a tf.data service dispatcher that runs the training input pipeline "
        "(python -m library.cli.data_service); empty: in this process",
    ),
    Field(
        "data_service_timeout_secs",
        float,
        120.0,
        "with data_service_address: a run that gets no training batch from the service this long "
        "(its workers gone) stops with one line; the same command resumes",
        interval="(0, inf)",
    ),
    Field(
        "mixed_precision",
        str,
        "none",
        "compute in 16 bits with float32 variables, logits and loss: none, mixed_float16 (with "
        "loss scaling; GPUs) or mixed_bfloat16 (TPUs, CPUs with AVX512-BF16 or AMX)",
        choices=("none", "mixed_float16", "mixed_bfloat16"),
    ),
    Field("xla", bool, False, "compile the train step with XLA"),
    Field(
        "profile_steps",
        list[int],
        [],
        "[start, stop]: write a TensorBoard profile of these training steps to "
        "<model_dir>/profile; []: none",
        interval="[0, inf)",
    ),
    Field(
        "onednn",
        str,
        "auto",
        "TensorFlow's oneDNN CPU kernels: on, off, or auto (off where "
        "project/hyperparameters.py's onednn_off(params) says the model meets TF 2.21's crashing "
        "conv-gradient kernel)",
        choices=("auto", "on", "off"),
    ),
    Field(
        "progress",
        str,
        "auto",
        "progress bar: auto (on a terminal), bar or log",
        choices=("auto", "bar", "log"),
    ),
    # -- workflows: plateau, early stopping, continuous evaluation ------------------------------
    Field(
        "plateau_patience",
        int,
        0,
        "multiply the learning rate by plateau_factor after this many evaluations without "
        "improvement of best_metric; 0: off",
        interval="[0, inf)",
    ),
    Field(
        "plateau_factor", float, 0.1, "factor on the learning rate at a plateau", interval="(0, 1)"
    ),
    Field(
        "plateau_min_lr",
        float,
        0.0,
        "the rate a plateau never lowers it below",
        interval="[0, inf)",
    ),
    Field(
        "plateau_min_delta",
        float,
        1e-4,
        "best_metric better than the best by more than this is an improvement (plateau)",
        interval="[0, inf)",
    ),
    Field(
        "early_stopping_patience",
        int,
        0,
        "stop after this many evaluations without improvement of best_metric; 0: off",
        interval="[0, inf)",
    ),
    Field(
        "early_stopping_min_delta",
        float,
        0.0,
        "best_metric better than the best by more than this is an improvement (early stopping)",
        interval="[0, inf)",
    ),
    Field(
        "eval_timeout_secs",
        float,
        600.0,
        "--mode continuous_eval stops after this long without a new checkpoint",
        interval="(0, inf)",
    ),
    # -- transfer learning (library/transfer; names as --mode inspect lists them) -------------
    Field(
        "warm_start_from",
        str,
        "",
        "checkpoint prefix or folder (this project's, a TF1 one, or a SavedModel) whose variables "
        "start a new run; ignored once model_dir has a checkpoint",
    ),
    Field(
        "warm_start_vars", str, ".*", "regex: which of the model's variables the warm start takes"
    ),
    Field(
        "warm_start_name_map",
        dict[str, str],
        {},
        "regex over our variable names -> the source's name (re.sub), e.g. {'^logits/': 'dense/'}",
    ),
    Field(
        "lr_mult",
        dict[str, float],
        {},
        "regex over variable names -> factor on their updates (first match wins; 0: frozen)",
        interval="[0, inf)",
    ),
    Field(
        "export_encoder_dir",
        str,
        "",
        "--mode export_encoder destination; empty: <model_dir>/encoder",
    ),
    Field(
        "encoder_layer",
        str,
        "features",
        "--mode export_encoder: the layer whose output is the encoder's (the model names it); "
        "empty: the input of the last layer",
    ),
    Field(
        "inspect_path",
        str,
        "",
        "--mode inspect: a checkpoint or SavedModel to list instead of the model",
    ),
    # -- searches (library/search; docs/workflows.md) -------------------------------------------
    Field(
        "search_space",
        dict[str, str],
        {},
        "--mode search: KEY: 'LOW..HIGH', 'log LOW..HIGH', 'LOW..HIGH step S' or 'A|B|C' for each "
        "key to search",
    ),
    Field(
        "search_trials",
        int,
        20,
        "--mode search: trials of the study in all, over every process that shares it",
        interval="[1, inf)",
    ),
    Field(
        "search_storage",
        str,
        "",
        "--mode search: the study's database, an SQLAlchemy URL (sqlite:///path, "
        "postgresql://...); empty: the SQLite file <model_dir>/study.db (model_dir is the study's "
        "folder)",
    ),
    Field(
        "search_sampler",
        str,
        "tpe",
        "--mode search: how trials pick values: tpe (Bayesian), random, or grid (every "
        "combination of choices)",
        choices=("tpe", "random", "grid"),
    ),
    Field(
        "search_pruning",
        bool,
        True,
        "--mode search: stop a trial whose best_metric at an evaluation is worse than the median "
        "of the finished trials there",
    ),
    Field(
        "search_pruning_startup_trials",
        int,
        5,
        "--mode search: trials that complete before the pruner stops any (Optuna's MedianPruner "
        "n_startup_trials)",
        interval="[0, inf)",
    ),
    Field(
        "search_heartbeat_secs",
        int,
        10,
        "--mode search: a trial whose process stops beating for twice this long is marked failed "
        "and tried again",
        interval="[1, inf)",
    ),
)
