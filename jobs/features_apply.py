"""Check feature definitions against the lake and record them: python jobs/features_apply.py"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("features-apply", sys.argv[1:]))
