"""Train on Ray Train, evaluate, register: python jobs/train.py [overrides] [--from-run RUN_ID]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("train", sys.argv[1:]))
