"""Profile a table version: python jobs/profile.py table=flights [version=N]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("profile", sys.argv[1:]))
