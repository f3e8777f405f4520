"""Listing what was stored before the listing indexes existed: tasks and records kept by a Relay older
than `GET /v1/tasks` and `GET /v1/records` are added to the indexes after the upgrade.

Every task is in one of two time-ordered sets already: the ended ones in ``tasks:ended`` (what retention
walks), the others in the reconciler's watch list. The retention job walks the first a page per run, from
a cursor kept in Redis: the last task's end time and id, the set's own order, so a tie is neither skipped
nor read twice. It then reads the watch list whole (running tasks: few, and their times move). Each task
goes into its tenant's index and every tenant's (the dashboard's, which kept only the newest 1,000) by its
creation time, its record into the tenant's records by when the record last changed. Adding is idempotent
(``ZADD NX``), so a crash or a second scheduler costs a page again, never a wrong order. Then a mark says
it is done for good: tasks made since were indexed when made."""

from __future__ import annotations

import json

from app.stores.context import Context

PAGE = 500


def step(ctx: Context, page: int = PAGE) -> int:
    """One page of the backfill; returns how many tasks it looked at (0 once it is done)."""
    state = ctx.key("reindex", "listing")
    cursor = ctx.redis.get(state)
    if cursor == "done":
        return 0
    after = json.loads(cursor) if cursor else None  # [end time, task id] of the last one indexed
    ended = _ended_after(ctx, after, page)
    _index(ctx, [task_id for task_id, _ in ended])
    if len(ended) == page:
        ctx.redis.set(state, json.dumps([ended[-1][1], ended[-1][0]]))
        return len(ended)
    watched = ctx.redis.zrange(ctx.tasks.watch_key, 0, -1)
    _index(ctx, watched)
    ctx.redis.set(state, "done")
    return len(ended) + len(watched)


def _ended_after(ctx: Context, after: list | None, page: int) -> list[tuple[str, float]]:
    """The next ``page`` ended tasks in the set's own order (by end time, then id) after ``after``."""
    if after is None:
        return ctx.redis.zrangebyscore(
            ctx.tasks.ended_key, "-inf", "+inf", start=0, num=page, withscores=True
        )
    score, task_id = after
    found: list[tuple[str, float]] = []
    start = 0
    while len(found) < page:  # from the last one's time, inclusive: skip it and the ties before it
        chunk = ctx.redis.zrangebyscore(
            ctx.tasks.ended_key, score, "+inf", start=start, num=page, withscores=True
        )
        found += [(i, s) for i, s in chunk if s > score or i > task_id]
        if len(chunk) < page:
            break
        start += page
    return found[:page]


def _index(ctx: Context, task_ids: list[str]) -> None:
    tasks = ctx.tasks.many(task_ids)
    records = sorted({(t["tenant_id"], t["record_key"]) for t in tasks if t.get("record_key")})
    reads = ctx.redis.pipeline(transaction=False)
    for tenant_id, record_key in records:
        reads.hget(ctx.records.key_for(tenant_id, record_key), "updated_at")
    changed = reads.execute()
    pipe = ctx.redis.pipeline(transaction=False)
    for task in tasks:
        created = {task["task_id"]: float(task["created_at"])}
        pipe.zadd(ctx.tasks.tenant_key(task["tenant_id"]), created, nx=True)
        pipe.zadd(ctx.tasks.recent_key, created, nx=True)
    for (tenant_id, record_key), updated_at in zip(records, changed, strict=True):
        if updated_at is not None:  # a record retention removed has nothing to list
            pipe.zadd(ctx.records.index_key(tenant_id), {record_key: float(updated_at)}, nx=True)
    pipe.execute()
