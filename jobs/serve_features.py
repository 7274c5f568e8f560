"""The HTTP feature server on Ray Serve: python jobs/serve_features.py [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("serve-features", sys.argv[1:]))
