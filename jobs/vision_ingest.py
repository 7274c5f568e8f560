"""Ingest a dataset's image tables: python jobs/vision_ingest.py dataset=mnist_5k [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("vision-ingest", sys.argv[1:]))
