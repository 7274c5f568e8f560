"""Snorkel in its own virtual environment, for the weak-supervision benchmark's reference run.

Snorkel is never a dependency of raylake: 0.10 pins older libraries (and brings
scikit-learn and tensorboard). The benchmark runs it as a separate interpreter,
``.bench/snorkel/bin/python``, created here on first use, and hands it the label
matrix as a ``.npy`` file, so both label models see exactly the same votes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNORKEL_VERSION = "0.10.0"
ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".bench" / "snorkel"


def snorkel_python() -> Path:
    """The Snorkel environment's interpreter, installing Snorkel there if it is missing."""
    python = ENV / "bin" / "python"
    probe = [str(python), "-c", "import snorkel; from snorkel.labeling.model import LabelModel; "
             f"assert snorkel.__version__ == {SNORKEL_VERSION!r}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {ENV} with snorkel=={SNORKEL_VERSION} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"snorkel=={SNORKEL_VERSION}"],
                   check=True)
    return python


if __name__ == "__main__":
    print(snorkel_python())
