"""Sample rows from a registered synthesizer: python jobs/synth_sample.py model=flights_tvae:1 synth.rows=1000000 [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("synth-sample", sys.argv[1:]))
