#!/usr/bin/env python3
"""The distillation's run.py: `python examples/distillation/run.py [--mode ...]`, every mode of
the scaffold's run.py, on this project's sets (examples/distillation/project.yaml)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from examples import distillation
from library import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.split("=")[0] == "--project_file" for a in argv):  # this project's sets
        argv = ["--project_file", distillation.PROJECT_FILE, *argv]
    sys.exit(main(argv, distillation))
