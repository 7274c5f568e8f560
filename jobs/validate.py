"""Check a table version against its constraints: python jobs/validate.py table=flights [version=N]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("validate", sys.argv[1:]))
