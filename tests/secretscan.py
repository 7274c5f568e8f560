"""Finding a planted secret in a lake's files (test_secrets.py, test_chain.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

# A storage option read from the environment, as a user hands a process a credential.
PLANT = "+lake.storage_options.AWS_SECRET_ACCESS_KEY=${oc.env:RAYLAKE_PLANTED}"


def files_holding(root: str | Path, needle: str) -> list[str]:
    """Every file under ``root`` whose bytes, path or (for Parquet) decoded values hold
    ``needle``: compression could hide a string from a scan of the bytes alone."""
    hits = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        found = needle.encode() in path.read_bytes() or needle in str(path)
        if not found and path.suffix == ".parquet":
            found = needle in json.dumps(pq.read_table(path).to_pylist(), default=str)
        if found:
            hits.append(str(path))
    return hits
