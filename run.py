#!/usr/bin/env python3
"""Train, evaluate, predict with or export the model: `python run.py --config_set NAME`.

Options and every configuration key: `python run.py --help`.
"""

import sys

try:
    from library.cli import main
    from project import hyperparameters  # the declarations only: no TensorFlow yet
except ModuleNotFoundError as missing:  # started outside the project's environment
    print(
        f"run.py: error: {missing}; use the project's environment: .venv/bin/python run.py",
        file=sys.stderr,
    )
    sys.exit(2)


def load_project() -> dict:
    """The project's functions by contract name (library/contract.py), wired into the
    library; imported late: TensorFlow is slow. The image kit's pieces come in through the
    same doors any project's do."""
    from library.vision import classes, serving
    from project import inputs, losses, model, optimizers

    return {
        "input_fn": inputs.input_fn,
        "model_fn": model.model_fn,
        "loss_fn": losses.loss_fn,
        "optimizer_fn": optimizers.optimizer_fn,
        "metrics_fn": model.metrics_fn,
        "predictions_fn": model.predictions_fn,
        "serving_inputs": serving.image_bytes_inputs,
        "serving_fn": inputs.serving_fn,
        "predict_reader": serving.read_image_file,
        "callbacks_fn": model.callbacks_fn,
        "prepare_fn": classes.prepare,
        "diagnose_fn": serving.find_undecodable_image,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], hyperparameters, load_project))
