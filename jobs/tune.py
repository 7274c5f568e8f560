"""Tune a trainer with Ray Tune, record the trials, register the best: python jobs/tune.py [overrides]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("tune", sys.argv[1:]))
