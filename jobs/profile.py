"""Profile a table version: python jobs/profile.py table=flights [version=N]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("profile", sys.argv[1:]))
