"""Presidio in its own virtual environment, for the PII benchmark's reference run.

presidio-analyzer is never a dependency of raylake (it brings spaCy, and at start it
tries to download a spaCy model, which fails offline). The benchmark runs it as a separate
interpreter, ``.bench/presidio/bin/python``, created here on first use, with a blank
``spacy.blank("en")`` pipeline: Presidio's pattern recognizers (with their checksums and
context words) run; its NER recognizer finds nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".bench" / "presidio"
PACKAGES = ["presidio-analyzer>=2.2,<3", "spacy>=3.7,<4"]


def presidio_python() -> Path:
    """The Presidio environment's interpreter, installing Presidio there if it is missing."""
    python = ENV / "bin" / "python"
    probe = [str(python), "-c", "import spacy; from presidio_analyzer import BatchAnalyzerEngine"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {ENV} with {' '.join(PACKAGES)} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    return python


if __name__ == "__main__":
    print(presidio_python())
