"""Tune a trainer with Ray Tune, record the trials, register the best: python jobs/tune.py [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("tune", sys.argv[1:]))
