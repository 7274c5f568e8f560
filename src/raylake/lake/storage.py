"""Where the lake lives: local disk or an object store, and how to reach it."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from raylake.errors import LakeError


def is_uri(path: str) -> bool:
    """True when ``path`` has a scheme (``s3://...``, ``file://...``), False for a plain
    local path."""
    return "://" in path


@dataclass(frozen=True)
class Storage:
    """The lake root and the options deltalake and pyarrow need to reach it."""

    root: str
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(cls, root: str, options: dict[str, str] | None = None) -> Storage:
        """Storage at ``root``: a ``file://`` prefix dropped, a local path made absolute
        (``~`` expanded); LakeError when ``root`` is empty."""
        if not root:
            raise LakeError("lake.root is empty; set it to a folder or an s3:// URI.")
        if root.startswith("file://"):
            root = root[len("file://") :]
        if not is_uri(root):
            root = os.path.abspath(os.path.expanduser(root))
        return cls(root=root.rstrip("/") or "/", options=dict(options or {}))

    @property
    def local(self) -> bool:
        """True when the root is a local folder, not a URI."""
        return not is_uri(self.root)

    def uri(self, relative: str) -> str:
        """``relative`` (a ``/``-separated path) under the root: an OS path for a local
        root, a URI otherwise."""
        if self.local:
            return os.path.join(self.root, *relative.split("/"))
        return posixpath.join(self.root, relative)

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the root path inside it."""
        if self.local:
            return pafs.LocalFileSystem(), self.root
        return filesystem_for(self.root, self.options)

    def delta_options(self) -> dict[str, str] | None:
        """The storage options for deltalake, or None when there are none."""
        return dict(self.options) or None


def filesystem_for(uri: str, options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``uri``; S3 options map onto S3FileSystem."""
    opts = {k.upper(): v for k, v in (options or {}).items()}
    try:
        if uri.startswith(("s3://", "s3a://")):
            kwargs: dict[str, object] = {}
            if "AWS_REGION" in opts:
                kwargs["region"] = opts["AWS_REGION"]
            endpoint = opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT")
            if endpoint:
                kwargs["endpoint_override"] = endpoint
                if endpoint.startswith("http://"):
                    kwargs["scheme"] = "http"
            path = uri.split("://", 1)[1]
            return pafs.S3FileSystem(**kwargs), path
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    except Exception as exc:  # pyarrow raises bare ArrowInvalid/OSError here
        raise LakeError(f"Cannot open storage {uri!r}: {exc}. Check the URI and credentials.") from exc
