"""Branch creation against a full copy: a lake of 10 tables x 100 files of ~2 MB (2 GB).

    python benchmarks/branch.py [--tables 10] [--files 100] [--mb 2] [--dir /tmp]

Builds the lake under a temporary folder (random float columns, so Parquet cannot
shrink them; each table written in 100 commits with raylake's own write path), then
times `raylake.lake.branches.create_branch` (every log and data file hard-linked)
against `cp -r` of the same lake, and deletes everything. ``bytes_written`` counts the
bytes of files the branch does not share with main (link count 1): its metadata and
copied ``_last_checkpoint`` hints; ``copy_bytes`` is what `cp -r` wrote. Last line:

    branch: raylake_s <s>, copy_s <s>, bytes_written <n>, copy_bytes <n>, ratio <copy_s/raylake_s>

Targets: bytes_written under 1 MB, ratio at least 10.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from raylake.lake import Lake, Storage  # noqa: E402
from raylake.lake.branches import create_branch  # noqa: E402
from raylake.lake.commit import write_table  # noqa: E402


def build(root: str, tables: int, files: int, mb: float) -> int:
    """The lake: ``tables`` tables of ``files`` commits of one ~``mb`` MB file each."""
    lake = Lake(Storage.from_config(root))
    rows = int(mb * 1024 * 1024 / 8 / 4)  # 4 float64 columns of random values
    rng = np.random.default_rng(0)
    for t in range(tables):
        for f in range(files):
            data = pa.table({f"c{i}": rng.random(rows) for i in range(4)})
            write_table(lake, f"t{t:02d}", data, app_id=f"bench-{t}-{f}")
    return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())


def unshared_bytes(root: str) -> int:
    """Bytes of the files under ``root`` that have no other name (written by creation)."""
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(dirpath, n))
            if st.st_nlink == 1:
                total += st.st_size
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tables", type=int, default=10)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--mb", type=float, default=2.0)
    p.add_argument("--dir", default=tempfile.gettempdir())
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="raylake-branch-bench-", dir=args.dir)
    try:
        root = os.path.join(work, "lake")
        t0 = time.perf_counter()
        size = build(root, args.tables, args.files, args.mb)
        print(f"lake: {args.tables} tables x {args.files} files, {size:,} bytes, built in "
              f"{time.perf_counter() - t0:.0f}s")
        os.sync()
        lake = Lake(Storage.from_config(root))
        t0 = time.perf_counter()
        made = create_branch(lake, "bench")
        raylake_s = time.perf_counter() - t0
        written = unshared_bytes(os.path.join(root, "_branches", "bench"))
        print(f"branch: {made.files_linked} files linked ({made.bytes_linked:,} bytes), "
              f"{made.files_copied} copied, {written:,} bytes unshared, {raylake_s:.3f}s")
        shutil.rmtree(os.path.join(root, "_branches"))
        os.sync()
        copy = os.path.join(work, "copy")
        t0 = time.perf_counter()
        subprocess.run(["cp", "-r", root, copy], check=True)
        os.sync()  # the copy's bytes on disk, not only in the page cache
        copy_s = time.perf_counter() - t0
        copy_bytes = sum(p.stat().st_size for p in Path(copy).rglob("*") if p.is_file())
        print(f"cp -r: {copy_bytes:,} bytes, {copy_s:.3f}s (with sync)")
        print(f"branch: raylake_s {raylake_s:.3f}, copy_s {copy_s:.3f}, bytes_written {written}, "
              f"copy_bytes {copy_bytes}, ratio {copy_s / raylake_s:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
