#!/usr/bin/env python3
"""The text classifier's run.py: `python examples/text_classifier/run.py [--mode ...]`, every
mode of the scaffold's run.py, on this project's sets (examples/text_classifier/project.yaml)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from examples import text_classifier
from library import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.split("=")[0] == "--project_file" for a in argv):  # this project's sets
        argv = ["--project_file", text_classifier.PROJECT_FILE, *argv]
    sys.exit(main(argv, text_classifier))
