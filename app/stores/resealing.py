"""Re-encrypting a stored field with the newest key (`relay secrets rotate`): each store walks its own keys
and hands each sealed field to ``swap``, which writes the resealed value only if the field still holds what
was read. A value written meanwhile was sealed with the newest key already (the processes run with it
before a rotation) and is left as it is."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis

_SWAP = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class Swapper:
    def __init__(self, redis: Redis):
        self._redis = redis
        self._swap = redis.register_script(_SWAP)

    def swap(self, key: str, field: str, change: Callable[[str], str]) -> bool:
        """The hash field turned by ``change`` (None or empty: nothing to do); True when written."""
        before = self._redis.hget(key, field)
        if not before:
            return False
        after = change(before)
        if after == before:
            return False
        return bool(self._swap(keys=[key], args=[field, before, after]))
