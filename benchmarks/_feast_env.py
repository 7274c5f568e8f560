"""Feast in its own virtual environment, for the benchmarks' reference runs.

Feast is never a dependency of raylake: its pins (pandas, pyarrow, dask)
would fight ours. The benchmarks run it as a separate interpreter,
``.bench/feast/bin/python``, created here on first use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FEAST_VERSION = "0.49.0"
# Feast 0.49's server calls MessageToDict(float_precision=...), which protobuf 6 removed;
# Feast declares no upper bound, so pip would pick a protobuf it cannot run with.
PROTOBUF = "protobuf<6"
ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".bench" / "feast"


def feast_python() -> Path:
    """The Feast environment's interpreter, installing Feast there if it is missing."""
    python = ENV / "bin" / "python"
    probe = [str(python), "-c", f"import feast, psutil; assert feast.__version__ == {FEAST_VERSION!r}; "
             "import google.protobuf as pb; assert int(pb.__version__.split('.')[0]) < 6"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {ENV} with feast=={FEAST_VERSION} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"feast=={FEAST_VERSION}", PROTOBUF,
                    "psutil"], check=True)
    return python


def feast_bin(name: str = "feast") -> Path:
    return feast_python().parent / name
