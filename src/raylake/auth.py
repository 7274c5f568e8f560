"""API keys for the HTTP servers (the feature server and the model server).

Keys never sit in config: a replica reads them from its own environment and from a
secret file, so they never pass through Serve's deployment arguments or the Serve
config file. Each key has a name (for logs), scopes and a secret::

    RAYLAKE_API_KEYS="reader:read:<secret>,pusher:read+push:<secret>"

or, one per line (``#`` starts a comment), in the file named by
``feature_server.api_keys_file`` / ``model_server.api_keys_file`` or by the
``RAYLAKE_API_KEYS_FILE`` environment variable::

    reader:read:<secret>
    pusher:read+push:<secret>

Scopes: ``read`` (``/get-online-features``, ``/predict``) and ``push`` (``/push``).
A request shows its key as ``Authorization: Bearer <secret>`` or ``X-API-Key:
<secret>``. With no key configured, reads are open and push is off; with keys,
every route but ``/health`` needs a key with its scope. The file is re-read when it
changes (keys rotate without a restart); a configured file that cannot be read closes
every guarded route (403 naming the file) rather than opening it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from raylake.errors import AuthError, ConfigError

ENV_KEYS = "RAYLAKE_API_KEYS"
ENV_FILE = "RAYLAKE_API_KEYS_FILE"
SCOPES = ("read", "push")
MIN_SECRET = 16  # characters: a guessable key is no key
HOWTO = (f"set {ENV_KEYS}='NAME:read+push:SECRET' in the server's environment or list the "
         f"keys in a file named by {ENV_FILE} or the server's api_keys_file setting "
         "(docs/security.md#http)")


@dataclass(frozen=True)
class ApiKey:
    """One key: its name (safe to log), scopes and the SHA-256 of its secret."""

    name: str
    scopes: frozenset[str]
    digest: bytes


def parse_keys(text: str, where: str) -> list[ApiKey]:
    """Keys from ``NAME:SCOPES:SECRET`` entries (comma- or line-separated, ``#``
    comments); ConfigError naming ``where`` and the entry's position for a bad one (the
    secret itself is never shown)."""
    keys = []
    entries = [e.strip() for line in text.splitlines()
               for e in line.split("#", 1)[0].split(",")]
    for i, entry in enumerate(e for e in entries if e):
        parts = entry.split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"{where}: entry {i + 1} is not NAME:SCOPES:SECRET "
                              "(e.g. pusher:read+push:<secret>).")
        name, scopes_text, secret = (p.strip() for p in parts)
        scopes = frozenset(s.strip() for s in scopes_text.split("+") if s.strip())
        bad = sorted(scopes - set(SCOPES))
        if not name or not scopes or bad:
            # No field of a bad entry is quoted: swapped fields would show the secret.
            raise ConfigError(f"{where}: entry {i + 1} has no name or unknown scopes; give "
                              "NAME:SCOPES:SECRET with scopes read, push or read+push.")
        if len(secret) < MIN_SECRET:
            raise ConfigError(f"{where}: the secret of entry {i + 1} is shorter than "
                              f"{MIN_SECRET} characters; make one with python -c "
                              "'import secrets; print(secrets.token_urlsafe(32))'.")
        keys.append(ApiKey(name, scopes, _digest(secret)))
    return keys


def _digest(secret: str) -> bytes:
    # Compared as fixed-length digests: the time taken says nothing about the length
    # or prefix of the secret.
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The keys a server accepts: the environment's (read once) and the file's (re-read
    when the file changes). ``check`` admits or refuses a request."""

    def __init__(self, file: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, *, required: bool = False) -> None:
        env = os.environ if env is None else env
        self.file = file or env.get(ENV_FILE) or None
        self._env_keys = parse_keys(env.get(ENV_KEYS, ""), ENV_KEYS)
        self._file_keys: list[ApiKey] = []
        self._file_state: object = None
        self._file_error: Optional[str] = None
        self._reload()
        if self._file_error:  # at start a broken file is a config error, not a silent 401
            raise ConfigError(self._file_error)
        if required and not self.configured:
            # Keys were found where the app was built (`required`) but not here: a replica
            # on another node without the environment or the file must not serve open.
            raise ConfigError(f"API keys were configured where this server was deployed but "
                              f"this replica finds none: {HOWTO} on every node.")

    @property
    def configured(self) -> bool:
        """Whether any key is configured (then every guarded route needs one)."""
        return bool(self._env_keys or self._file_keys or self._file_error)

    def _reload(self) -> None:
        if not self.file:
            return
        try:
            st = os.stat(self.file)
            state = (st.st_mtime_ns, st.st_size, st.st_ino)
            if state == self._file_state:
                return
            with open(self.file, encoding="utf-8") as fh:
                keys = parse_keys(fh.read(), f"API key file {self.file}")
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            self._file_keys, self._file_state = [], None
            self._file_error = (f"The API key file {self.file} cannot be used: "
                                f"{exc if isinstance(exc, ConfigError) else type(exc).__name__}.")
            return
        self._file_keys, self._file_state, self._file_error = keys, state, None

    def check(self, headers: Mapping[str, str], scope: str) -> Optional[str]:
        """The name of the request's key if it may use ``scope`` (None: no keys are
        configured and ``scope`` is read); AuthError 401 (no or unknown key) or 403
        (the key lacks the scope, or push with no keys configured) otherwise."""
        self._reload()
        if self._file_error:
            raise AuthError(403, f"{self._file_error} Fix the file; until then only "
                                 "/health answers.")
        keys = self._env_keys + self._file_keys
        if not keys:
            if scope == "read":
                return None
            raise AuthError(403, f"{scope} is off: no API key is configured. To turn it on, "
                                 f"{HOWTO}, and send the key as 'Authorization: Bearer <key>'.")
        presented = _presented(headers)
        if presented is None:
            raise AuthError(401, "This route needs an API key: send 'Authorization: Bearer "
                                 "<key>' or 'X-API-Key: <key>'.")
        digest = _digest(presented)
        found = None
        for key in keys:  # every key compared: no early exit on a match
            if hmac.compare_digest(digest, key.digest):
                found = key
        if found is None:
            raise AuthError(401, "The API key is not valid.")
        if scope not in found.scopes:
            raise AuthError(403, f"API key {found.name!r} lacks the {scope!r} scope "
                                 f"(it has {'+'.join(sorted(found.scopes))}).")
        return found.name


def _presented(headers: Mapping[str, str]) -> Optional[str]:
    auth = headers.get("authorization")
    if auth:
        kind, _, token = auth.strip().partition(" ")
        if kind.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
