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

    python benchmarks/branch.py --s3 [--tables 10] [--files 10] [--mb 2]

The same comparison on an object store: moto's S3 server (``moto[server]``, the
``test`` extra), started on a free port as the tests start it, with a smaller default
lake (10 tables x 10 files of ~2 MB, 200 MB: moto keeps objects in its memory). Object
stores have no links, so `create_branch` copies every object server-side (CopyObject,
pyarrow's ``copy_file``); the baseline is a client-side copy of the same objects (GET
each one and PUT it back under another prefix, what ``aws s3 cp --recursive`` between
prefixes does without server-side copy). moto runs as a local process on this machine,
over loopback, so absolute times say nothing about real S3 (where a copy's time is the
store's copy throughput, and a client-side copy's the client's bandwidth). What is
measured: the requests each side makes (counted in moto's request log) and the bytes
between the client and the store in both directions, headers included (counted by a
TCP relay the client talks through: pyarrow's and delta-rs's endpoint point at it).
Last line:

    branch: raylake_s <s>, copy_s <s>, bytes_written <n>, copy_bytes <n>, ratio <r>,
    storage s3-fake, raylake_requests <n>, copy_requests <n>, raylake_client_bytes <n>,
    copy_client_bytes <n>

(one line). Here ``bytes_written`` is what the branch adds to the store (its copies and
metadata: object stores bill a second copy), ``copy_bytes`` what the client-side copy
wrote, and the ``*_client_bytes`` what passed through the client.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from raylake.lake import Lake, Storage  # noqa: E402
from raylake.lake.branches import create_branch  # noqa: E402
from raylake.lake.commit import write_table  # noqa: E402


def build(root: str, tables: int, files: int, mb: float,
          options: dict[str, str] | None = None) -> int:
    """The lake: ``tables`` tables of ``files`` commits of one ~``mb`` MB file each."""
    lake = Lake(Storage.from_config(root, options))
    rows = int(mb * 1024 * 1024 / 8 / 4)  # 4 float64 columns of random values
    rng = np.random.default_rng(0)
    for t in range(tables):
        for f in range(files):
            data = pa.table({f"c{i}": rng.random(rows) for i in range(4)})
            write_table(lake, f"t{t:02d}", data, app_id=f"bench-{t}-{f}")
    if not lake.storage.local:
        fs, path = lake.storage.filesystem()
        return sum(size for _rel, size in _objects(fs, path))
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


# -- on an object store (moto's S3 server) ----------------------------------------------

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "raylake-bench-key",
                    "AWS_SECRET_ACCESS_KEY": "raylake-bench-secret", "AWS_REGION": "us-east-1"}
_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) ')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some lines (206, 404)


class Relay:
    """A TCP relay on a free local port in front of ``upstream`` (host, port), counting
    the bytes each way, so what passes through the client is measured, not assumed. It
    runs in a process of its own: deltalake's calls hold this process's GIL while they
    wait on the network, which would starve a relay thread here."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._sent, self._received = ctx.Value("q", 0), ctx.Value("q", 0)
        port = ctx.Value("i", 0)
        self._proc = ctx.Process(target=_relay, args=(upstream, port, self._sent,
                                                      self._received), daemon=True)
        self._proc.start()
        for _ in range(600):
            if port.value:
                break
            time.sleep(0.05)
        self.port = port.value

    @property
    def total(self) -> int:
        return int(self._sent.value + self._received.value)

    def close(self) -> None:
        self._proc.terminate()
        self._proc.join(10)


def _relay(upstream: tuple[str, int], port: Any, sent: Any, received: Any) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)

    def pump(src: socket.socket, dst: socket.socket, count: Any) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with count.get_lock():
                    count.value += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    port.value = server.getsockname()[1]
    while True:
        client, _ = server.accept()
        store = socket.create_connection(upstream)
        threading.Thread(target=pump, args=(client, store, sent), daemon=True).start()
        threading.Thread(target=pump, args=(store, client, received), daemon=True).start()


def start_moto(log: str) -> tuple[subprocess.Popen[bytes], int]:
    """moto's S3 server on a free port (as tests/s3server.py starts it), bucket "bench"."""
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}",
                          region_name=FAKE_CREDENTIALS["AWS_REGION"])
    for _ in range(300):
        if proc.poll() is not None:
            break
        try:
            client.create_bucket(Bucket="bench")
            return proc, port
        except Exception:  # not listening yet
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"moto's S3 server never answered; its log:\n{Path(log).read_text()[-2000:]}")


