"""Where the lake lives: local disk or an object store, and how to reach it."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from raylake.config.redact import without_redacted
from raylake.errors import LakeError

S3_SCHEMES = ("s3://", "s3a://")
# Branches of the lake live under <root>/_branches/<name>/, each a lake of its own
# (raylake.lake.branches); the main lake never lists this folder as tables.
BRANCHES_DIR = "_branches"


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
        elif not root.split("://", 1)[1].split("/", 1)[0]:
            scheme = root.split("://", 1)[0]
            raise LakeError(f"lake.root {root!r} names no bucket; set it to "
                            f"{scheme}://BUCKET/PATH (for example {scheme}://my-bucket/lake).")
        # A redacted option (a Serve replica's arguments, a written Serve config) is left
        # out: deltalake and pyarrow read that credential from the environment.
        return cls(root=root.rstrip("/") or "/", options=without_redacted(dict(options or {})))

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

    def for_branch(self, name: str) -> Storage:
        """The storage of branch ``name`` of this (main) lake: ``<root>/_branches/<name>``,
        same options. ``name`` must be checked already (``validate_branch_name``)."""
        return Storage(root=self.uri(f"{BRANCHES_DIR}/{name}"), options=dict(self.options))

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """A pyarrow filesystem and the root path inside it."""
        if self.local:
            return pafs.LocalFileSystem(), self.root
        return filesystem_for(self.root, self.options)

    def delta_options(self) -> dict[str, str] | None:
        """The storage options for deltalake, or None when there are none: the
        configured ones, plus conditional writes for an S3 lake (:func:`s3_commit_defaults`)."""
        opts = dict(self.options)
        if self.root.startswith(S3_SCHEMES):
            opts = {**s3_commit_defaults(opts), **opts}
        return opts or None


def s3_commit_defaults(options: dict[str, str]) -> dict[str, str]:
    """The options an S3 lake gets unless ``options`` or the environment set them.

    S3 has no atomic rename, so a Delta commit there is safe only as a put-if-absent of
    the next log file (``If-None-Match: *``): a second writer of the same version gets
    412 and deltalake retries it on the new snapshot. deltalake 1.x commits that way with
    object_store's ``conditional_put=etag`` (its default today; ``disabled`` makes every
    commit fail). It is set explicitly so a default changed upstream, or a stray
    ``AWS_CONDITIONAL_PUT`` of another tool, cannot turn commits into blind overwrites.
    ``AWS_S3_LOCKING_PROVIDER`` (DynamoDB) and ``AWS_S3_ALLOW_UNSAFE_RENAME`` are
    ignored by deltalake 1.x, which never renames a commit into place.
    """
    # deltalake (object_store) reads the mode as an option named either way (any case)
    # or as the environment variable.
    if {k.upper() for k in options} & {"CONDITIONAL_PUT", "AWS_CONDITIONAL_PUT"} or (
            "AWS_CONDITIONAL_PUT" in os.environ):
        return {}  # the user chose (an S3-compatible store may need another mode)
    return {"conditional_put": "etag"}


def filesystem_for(uri: str, options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``uri``; S3 options map onto S3FileSystem."""
    opts = {k.upper(): v for k, v in (options or {}).items()}
    try:
        if uri.startswith(S3_SCHEMES):
            return pafs.S3FileSystem(**_s3_kwargs(opts)), uri.split("://", 1)[1]
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    except Exception as exc:  # pyarrow raises bare ArrowInvalid/OSError here
        raise LakeError(f"Cannot open storage {uri!r}: {exc}. Check the URI and credentials.") from exc


def _s3_kwargs(opts: dict[str, str]) -> dict[str, object]:
    """S3FileSystem arguments from deltalake-style options (upper-cased keys).

    pyarrow reads credentials and the region from the environment itself but not
    ``AWS_ENDPOINT_URL``, which deltalake does: the endpoint falls back to the
    environment here so both libraries reach the same store."""
    def pick(*names: str, env: bool = False) -> str | None:
        for name in names:
            if opts.get(name):
                return opts[name]
        return next((os.environ[n] for n in names if env and os.environ.get(n)), None)

    kwargs: dict[str, object] = {}
    region = pick("AWS_REGION", "REGION", "AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    endpoint = pick("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "ENDPOINT_URL",
                    "ENDPOINT", env=True)
    if endpoint:
        kwargs["endpoint_override"] = endpoint
        allow_http = (pick("AWS_ALLOW_HTTP", "ALLOW_HTTP", env=True) or "").lower() == "true"
        if endpoint.startswith("http://") or (allow_http and "://" not in endpoint):
            kwargs["scheme"] = "http"
    key, secret = pick("AWS_ACCESS_KEY_ID", "ACCESS_KEY_ID"), pick("AWS_SECRET_ACCESS_KEY",
                                                                 "SECRET_ACCESS_KEY")
    if key and secret:  # else pyarrow's own chain (environment, profile, instance role)
        kwargs.update(access_key=key, secret_key=secret)
        token = pick("AWS_SESSION_TOKEN", "SESSION_TOKEN", "TOKEN")
        if token:
            kwargs["session_token"] = token
    return kwargs
