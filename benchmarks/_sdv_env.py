"""SDV in its own virtual environment, for the synthetic-data benchmark's reference runs.

SDV 1.x and the ``ctgan`` package are licensed BUSL-1.1: raylake may run them side by side
as a benchmark, never depend on them. The benchmark runs them as a separate interpreter,
``.bench/sdv/bin/python``, created here on first use (``pip install sdv``; it brings torch,
scikit-learn, rdt, ctgan and sdmetrics, which the benchmark also uses to check raylake's
quality score against SDMetrics' own on the same frames).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".bench" / "sdv"
PACKAGES = ["sdv>=1.10,<2", "pyarrow"]


def _same_torch() -> list[str]:
    """raylake's own torch build (the CPU wheel here), so both sides train on the same
    torch and pip does not fetch a CUDA build for SDV."""
    try:
        import torch
    except ImportError:
        return []
    return [f"torch=={torch.__version__}"]


def sdv_python() -> Path:
    """The SDV environment's interpreter, installing SDV there if it is missing."""
    python = ENV / "bin" / "python"
    probe = [str(python), "-c", "import sdv, sdmetrics, pyarrow; "
             "from sdv.single_table import TVAESynthesizer"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {ENV} with {' '.join(PACKAGES)} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *_same_torch(), *PACKAGES],
                   check=True)
    return python


if __name__ == "__main__":
    print(sdv_python())
