"""Daily usage rows: credits, tasks and agent time per tenant and per record, by UTC day.

They are written by the same Lua call that finishes a task (app/domain/tracking.py) and outlive the tasks they
count: tasks go after RELAY_TASK_RETENTION_SECONDS, the rows after RELAY_USAGE_RETENTION_SECONDS (13
months), as Redis expiries. One hash per tenant and day: the tenant's totals under plain field names, each
record's under ``r:<digest>:<field>``, with its key under ``r:<digest>:key``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from redis import Redis

from app.core.ids import digest

FIELDS = ("credits_used", "task_count", "duration_ms")

# Appended to the finish script (app/domain/tracking.py): KEYS[6] the day's row; ARGV[1] credits, ARGV[2] agent ms,
# ARGV[4] the row's life, ARGV[5] the record's field prefix ('' without a record), ARGV[6] the record key.
LUA_COUNT = """
local row, ttl, prefix = KEYS[6], ARGV[4], ARGV[5]
redis.call('HINCRBYFLOAT', row, 'credits_used', ARGV[1])
redis.call('HINCRBY', row, 'task_count', 1)
redis.call('HINCRBY', row, 'duration_ms', ARGV[2])
if prefix ~= '' then
  redis.call('HSET', row, prefix .. 'key', ARGV[6])
  redis.call('HINCRBYFLOAT', row, prefix .. 'credits_used', ARGV[1])
  redis.call('HINCRBY', row, prefix .. 'task_count', 1)
  redis.call('HINCRBY', row, prefix .. 'duration_ms', ARGV[2])
end
redis.call('EXPIRE', row, ttl)
"""


def number(raw: str | float | int | None) -> int | float:
    """Credits are numbers, not always whole ones: 12.5 stays 12.5, 12.0 reads as 12."""
    value = float(raw or 0)
    return int(value) if value.is_integer() else value


def day_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def record_prefix(record_key: str) -> str:
    return f"r:{digest(record_key)}:" if record_key else ""


class UsageRows:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def key_for(self, tenant_id: str, day: str) -> str:
        return f"{self._prefix}usage:{tenant_id}:{day}"

    def days(self, tenant_id: str, first: date, last: date, record_key: str | None = None) -> list[dict]:
        """One row per day from ``first`` to ``last`` (UTC, both included) that has any usage."""
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        pipe = self._redis.pipeline()
        for day in days:
            pipe.hgetall(self.key_for(tenant_id, day.isoformat()))
        rows = []
        for day, raw in zip(days, pipe.execute(), strict=True):
            row = _row(raw, record_prefix(record_key) if record_key else "")
            if row["task_count"]:
                rows.append({"date": day.isoformat(), **row,
                             **({} if record_key else {"records": _records(raw)})})
        return rows


def _row(raw: dict, prefix: str) -> dict:
    return {"credits_used": number(raw.get(prefix + "credits_used")),
            "task_count": int(raw.get(prefix + "task_count") or 0),
            "duration_ms": int(raw.get(prefix + "duration_ms") or 0)}


def _records(raw: dict) -> list[dict]:
    prefixes = sorted(name.removesuffix("key") for name in raw if name.startswith("r:") and name.endswith(":key"))
    return [{"record_key": raw[prefix + "key"], **_row(raw, prefix)} for prefix in prefixes]
