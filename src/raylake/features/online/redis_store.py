"""Redis online store: one hash per entity key, newer event times win (checked in Lua)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from raylake.errors import ConfigError
from raylake.features.online.base import OnlineStore

# Write only when the stored event time is older (atomic on the server).
_NEWER_WINS = """
local cur = redis.call('HMGET', KEYS[1], 'ts', 'created')
local ts, created = tonumber(ARGV[1]), tonumber(ARGV[2])
if (not cur[1]) or tonumber(cur[1]) < ts
   or (tonumber(cur[1]) == ts and tonumber(cur[2]) <= created) then
  redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'created', ARGV[2], 'v', ARGV[3])
  return 1
end
return 0
"""

# Every key's (ts, values) as one JSON text: one round trip and one bulk reply to
# parse, instead of a reply per key (redis-py parses replies in Python).
_GET_ALL = """
local out = {}
for i, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, 'ts', 'v')
  if row[1] and row[2] then out[i] = '[' .. row[1] .. ',' .. row[2] .. ']' else out[i] = 'null' end
end
return '[' .. table.concat(out, ',') .. ']'
"""


class RedisStore(OnlineStore):
    def __init__(self, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 prefix: str = "raylake:", **_: Any) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - a declared dependency of the extra
            raise ConfigError("The redis online store needs `pip install redis`.") from exc
        # The password, if any, comes from REDIS_PASSWORD: never from config files.
        import os

        self._client = redis.Redis(host=host, port=port, db=db,
                                   password=os.environ.get("REDIS_PASSWORD"))
        self._prefix = prefix
        self._script = self._client.register_script(_NEWER_WINS)
        self._get_all = self._client.register_script(_GET_ALL)

    def write(self, rows: Sequence[tuple[str, float, float, dict[str, Any]]]) -> int:
        """Upsert ``rows`` in one pipeline, each kept only where newer than the stored row
        (checked atomically on the server); returns how many rows were written."""
        pipe = self._client.pipeline(transaction=False)
        for key, ts, created, values in rows:
            self._script(keys=[self._prefix + key],
                         args=[repr(ts), repr(created), json.dumps(values, default=str)], client=pipe)
        return sum(pipe.execute())

    def get(self, keys: Sequence[str]) -> list[tuple[float, dict[str, Any]] | None]:
        """For each key, (event time in epoch seconds, values) or None where nothing is
        stored; one round trip."""
        if not keys:
            return []
        found = json.loads(self._get_all(keys=[self._prefix + k for k in keys]))
        return [None if row is None else (float(row[0]), row[1]) for row in found]

    def teardown(self, view: str | None = None) -> None:
        """Delete the keys of ``view`` (every key under this store's prefix when None),
        found with SCAN."""
        pattern = self._prefix + (f"{view}|*" if view else "*")
        for key in self._client.scan_iter(match=pattern, count=1000):
            self._client.delete(key)

    def delete(self, keys: Sequence[str]) -> int:
        """Delete the hashes of ``keys`` (1,000 keys a ``DEL``); returns how many existed."""
        deleted = 0
        for i in range(0, len(keys), 1000):
            chunk = [self._prefix + k for k in keys[i : i + 1000]]
            if chunk:
                deleted += int(self._client.delete(*chunk))
        return deleted
