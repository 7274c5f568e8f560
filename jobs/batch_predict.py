"""Score a lake table with a registered model: python jobs/batch_predict.py model=NAME table=T"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("batch-predict", sys.argv[1:]))
