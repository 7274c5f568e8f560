"""Build the point-in-time correct training set: python jobs/training_set.py [overrides]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("training-set", sys.argv[1:]))
