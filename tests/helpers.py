"""Small builders for test datasets and table configs."""

from __future__ import annotations

from pathlib import Path

from raylake.config.schema import ColumnConfig, SourceConfig, TableConfig, WriteMode


def table_config(
    path: Path | str,
    columns: dict[str, str | tuple[str, bool]],
    *,
    primary_key: tuple[str, ...] = (),
    mode: str = "append",
    fmt: str | None = None,
    partition_by: tuple[str, ...] = (),
    event_time: str | None = None,
) -> TableConfig:
    cols = {}
    for name, spec in columns.items():
        typ, nullable = (spec, True) if isinstance(spec, str) else spec
        cols[name] = ColumnConfig(type=typ, nullable=nullable)
    return TableConfig(
        source=SourceConfig(path=str(path), format=fmt),
        columns=cols,
        primary_key=list(primary_key),
        mode=WriteMode(mode),
        partition_by=list(partition_by),
        event_time=event_time,
    )


EVENTS_COLUMNS = {
    "id": ("int64", False),
    "user": ("string", False),
    "amount": "float64",
    "ts": ("timestamp", False),
}


def write_events_csv(path: Path, rows: list[tuple], header: str = "id,user,amount,ts") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def events(start: int, n: int) -> list[tuple]:
    return [
        (i, f"u{i % 7}", round(i * 1.5, 2), f"2024-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z")
        for i in range(start, start + n)
    ]
