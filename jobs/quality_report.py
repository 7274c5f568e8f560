"""Quality report of a table version: python jobs/quality_report.py table=weather [version=N]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("quality-report", sys.argv[1:]))
