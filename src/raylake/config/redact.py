"""Keep secrets out of everything that stores or prints config.

One step, :func:`redact`, runs before a config is persisted or shown: run records
(``_runs``), the model registry (``_models.config``) and the Serve config file
(``model_server.config_file``); the storage options a Serve deployment is handed go
through :func:`redact_options` (keys only). It replaces with :data:`REDACTED`

- the value of every credential-like key: a name containing ``SECRET``, ``TOKEN``,
  ``PASSWORD``, ``PASSWD``, ``CREDENTIAL`` or ``KEY`` (any case), except the config's own
  non-secret names (``primary_key``, ``join_keys``, ...: :data:`NON_SECRET_NAMES`) and
  names that point at where a secret lives (``*_file``, ``*_path``, ``*_env``, ...);
- every value that came from an environment interpolation (``${oc.env:VAR}``, or an
  interpolation of such a value), found on the composed config before it is resolved
  (:func:`env_paths`): a value read from the environment is the usual way to hand a
  process a secret, whatever the key is called. The variables the shipped config reads
  for locations (``RAYLAKE_LAKE_ROOT``, ``RAY_ADDRESS``, ``AWS_REGION``, ...:
  :data:`NON_SECRET_ENV`) are kept: a run record without its lake root, or a Serve
  config without its region, would be wrong, not safer.

Keys of mappings that hold names (tables, columns, features, arms, xgboost params) are
names, not settings: a column called ``api_key`` is not redacted. The keys of option
mappings (``lake.storage_options``) are settings and are checked.

A redacted value is never used: :func:`without_redacted` drops it, so a process given a
redacted config (a Serve replica, ``serve deploy`` of the written file) reads that
setting from its own environment (deltalake and pyarrow read ``AWS_*`` natively).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Union

from omegaconf import Container, DictConfig, ListConfig, Node, OmegaConf

REDACTED = "<redacted>"

ConfigPath = tuple[Union[str, int], ...]

_SECRET_WORDS = re.compile(r"secret|token|password|passwd|credential|key", re.IGNORECASE)

# Config names that contain a secret word and hold no secret: column lists of the schema
# (tests/test_secrets.py checks every such schema field is named here or redacted on
# purpose) and the same words as other configs use them.
NON_SECRET_NAMES = frozenset({
    "primary_key", "primary_keys", "join_key", "join_keys", "entity_key", "entity_keys",
    "partition_key", "partition_keys", "sort_key", "sort_keys", "key_column", "key_columns",
    "keys",
    "log_keys",  # model_server.log_keys: how entity keys are logged (hash, keep, drop)
})

# A name ending so points at where a secret lives (a file, an environment variable), and
# the path is needed by whoever reads the config: AWS_WEB_IDENTITY_TOKEN_FILE, api_keys_env.
_REFERENCE_SUFFIXES = ("_file", "_path", "_dir", "_env", "_var", "_name")

# Environment variables that name a place, never a credential, by their standard
# meaning: the shipped config reads them (conf/lake/*.yaml, conf/ray/cluster.yaml).
NON_SECRET_ENV = frozenset({
    "RAYLAKE_LAKE_ROOT", "RAY_ADDRESS", "AWS_REGION", "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ALLOW_HTTP",
})

# Interpolations that read the environment (OmegaConf's resolver, and the legacy `env`
# one where an application still registers it), with the variable they read.
_ENV_RESOLVER = re.compile(r"\$\{\s*(?:oc\.env|env)\s*:\s*([^,}\s]*)")
# `${a.b}` (absolute) and `${.b}`/`${..b}` (relative) references to other config nodes.
_REFERENCE = re.compile(r"\$\{\s*(\.*)([A-Za-z_][\w.\-]*(?:\[\d+\][\w.\-]*)*)\s*\}")


def is_secret_name(name: object) -> bool:
    """True when a setting called ``name`` may hold a credential (see the module doc)."""
    text = str(name)
    lower = text.lower()
    if lower in NON_SECRET_NAMES or lower.endswith(_REFERENCE_SUFFIXES):
        return False
    return bool(_SECRET_WORDS.search(text))


def env_paths(cfg: DictConfig | ListConfig | None) -> frozenset[ConfigPath]:
    """Paths (tuples of keys and list indexes) of the values of ``cfg`` that come from
    the environment: an ``${oc.env:...}`` interpolation, or an interpolation of a node
    that does (followed to a fixed point). Read before resolving: a resolved config no
    longer shows where a value came from."""
    if cfg is None:
        return frozenset()
    interps: dict[ConfigPath, str] = {}
    _collect(cfg, (), interps)
    env = {p for p, text in interps.items()
           if any(var not in NON_SECRET_ENV for var in _ENV_RESOLVER.findall(text))}
    changed = True
    while changed:  # a reference to an env-derived node (or into one) is env-derived
        changed = False
        for path, text in interps.items():
            if path not in env and any(_under(ref, env) or _above(ref, env)
                                       for ref in _references(path, text)):
                env.add(path)
                changed = True
    return frozenset(env)


def redact(config: Any, env: Iterable[ConfigPath] = (), *, schema: Any = None) -> Any:
    """A copy of ``config`` (plain dicts, lists and scalars) with credential-like keys and
    the values at ``env`` paths (:func:`env_paths`) replaced by :data:`REDACTED`.

    ``schema`` (a config dataclass, by default the whole ``RaylakeConfig``) tells the
    settings from the names: keys of a name mapping (tables, columns, ...) are kept; a
    part of ``config`` the schema does not know is checked key by key."""
    if schema is None:
        from raylake.config.schema import RaylakeConfig

        schema = RaylakeConfig
    return _redact(config, (), frozenset(tuple(p) for p in env), schema, options=False)


def redact_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Storage (or any) options with credential-like keys redacted: what a Serve
    deployment is handed, so the arguments Serve keeps hold no credential; the
    replica reads the credentials from its environment (:func:`without_redacted`)."""
    return {str(k): REDACTED if is_secret_name(k) else v for k, v in (options or {}).items()}


