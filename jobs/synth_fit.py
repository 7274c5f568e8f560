"""Fit a synthesizer on a table version and register it: python jobs/synth_fit.py table=flights synth=tvae [overrides]"""

import sys

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-fit", sys.argv[1:]))
