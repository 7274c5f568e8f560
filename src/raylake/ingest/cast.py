"""Cast raw source rows to the declared schema and mark the rows that fail.

Runs inside Ray Data tasks on Arrow tables. A row fails when a text value is
not valid UTF-8, a value cannot be cast, a float is not finite (unless the
column allows it), a non-nullable column is null, or a primary-key column is
null; the row is kept, marked with its reason, column and raw values, so the
writer can quarantine it. Nothing is dropped here: rows out always equal rows in.

Sources hand text over as binary where its encoding is not known to be valid
(``raylake.ingest.sources``); it is checked here, one vectorized cast per
column when it is all valid UTF-8.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raylake.errors import SourceError
from raylake.ingest.types import ColumnSpec

# Internal columns carried beside the data between pipeline stages.
FILE = "_rl_file"  # index of the source file
ROW = "_rl_row"  # 1-based record number within the file
ERROR = "_rl_error"  # why the row is bad; null for a good row
COLUMN = "_rl_column"  # which column made it bad, when one did
RAW = "_rl_raw"  # the raw values (JSON) or line of a bad row
KEY = "_rl_key"  # 64-bit hash of the primary key of a good row
INTERNAL = (FILE, ROW, ERROR, COLUMN, RAW, KEY)


def cast_block(block: pa.Table, specs: Sequence[ColumnSpec], primary_key: Sequence[str]) -> pa.Table:
    """Typed columns plus the internal columns; bad rows marked, none removed."""
    n = block.num_rows
    reason = _optional_strings(block, ERROR, n)
    column = np.full(n, None, dtype=object)
    bad = reason != None  # noqa: E711 (element-wise)
    out: dict[str, pa.Array] = {}
    missing = [s.source for s in specs if s.source not in block.column_names]
    # Decoded text of binary source columns, and where their bytes were not UTF-8.
    texts: dict[str, pa.Array] = {}
    undecodable: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.source in missing:
            if n and not bad.all():
                available = [c for c in block.column_names if c not in INTERNAL]
                # One column whose name holds a separator: the CSV was split on the wrong one.
                hint = (" The source has one column whose name holds a separator: set "
                        "source.csv.delimiter (e.g. ';' or '\\t')."
                        if len(available) == 1 and any(ch in available[0] for ch in ";\t|")
                        else "")
                raise SourceError(
                    f"source column {spec.source!r} (for {spec.name!r}) is not in the source; "
                    f"it has {available}. Fix `columns` or `source` in the dataset config."
                    + hint
                )
            out[spec.name] = pa.nulls(n, spec.type)
            continue
        raw = block.column(spec.source).combine_chunks()
        if _is_binary(raw.type):
            raw_bytes = raw
            raw, invalid = decode_utf8(raw_bytes)
            texts[spec.source] = raw
            if invalid is not None:
                undecodable[spec.source] = invalid
                new = invalid & ~bad
                if new.any():
                    values = raw_bytes.filter(pa.array(new)).to_pylist()
                    reason[new] = [
                        f"invalid UTF-8 in column {spec.name!r} (raw bytes in hex: {v.hex()})"
                        for v in values
                    ]
                    column[new] = spec.name
                    bad |= new
        typed, failed = cast_array(raw, spec)
        out[spec.name] = typed
        failed_np = failed.to_numpy(zero_copy_only=False) if failed is not None else None
        if failed_np is not None and failed_np.any():
            new = failed_np & ~bad
            if new.any():
                values = raw.filter(pa.array(new)).to_pylist()
                reason[new] = [
                    f"cannot cast {v!r} to {spec.type} in column {spec.name!r}" for v in values
                ]
                column[new] = spec.name
                bad |= new
        if pa.types.is_floating(spec.type) and not spec.allow_non_finite:
            new = _non_finite(typed) & ~bad
            if new.any():
                values = raw.filter(pa.array(new)).to_pylist()
                reason[new] = [
                    f"non-finite value {str(v)!r} in column {spec.name!r}; set "
                    "`allow_non_finite: true` on the column if it may hold inf or NaN"
                    for v in values
                ]
                column[new] = spec.name
                bad |= new
        if not spec.nullable or spec.name in primary_key:
            nulls = typed.is_null().to_numpy(zero_copy_only=False) & ~bad
            if failed_np is not None:
                nulls &= ~failed_np
            if nulls.any():
                what = "primary-key" if spec.name in primary_key else "non-nullable"
                reason[nulls] = f"null in {what} column {spec.name!r}"
                column[nulls] = spec.name
                bad |= nulls

    out[FILE] = block.column(FILE)
    out[ROW] = block.column(ROW)
    out[ERROR] = pa.array(reason, type=pa.string())
    out[COLUMN] = pa.array(column, type=pa.string())
    out[RAW] = _raw_values(block, bad, [s.source for s in specs if s.source not in missing],
                           texts, undecodable)
    out[KEY] = _key_hash(out, primary_key, bad)
    return pa.table(out)


def cast_array(raw: pa.Array, spec: ColumnSpec) -> tuple[pa.Array, pa.Array | None]:
    """Cast ``raw`` to ``spec.type``; failing values become null and are flagged."""
    try:
        return _cast(raw, spec), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    # Some values fail: find them by halving, so a block with k bad values
    # costs O(k log n) vectorized casts rather than one Python call per row.
    pieces: list[pa.Array] = []
    failed = np.zeros(len(raw), dtype=bool)

    def go(lo: int, hi: int) -> None:
        """Cast ``raw[lo:hi]`` onto ``pieces``; where that fails, halve the range until each
        failing value is alone, then append it as null and flag it in ``failed``."""
        part = raw.slice(lo, hi - lo)
        try:
            pieces.append(_cast(part, spec))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            if hi - lo == 1:
                failed[lo] = True
                pieces.append(pa.nulls(1, spec.type))
            else:
                mid = (lo + hi) // 2
                go(lo, mid)
                go(mid, hi)

    go(0, len(raw))
    return pa.concat_arrays(pieces), pa.array(failed)


def decode_utf8(raw: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """Binary ``raw`` as text; values that are not valid UTF-8 become null and are flagged.

    One vectorized cast validates a whole clean column (the common case); a
    column with bad values is halved down to small slices, so k bad values cost
    O(k log n) casts plus a Python check of 64 values per bad one.
    """
    text_type = pa.large_string() if pa.types.is_large_binary(raw.type) else pa.string()
    try:
        return raw.cast(text_type), None
    except pa.ArrowInvalid:
        pass
    invalid = np.zeros(len(raw), dtype=bool)

    def go(lo: int, hi: int) -> None:
        """Flag the values of ``raw[lo:hi]`` that are not UTF-8 in ``invalid``."""
        try:
            raw.slice(lo, hi - lo).cast(text_type)
            return
        except pa.ArrowInvalid:
            pass
        if hi - lo <= 64:
            for i, v in enumerate(raw.slice(lo, hi - lo).to_pylist(), start=lo):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        invalid[i] = True
            return
        mid = (lo + hi) // 2
        go(lo, mid)
        go(mid, hi)

    go(0, len(raw))
    mask = pa.array(invalid)
    cleaned = pc.if_else(mask, pa.scalar(None, raw.type), raw)
    return cleaned.cast(text_type), invalid


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _non_finite(typed: pa.Array) -> np.ndarray:
    """True where a float value is inf, -inf or NaN (nulls are not)."""
    if typed.null_count == len(typed):
        return np.zeros(len(typed), dtype=bool)
    finite = pc.fill_null(pc.is_finite(typed), True)
    return pc.invert(finite).to_numpy(zero_copy_only=False)


def _cast(arr: pa.Array, spec: ColumnSpec) -> pa.Array:
    target = spec.type
    if arr.type == target:
        return arr
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        if pa.types.is_timestamp(target) or pa.types.is_date(target):
            return _parse_time(arr, spec)
        if not pa.types.is_string(target):
            try:
                return pc.cast(arr, target)
            except pa.ArrowInvalid:
                return pc.cast(pc.utf8_trim_whitespace(arr), target)
    if pa.types.is_timestamp(arr.type) and pa.types.is_timestamp(target):
        if arr.type.tz is None and target.tz is not None:
            arr = pc.assume_timezone(arr, target.tz)
    return pc.cast(arr, target)


def _parse_time(arr: pa.Array, spec: ColumnSpec) -> pa.Array:
    target = spec.type
    if spec.format:
        parsed = pc.strptime(arr, format=spec.format, unit="us", error_is_null=False)
        if pa.types.is_date(target):
            return pc.cast(parsed, target)
        if target.tz and parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, target.tz)
        return pc.cast(parsed, target)
    if pa.types.is_timestamp(target) and target.tz:
        try:
            return pc.cast(arr, target)
        except pa.ArrowInvalid:
            # ISO strings without an offset are taken as UTC.
            naive = pc.cast(arr, pa.timestamp(target.unit))
            return pc.assume_timezone(naive, target.tz)
    return pc.cast(arr, target)


def _optional_strings(block: pa.Table, name: str, n: int) -> np.ndarray:
    if name in block.column_names and block.column(name).null_count < n:
        return np.array(block.column(name).to_pylist(), dtype=object)
    return np.full(n, None, dtype=object)


def _raw_values(block: pa.Table, bad: np.ndarray, sources: list[str],
                texts: dict[str, pa.Array], undecodable: dict[str, np.ndarray]) -> pa.Array:
    """The raw values of each bad row as JSON (the line, when the source gave one);
    bytes that are not UTF-8 appear as ``{"hex": "..."}``."""
    raw = np.full(block.num_rows, None, dtype=object)
    if bad.any():
        mask = pa.array(bad)
        existing = (
            block.column(RAW).filter(mask).to_pylist() if RAW in block.column_names else None
        )
        columns = {c: texts.get(c, block.column(c)) for c in sources}
        rows = pa.table(columns).filter(mask).to_pylist() if columns else [{}] * int(bad.sum())
        for c, invalid in undecodable.items():
            hexes = block.column(c).filter(mask).to_pylist()
            for i, flag in enumerate(invalid[bad]):
                if flag:
                    rows[i][c] = {"hex": hexes[i].hex()}
        raw[bad] = [
            existing[i] if existing and existing[i] is not None else json.dumps(r, default=str)
            for i, r in enumerate(rows)
        ]
    return pa.array(raw, type=pa.string())


def _key_hash(columns: dict[str, pa.Array], primary_key: Sequence[str], bad: np.ndarray) -> pa.Array:
    n = len(bad)
    if not primary_key or n == 0:
        return pa.nulls(n, pa.uint64())
    # Hash a null-free, type-stable form of each key column: pandas would turn
    # an int column with nulls into floats, and the same key would hash apart
    # in two blocks.
    frame = pd.DataFrame({k: _hashable(columns[k]) for k in primary_key})
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return pa.array(hashes, type=pa.uint64(), mask=bad)


def _hashable(arr: pa.Array) -> np.ndarray:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_temporal(t) or pa.types.is_boolean(t):
        return pc.fill_null(arr.cast(pa.int64()), 0).to_numpy()
    if pa.types.is_floating(t):
        return pc.fill_null(arr.cast(pa.float64()), 0.0).to_numpy()
    return pc.fill_null(arr.cast(pa.string()), "").to_numpy(zero_copy_only=False)


def rehash_keys(block: pa.Table, primary_key: Sequence[str]) -> pa.Table:
    """Recompute the key hash of the good rows (after a step changed key columns)."""
    if not primary_key:
        return block
    bad = block.column(ERROR).is_valid().to_numpy(zero_copy_only=False)
    cols = {k: block.column(k).combine_chunks() for k in primary_key}
    return block.set_column(block.schema.get_field_index(KEY), KEY, _key_hash(cols, primary_key, bad))
