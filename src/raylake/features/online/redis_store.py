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

    def write(self, rows: Sequence[tuple[str, float, float, dict[str, Any]]]) -> int:
        pipe = self._client.pipeline(transaction=False)
        for key, ts, created, values in rows:
            self._script(keys=[self._prefix + key],
                         args=[repr(ts), repr(created), json.dumps(values, default=str)], client=pipe)
        return sum(pipe.execute())

    def get(self, keys: Sequence[str]) -> list[tuple[float, dict[str, Any]] | None]:
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._prefix + key, "ts", "v")
        out = []
        for ts, payload in pipe.execute():
            out.append(None if ts is None else (float(ts), json.loads(payload)))
        return out

    def teardown(self, view: str | None = None) -> None:
        pattern = self._prefix + (f"{view}|*" if view else "*")
        for key in self._client.scan_iter(match=pattern, count=1000):
            self._client.delete(key)
