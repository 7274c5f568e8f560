"""Ingest a dataset into the lake; what `ray job submit` runs.

    python jobs/ingest.py dataset=nycflights13 lake.root=/tmp/lake
    ray job submit --working-dir . -- python jobs/ingest.py dataset=nycflights13 lake.root=s3://bucket/lake
"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("ingest", sys.argv[1:]))
