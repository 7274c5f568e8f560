"""Fit a synthesizer on a table version and register it: python jobs/synth_fit.py table=flights synth=tvae [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-fit", sys.argv[1:]))
