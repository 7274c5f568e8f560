"""Rebalance a training set's minority class with synthetic rows: python jobs/synth_augment.py [synth=ctgan] [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-augment", sys.argv[1:]))