def without_redacted(obj: Any) -> Any:
    """``obj`` with every mapping entry whose value is :data:`REDACTED` left out (lists keep
    their length: a redacted item stays): what a process given a redacted config uses,
    falling back to the default or the environment."""
    if isinstance(obj, Mapping):
        return {k: without_redacted(v) for k, v in obj.items() if v != REDACTED}
    if isinstance(obj, list):
        return [without_redacted(v) for v in obj]
    return obj


def redacted_container(cfg: DictConfig, extra_env: Iterable[ConfigPath] = ()) -> dict[str, Any]:
    """``cfg`` resolved to plain data (Enums by name) and redacted: the form a config is
    stored or printed in. ``extra_env`` adds env-derived paths known from elsewhere (the
    config this one was made from)."""
    env = env_paths(cfg) | frozenset(tuple(p) for p in extra_env)
    out = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(out, dict)
    redacted = redact({str(k): v for k, v in out.items()}, env)
    assert isinstance(redacted, dict)
    return redacted


# -- walking ---------------------------------------------------------------------------


def _redact(value: Any, path: ConfigPath, env: frozenset[ConfigPath], kind: Any, *,
            options: bool) -> Any:
    if path in env:
        return REDACTED
    kind = _unwrap(kind)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            child, names, opts = _child(kind, key, options)
            if not names and is_secret_name(key):
                out[key] = REDACTED
            else:
                out[key] = _redact(item, (*path, key), env, child, options=opts)
        return out
    if isinstance(value, (list, tuple)):
        args = typing.get_args(kind)
        item_kind = args[0] if args else Any
        return [_redact(v, (*path, i), env, item_kind, options=options)
                for i, v in enumerate(value)]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value


# Query parameters that carry a credential under a name without a secret word (signed
# URLs: AWS's X-Amz-Signature, Azure's sig).
_URL_SECRET_PARAMS = frozenset({"sig", "signature", "x-amz-signature", "x-amz-credential",
                                "x-amz-security-token", "code", "auth"})


def redact_url(text: str) -> str:
    """``text`` with the credentials a URL can carry replaced by :data:`REDACTED`: the
    password of ``user:password@host`` and query parameters with a credential-like name
    (``?token=...``, ``&api_key=...``, signed URLs' ``sig``); anything else unchanged (a
    webhook URL stays useful in a run record without its token)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, colon, _ = user.partition(":")
        netloc = f"{name}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) or k.lower() in _URL_SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, REDACTED if is_secret_name(k) or k.lower() in
                                _URL_SECRET_PARAMS else v) for k, v in pairs], safe="<>")
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _child(kind: Any, key: Any, options: bool) -> tuple[Any, bool, bool]:
    """For ``key`` of a mapping of type ``kind``: the type of its value, whether the key
    is a name (never redacted by name) and whether the value is an option mapping."""
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = _hints(kind)
        if key in hints:
            hint = _unwrap(hints[key])
            is_options = typing.get_origin(hint) is dict and str(key).endswith("options")
            return hint, False, is_options
        return Any, False, False
    if typing.get_origin(kind) is dict and not options:
        args = typing.get_args(kind)
        return (args[1] if len(args) == 2 else Any), True, False
    return Any, False, False


def _unwrap(kind: Any) -> Any:
    if typing.get_origin(kind) is Union:  # Optional[X] and X | None
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return kind


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _collect(node: Container, path: ConfigPath, out: dict[ConfigPath, str]) -> None:
    keys: Iterable[Any]
    if isinstance(node, DictConfig):
        keys = list(node.keys())
    else:
        assert isinstance(node, ListConfig)
        keys = range(len(node))
    for key in keys:
        child = node._get_node(key)
        if not isinstance(child, Node):
            continue
        where = (*path, key)
        if child._is_interpolation():
            out[where] = str(child._value())
        elif isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() \
                and not child._is_none():
            _collect(child, where, out)


def _references(path: ConfigPath, text: str) -> list[ConfigPath]:
    refs: list[ConfigPath] = []
    for m in _REFERENCE.finditer(text):
        dots, dotted = m.group(1), m.group(2)
        parts: list[str | int] = []
        for piece in dotted.replace("]", "").split("."):
            name, *indexes = piece.split("[")
            if name:
                parts.append(name)
            parts.extend(int(i) for i in indexes)
        base = path[: len(path) - len(dots)] if dots else ()
        refs.append((*base, *parts))
    return refs


def _under(ref: ConfigPath, env: set[ConfigPath]) -> bool:
    return any(ref[: len(p)] == p for p in env)


def _above(ref: ConfigPath, env: set[ConfigPath]) -> bool:
    return any(p[: len(ref)] == ref for p in env)
