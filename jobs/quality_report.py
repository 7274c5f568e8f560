"""Quality report of a table version: python jobs/quality_report.py table=weather [version=N]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("quality-report", sys.argv[1:]))
