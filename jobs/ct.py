"""Continuous training, promote only a better model: python jobs/ct.py model=NAME [ct.trigger=new_data] [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("ct", sys.argv[1:]))
