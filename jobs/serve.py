"""Serve a registered model on Ray Serve: python jobs/serve.py model=NAME[:VERSION|champion]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("serve", sys.argv[1:]))
