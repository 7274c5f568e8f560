"""Fidelity, utility and privacy of synthetic rows: python jobs/synth_report.py model=flights_tvae:1 [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-report", sys.argv[1:]))
