#!/usr/bin/env python3
"""The tiny regression's run.py, for the tests where the process is what is tested."""

import os
import sys

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]

from library import main  # noqa: E402
from projects import regression  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], regression))
