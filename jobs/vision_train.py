"""Train the image CNN and register it: python jobs/vision_train.py train=cnn|cnn_gpu [overrides]"""

import sys

import _tree  # noqa: F401  (raylake from the submitted tree: jobs/_tree.py)

from raylake.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("vision-train", sys.argv[1:]))
