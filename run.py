#!/usr/bin/env python3
"""Train, evaluate, predict with or export the model: `python run.py --config_set NAME`.

Options and every configuration key: `python run.py --help`. The same file for every task:
the project declares its keys and its functions in project/__init__.py.
"""

import sys

try:
    import project  # its declarations only: no TensorFlow yet
    from library import main
except ModuleNotFoundError as missing:  # started outside the project's environment
    print(
        f"run.py: error: {missing}; use the project's environment: .venv/bin/python run.py",
        file=sys.stderr,
    )
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], project))