def requests_in(log: str, start: int) -> tuple[Counter[str], int]:
    """Requests moto logged since byte ``start`` of its log, by HTTP method; the log's
    size now."""
    time.sleep(0.5)  # werkzeug logs a request after answering it
    with open(log, "rb") as f:
        f.seek(start)
        data = f.read()
    text = _COLOUR.sub("", data.decode(errors="replace"))
    return Counter(_REQUEST.findall(text)), start + len(data)


def _by_method(counts: Counter[str]) -> str:
    return " + ".join(f"{n} {m}" for m, n in counts.most_common())


def _objects(fs: pafs.FileSystem, base: str) -> list[tuple[str, int]]:
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return [(i.path[len(base) + 1:], i.size or 0) for i in infos if i.type == pafs.FileType.File]


def client_copy(fs: pafs.FileSystem, src: str, dst: str) -> int:
    """Every object under ``src`` read and written back under ``dst`` through this
    process; the bytes written."""
    total = 0
    for rel, _size in _objects(fs, src):
        with fs.open_input_stream(f"{src}/{rel}") as f:
            data = f.read()
        with fs.open_output_stream(f"{dst}/{rel}") as out:
            out.write(data)
        total += len(data)
    return total


def main_s3(args: argparse.Namespace) -> None:
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONDITIONAL_PUT"):
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    work = tempfile.mkdtemp(prefix="raylake-branch-bench-s3-", dir=args.dir)
    log = os.path.join(work, "moto.log")
    proc, port = start_moto(log)
    relay = Relay(("127.0.0.1", port))
    try:
        options = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay.port}", "AWS_ALLOW_HTTP": "true",
                   "AWS_REGION": FAKE_CREDENTIALS["AWS_REGION"]}
        root = "s3://bench/lake"
        t0 = time.perf_counter()
        size = build(root, args.tables, args.files, args.mb, options)
        print(f"lake: {args.tables} tables x {args.files} files, {size:,} bytes in moto's S3 "
              f"server (a local process: times are not real S3's), built in "
              f"{time.perf_counter() - t0:.0f}s")
        lake = Lake(Storage.from_config(root, options))
        fs, path = lake.storage.filesystem()
        _, mark = requests_in(log, 0)
        moved = relay.total
        t0 = time.perf_counter()
        made = create_branch(lake, "bench")
        raylake_s = time.perf_counter() - t0
        counts, mark = requests_in(log, mark)
        raylake_requests, raylake_client = counts.total(), relay.total - moved
        print(f"branch: {made.files_copied} objects copied server-side "
              f"({made.bytes_copied:,} bytes), {made.bytes_written:,} bytes new in the store, "
              f"{raylake_requests} requests ({_by_method(counts)}; a copy is a PUT with "
              f"x-amz-copy-source), {raylake_client:,} bytes through the client, "
              f"{raylake_s:.3f}s")
        fs.delete_dir(f"{path}/_branches")
        _, mark = requests_in(log, 0)
        moved = relay.total
        t0 = time.perf_counter()
        copy_bytes = client_copy(fs, path, "bench/copy")
        copy_s = time.perf_counter() - t0
        counts, mark = requests_in(log, mark)
        copy_requests, copy_client = counts.total(), relay.total - moved
        print(f"client-side copy: {copy_bytes:,} bytes, {copy_requests} requests "
              f"({_by_method(counts)}), "
              f"{copy_client:,} bytes through the client, {copy_s:.3f}s")
        print(f"branch: raylake_s {raylake_s:.3f}, copy_s {copy_s:.3f}, bytes_written "
              f"{made.bytes_written}, copy_bytes {copy_bytes}, ratio {copy_s / raylake_s:.1f}, "
              f"storage s3-fake, raylake_requests {raylake_requests}, copy_requests "
              f"{copy_requests}, raylake_client_bytes {raylake_client}, copy_client_bytes "
              f"{copy_client}")
    finally:
        relay.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tables", type=int, default=10)
    p.add_argument("--files", type=int, default=None,
                   help="files per table (default 100; 10 with --s3)")
    p.add_argument("--mb", type=float, default=2.0)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--s3", action="store_true",
                   help="against moto's S3 server: server-side copies vs a client-side copy")
    args = p.parse_args()
    if args.s3:
        args.files = 10 if args.files is None else args.files
        main_s3(args)
        return
    args.files = 100 if args.files is None else args.files
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
