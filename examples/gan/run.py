#!/usr/bin/env python3
"""The GAN's run.py: `python examples/gan/run.py [--mode ...]`, every mode of the scaffold's
run.py, on this project's sets (examples/gan/project.yaml)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from examples import gan
from library import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.split("=")[0] == "--project_file" for a in argv):  # this project's sets
        argv = ["--project_file", gan.PROJECT_FILE, *argv]
    sys.exit(main(argv, gan))
