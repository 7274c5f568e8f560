"""The lake: Delta tables, versions, tags, diffs and run records."""

from raylake.lake.diff import TableDiff, diff_versions
from raylake.lake.names import quarantine_table, validate_table_name
from raylake.lake.runs import RunRecord, RunRecorder, get_run, list_runs
from raylake.lake.storage import Storage
from raylake.lake.tables import SAFE_VACUUM_RETENTION_HOURS, Lake
from raylake.lake.tags import TagStore

__all__ = [
    "SAFE_VACUUM_RETENTION_HOURS",
    "Lake",
    "RunRecord",
    "RunRecorder",
    "Storage",
    "TableDiff",
    "TagStore",
    "diff_versions",
    "get_run",
    "list_runs",
    "quarantine_table",
    "validate_table_name",
]
