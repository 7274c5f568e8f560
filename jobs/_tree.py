"""Make raylake importable from the tree these entry points sit in.

`ray job submit --working-dir . -- python jobs/<job>.py ...` runs the entry point on the
head from the uploaded copy of this repository, whose Python may not have raylake
installed: ``src/`` of that copy goes first on ``sys.path``. The job's driver then gives
every worker of the job the same folder (``raylake.runtime.package_env``: ``PYTHONPATH``
relative to the working directory Ray starts them in), so nothing needs raylake
installed on the cluster. With raylake installed and no ``src/`` beside this folder,
this does nothing.
"""

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if (SRC / "raylake").is_dir() and str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
