"""Drift between two selections or versions of a table:
python jobs/drift.py table=weather drift.reference="month in [1]" drift.current="month in [7]"
"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("drift", sys.argv[1:]))
