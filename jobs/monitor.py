"""Monitor a model's live traffic against its training set, window by window:
python jobs/monitor.py model=delay_model:champion [monitor.since=2013-04-01 monitor.now=...]
"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("monitor", sys.argv[1:]))
