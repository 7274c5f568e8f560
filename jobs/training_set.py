"""Build the point-in-time correct training set: python jobs/training_set.py [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("training-set", sys.argv[1:]))
