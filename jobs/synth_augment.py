"""Rebalance a training set's minority class with synthetic rows: python jobs/synth_augment.py [synth=ctgan] [overrides]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-augment", sys.argv[1:]))
