"""Finding work: a tenant's tasks and records, newest first, a page at a time.

Tasks are read from a time-ordered index (the tenant's, or the record's when one is asked for) in chunks,
filtered by status and format, until the page is full or SCAN_LIMIT tasks were looked at; the cursor is the
creation time of the last one looked at, so a sparse filter answers a short page with a cursor to go on from,
never a long scan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.stores.records import Record, RecordStore
from app.stores.tasks import Task, TaskStore


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    records: RecordStore
    tasks: TaskStore


CHUNK = 200
SCAN_LIMIT = 2000
"""Tasks looked at for one page at most: a filter that matches few tasks answers in bounded time."""


@dataclass(frozen=True)
class TaskFilter:
    status: str | None = None
    record_key: str | None = None
    format: str | None = None
    created_from: float | None = None
    created_to: float | None = None


def tasks(
    ctx: Needs, tenant_id: str | None, wanted: TaskFilter, cursor: float | None, limit: int
) -> tuple[list[Task], float | None]:
    """A page of the tenant's tasks matching ``wanted``, newest first, and the cursor of the next page. No
    tenant: every tenant's, from the index of the newest (the operator's dashboard)."""
    if tenant_id and wanted.record_key:
        index = ctx.records.tasks_key(tenant_id, wanted.record_key)
    else:
        index = ctx.tasks.tenant_key(tenant_id) if tenant_id else ctx.tasks.recent_key
    before = (
        cursor if wanted.created_to is None else min(cursor or wanted.created_to, wanted.created_to)
    )
    filtered = bool(wanted.status or wanted.format or (wanted.record_key and not tenant_id))
    size = CHUNK if filtered else limit + 1  # unfiltered, the page and one more tell all
    found: list[Task] = []
    looked, last = 0, 0.0
    while looked < SCAN_LIMIT:
        chunk = ctx.tasks.newest(index, before, wanted.created_from, min(size, SCAN_LIMIT - looked))
        if not chunk:
            return found, None
        read = {task.task_id: task for task in ctx.tasks.many([task_id for task_id, _ in chunk])}
        for task_id, score in chunk:
            task = read.get(task_id)  # gone since (retention): skipped
            if task is not None and _matches(task, wanted):
                # one more matches: there is a next page, from the last one shown
                if len(found) == limit:
                    return found, last
                found.append(task)
                last = score
        looked += len(chunk)
        before = chunk[-1][1]
        if len(chunk) < size:
            return found, None
    return found, before


def _matches(task: Task, wanted: TaskFilter) -> bool:
    if wanted.status and task.status != wanted.status:
        return False
    if wanted.record_key and task.record_key != wanted.record_key:
        return False
    return not wanted.format or task.format == wanted.format


def records(
    ctx: Needs, tenant_id: str, cursor: float | None, limit: int
) -> tuple[list[Record], float | None]:
    """A page of the tenant's records, the most recently used first, and the cursor of the next page."""
    keys = ctx.records.newest(tenant_id, cursor, limit + 1)
    page = [record for key, _ in keys[:limit] if (record := ctx.records.get(tenant_id, key))]
    return page, (keys[limit - 1][1] if len(keys) > limit else None)
