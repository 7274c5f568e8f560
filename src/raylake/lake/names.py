"""Table names: short, relative, and unable to leave the lake."""

from __future__ import annotations

import re

from raylake.errors import TableNameError

# A name is one or more segments joined by "/" (namespaces: "raw/flights").
# System tables of raylake itself start with "_" and are reachable only with
# system=True, so a user table can never shadow or overwrite them.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")
_SYSTEM_SEGMENT = re.compile(r"^_[A-Za-z0-9][A-Za-z0-9_\-]{0,126}$")


def validate_table_name(name: str, *, system: bool = False) -> str:
    """Return ``name`` if it is a safe table name, else raise TableNameError."""
    if not isinstance(name, str) or not name:
        raise TableNameError(f"Table name {name!r} is empty; give a name like 'flights'.")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "://" in name:
        raise TableNameError(
            f"Table name {name!r} is absolute; give a name relative to lake.root "
            "such as 'flights' or 'raw/flights'."
        )
    if "\\" in name:
        raise TableNameError(f"Table name {name!r} contains '\\'; use '/' between namespaces.")
    segments = name.split("/")
    for i, seg in enumerate(segments):
        if seg in ("", ".", ".."):
            raise TableNameError(
                f"Table name {name!r} contains an empty, '.' or '..' segment; "
                "names cannot leave the lake. Use letters, digits, '_' and '-'."
            )
        ok = _SEGMENT.match(seg) or (system and i == 0 and _SYSTEM_SEGMENT.match(seg))
        if not ok:
            hint = (
                " Names starting with '_' are reserved for raylake's own tables."
                if seg.startswith("_")
                else ""
            )
            raise TableNameError(
                f"Table name {name!r}: segment {seg!r} must start with a letter or digit "
                f"and contain only letters, digits, '_' and '-'.{hint}"
            )
    return name


def quarantine_table(name: str) -> str:
    """The quarantine table of ``name``: ``<name>__quarantine``."""
    return f"{validate_table_name(name)}__quarantine"
