"""Online store: python jobs/materialize_incremental.py [overrides] (see docs/features.md)"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("materialize-incremental", sys.argv[1:]))
