"""Online store: python jobs/materialize.py [overrides] (see docs/features.md)"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("materialize", sys.argv[1:]))
