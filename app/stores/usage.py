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
SECONDS_BOUNDS = (
    1,
    2,
    5,
    10,
    15,
    30,
    45,
    60,
    90,
    120,
    180,
    240,
    300,
    420,
    600,
    900,
    1200,
    1500,
    1800,
    2700,
    3600,
)
"""The upper bounds of the generation-time histogram's buckets (completed tasks' agent time, by day): the
dashboard's p50 and p95 come from it, within a bucket's width. A last bucket takes the rest."""


def number(raw: str | float | int | None) -> int | float:
    """Credits are numbers, not always whole ones: 12.5 stays 12.5, 12.0 reads as 12."""
    value = float(raw or 0)
    return int(value) if value.is_integer() else value


def day_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def record_prefix(record_key: str) -> str:
    return f"r:{digest(record_key)}:" if record_key else ""


# KEYS: a day's row. ARGV: a count's field. One off the count, if the row and a count above 0 exist.
_UNCOUNT = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') > 0 then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
"""


class UsageRows:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix
        self._uncount = redis.register_script(_UNCOUNT)

    def key_for(self, tenant_id: str, day: str) -> str:
        return f"{self._prefix}usage:{tenant_id}:{day}"

    def raw(self, tenant_id: str, first: date, last: date) -> list[tuple[str, dict]]:
        """Each day's row from ``first`` to ``last`` (UTC, both included), as stored (empty for a day with no
        usage), in one round trip."""
        days = _days(first, last)
        pipe = self._redis.pipeline()
        for day in days:
            pipe.hgetall(self.key_for(tenant_id, day))
        return list(zip(days, pipe.execute(), strict=True))

    def spent(
        self, tenant_id: str, first: date, last: date, record_key: str | None = None
    ) -> float:
        """Credits from ``first`` to ``last`` (both included): the tenant's, or one record's."""
        field = record_prefix(record_key) + "credits_used" if record_key else "credits_used"
        pipe = self._redis.pipeline()
        for day in _days(first, last):
            pipe.hget(self.key_for(tenant_id, day), field)
        return sum(float(value or 0) for value in pipe.execute())

    def count_delivery(
        self, pipe, tenant_id: str, kind: str, outcome: str, when: float, life: int
    ) -> None:
        """Queue on ``pipe`` one delivery's outcome (delivered or dead) in its day's row."""
        key = self.key_for(tenant_id, day_of(when))
        pipe.hincrby(key, f"d:{kind}:{outcome}", 1)
        pipe.expire(key, life)

    def uncount_dead(self, tenant_id: str, kind: str, died_at: float) -> None:
        """A dead delivery replayed: it no longer counts as dead on the day it died (its new outcome will
        count on its own day), unless that day's row is gone."""
        self._uncount(keys=[self.key_for(tenant_id, day_of(died_at))], args=[f"d:{kind}:dead"])


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def days_of(stored: list[tuple[str, dict]], record_key: str | None = None) -> list[dict]:
    """The days of ``stored`` (UsageRows.raw) that have any usage, each with its records (or one record's)."""
    rows = []
    for day, raw in stored:
        row = totals(raw, record_prefix(record_key) if record_key else "")
        if row["task_count"]:
            rows.append(
                {"date": day, **row, **({} if record_key else {"records": records_of(raw)})}
            )
    return rows


def totals(raw: dict, prefix: str = "") -> dict:
    """The totals of a stored row, or of its part under ``prefix`` (a record's, a format's)."""
    return {
        "credits_used": number(raw.get(prefix + "credits_used")),
        "task_count": int(raw.get(prefix + "task_count") or 0),
        "duration_ms": int(raw.get(prefix + "duration_ms") or 0),
    }


def records_of(raw: dict) -> list[dict]:
    prefixes = sorted(
        name.removesuffix("key") for name in raw if name.startswith("r:") and name.endswith(":key")
    )
    return [{"record_key": raw[prefix + "key"], **totals(raw, prefix)} for prefix in prefixes]
