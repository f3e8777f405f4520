"""Records: a customer's thing (a CRM deal, an Airtable row, a Slack channel) and its documents.

A record keeps one run per format, so "add a forecast tab" resumes the deal's workbook while the
deal's memo stays its own document.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import WatchError

from app.core.ids import digest

TASK_HISTORY = 200  # tasks remembered per record


@dataclass(frozen=True, slots=True)
class Record:
    """A record as stored: every field Relay writes on its hash, typed. Text that is empty or absent in
    Redis reads as None."""

    record_key: str
    created_at: float
    updated_at: float
    run_id: str | None = None
    """The run of its latest submit."""
    runs: dict[str, str] = field(default_factory=dict)
    """Its documents: the run of each format."""
    # what its ended tasks used, counted by the task store's finish script
    credits_used: float = 0.0
    duration_ms: int = 0
    task_count: int = 0
    latest_task_id: str | None = None
    """Its latest completed task."""

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Record:
        """The one place a record's Redis strings become values. Fields this code does not know (written by
        a newer Relay during a rolling deploy) are left out rather than refused."""
        return cls(
            record_key=raw["record_key"],
            created_at=float(raw["created_at"]),
            updated_at=float(raw["updated_at"]),
            run_id=raw.get("run_id") or None,
            runs=json.loads(raw.get("runs") or "{}"),
            credits_used=float(raw.get("credits_used") or 0),
            duration_ms=int(raw.get("duration_ms") or 0),
            task_count=int(raw.get("task_count") or 0),
            latest_task_id=raw.get("latest_task_id") or None,
        )


class RecordStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def _key(self, tenant_id: str, record_key: str, *more: str) -> str:
        return self._prefix + ":".join(("record", tenant_id, digest(record_key), *more))

    def key_for(self, tenant_id: str, record_key: str) -> str:
        return self._key(tenant_id, record_key)

    def index_key(self, tenant_id: str) -> str:
        """A tenant's record keys by when each last changed: GET /v1/records, newest first."""
        return f"{self._prefix}records:t:{tenant_id}"

    def newest(self, tenant_id: str, before: float | None, count: int) -> list[tuple[str, float]]:
        """Up to ``count`` (record key, updated at), newest first, changed before ``before`` (excluded)."""
        top = f"({before!r}" if before is not None else "+inf"
        return [
            (key, float(score))
            for key, score in self._redis.zrevrangebyscore(
                self.index_key(tenant_id), top, "-inf", start=0, num=count, withscores=True
            )
        ]

    def tasks_key(self, tenant_id: str, record_key: str) -> str:
        """The record's tasks by submission time (the ones still kept: retention removes the others)."""
        return self._key(tenant_id, record_key, "tasks")

    def forget_task(self, pipe, tenant_id: str, record_key: str, task_id: str) -> None:
        """Queue on ``pipe`` the task's removal from its record's tasks (retention)."""
        pipe.zrem(self.tasks_key(tenant_id, record_key), task_id)

    def get(self, tenant_id: str, record_key: str) -> Record | None:
        raw = self._redis.hgetall(self._key(tenant_id, record_key))
        return Record.from_hash(raw) if raw else None

    def run_for(self, tenant_id: str, record_key: str, fmt: str) -> str | None:
        runs = self._redis.hget(self._key(tenant_id, record_key), "runs")
        return json.loads(runs).get(fmt) if runs else None

    def map_run(self, tenant_id: str, record_key: str, fmt: str, run_id: str) -> None:
        """Point the record's document of this format at ``run_id`` (a new or a restarted run)."""
        key, now = self._key(tenant_id, record_key), time.time()
        # WATCH: two submits for one record must not lose a format
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    runs = json.loads(pipe.hget(key, "runs") or "{}")
                    runs[fmt] = run_id
                    pipe.multi()
                    pipe.hsetnx(key, "created_at", now)
                    pipe.hset(
                        key,
                        mapping={
                            "record_key": record_key,
                            "run_id": run_id,
                            "runs": json.dumps(runs),
                            "updated_at": now,
                        },
                    )
                    pipe.zadd(self.index_key(tenant_id), {record_key: now})
                    pipe.execute()
                    return
                except WatchError:  # somebody changed it first: read again
                    continue

    def touch(self, tenant_id: str, record_key: str, pipe=None) -> None:
        """The record exists and was used now (at once, or queued on ``pipe``)."""
        key, now, own = self._key(tenant_id, record_key), time.time(), pipe is None
        pipe = self._redis.pipeline() if own else pipe
        pipe.hsetnx(key, "created_at", now)
        pipe.hset(key, mapping={"record_key": record_key, "updated_at": now})
        pipe.zadd(self.index_key(tenant_id), {record_key: now})
        if own:
            pipe.execute()

    def add_task(self, tenant_id: str, record_key: str, task_id: str, pipe=None) -> None:
        """The task in the record's history (at once, or queued on ``pipe``)."""
        tasks, own = self.tasks_key(tenant_id, record_key), pipe is None
        pipe = self._redis.pipeline() if own else pipe
        pipe.zadd(tasks, {task_id: time.time()})
        pipe.zremrangebyrank(tasks, 0, -TASK_HISTORY - 1)
        if own:
            pipe.execute()

    def task_ids(self, tenant_id: str, record_key: str, limit: int = 50) -> list[str]:
        return list(self._redis.zrevrange(self.tasks_key(tenant_id, record_key), 0, limit - 1))

    def forget(self, tenant_id: str, record_key: str) -> bool:
        self._redis.zrem(self.index_key(tenant_id), record_key)
        return bool(
            self._redis.delete(
                self._key(tenant_id, record_key), self.tasks_key(tenant_id, record_key)
            )
        )
