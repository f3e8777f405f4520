"""The retention sweep: nothing the relay stores grows without end (docs/operations.md, 'Retention').

Run by the scheduler every RELAY_RETENTION_SWEEP_SECONDS. It removes in small batches from time-ordered
indexes, never a SCAN over the keyspace or a long blocking call:
- ended tasks (``tasks:ended``, by when they ended), with their deliveries, their place in their record's task
  list, the dashboard's list and the dead letters, after RELAY_TASK_RETENTION_SECONDS; optionally appended
  to a daily JSONL archive first (RELAY_ARCHIVE_DIR);
- ended batches (``batches:ended``), with their rows and the deliveries of their end, after the same time;
- the tenants' event logs, by entry id (a stream id is a time), after the same time;
- the audit log (each tenant's stream and the all-tenants one), after RELAY_AUDIT_RETENTION_SECONDS;
- dead letters, after RELAY_DEAD_LETTER_RETENTION_SECONDS, with a log line each;
- intake and delivery-lane entries older than RELAY_STREAM_RETENTION_SECONDS (work that failed for good);
- stream consumers of worker processes that are gone (idle, nothing pending).
What expires by itself is left to Redis: webhook and Slack dedupe keys, Idempotency-Keys, usage rows, RQ's
results and failed jobs (whose registries RQ's worker maintenance cleans).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Protocol

from app.core import metrics
from app.core.config import RelayConfig
from app.core.states import DELIVERY_SETTLED, TASK_ENDED
from app.domain import sealing
from app.stores.audit import AuditLog
from app.stores.batches import BatchStore
from app.stores.consumer_group import GroupStream
from app.stores.deliveries import DeliveryStore
from app.stores.events import EventLog, iso
from app.stores.intake_stream import IntakeStream
from app.stores.lane_stream import LaneStream
from app.stores.primary import Primary
from app.stores.records import RecordStore
from app.stores.tasks import Task, TaskStore
from app.stores.tenants import TenantStore


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig
    primary: Primary
    tenants: TenantStore
    records: RecordStore
    tasks: TaskStore
    events: EventLog
    deliveries: DeliveryStore
    batches: BatchStore
    intake: IntakeStream
    lane: LaneStream
    audit: AuditLog


log = logging.getLogger(__name__)

BATCH = 200


def sweep(ctx: Needs, now: float | None = None, budget_seconds: float = 20.0) -> dict[str, int]:
    """One sweep; returns how many of each kind it removed. Stops after ``budget_seconds`` of task removal
    (the next sweep goes on), so a backlog never makes one job run long."""
    now = time.time() if now is None else now
    config = ctx.config
    removed = {
        "task": 0,
        "delivery": 0,
        "batch": 0,
        "dead_letter": 0,
        "event": 0,
        "audit_entry": 0,
        "intake_entry": 0,
        "lane_entry": 0,
        "consumer": 0,
    }
    deadline = time.monotonic() + budget_seconds
    while time.monotonic() < deadline:
        tasks, deliveries = _drop_tasks(ctx, now - config.task_retention_seconds, now)
        removed["task"] += tasks
        removed["delivery"] += deliveries
        if tasks < BATCH:
            break
    removed["batch"] = _drop_batches(ctx, now - config.task_retention_seconds, now)
    ctx.deliveries.index_dead_letters_by_tenant()  # once, after an upgrade
    removed["dead_letter"] = _drop_dead_letters(ctx, now - config.dead_letter_retention_seconds)
    removed["event"] = sum(
        ctx.events.trim_before(tenant_id, now - config.task_retention_seconds)
        for tenant_id in ctx.tenants.ids()
    )
    audit_before = now - config.audit_retention_seconds
    removed["audit_entry"] = sum(
        ctx.audit.trim_before(tenant_id, audit_before) for tenant_id in [None, *ctx.tenants.ids()]
    )
    oldest = now - config.stream_retention_seconds
    removed["intake_entry"] = _trim(ctx.intake, oldest, "intake")
    removed["lane_entry"] = _trim(ctx.lane, oldest, "delivery lane")
    removed["consumer"] = sum(
        len(stream.drop_idle_consumers(config.consumer_idle_seconds))
        for stream in (ctx.intake, ctx.lane)
    )
    for kind, count in removed.items():
        if count:
            metrics.RETENTION_REMOVED.labels(kind).inc(count)
    return removed


# -- tasks -----------------------------------------------------------------------------------------


def _drop_tasks(ctx: Needs, ended_before: float, now: float) -> tuple[int, int]:
    """One batch of tasks that ended before ``ended_before``. A task whose follow-ups are not done (a
    delivery still retrying) waits for another sweep. Returns (tasks, deliveries) removed."""
    task_ids = ctx.tasks.ended_before(ended_before, BATCH)
    if not task_ids:
        return 0, 0
    tasks = ctx.tasks.many(task_ids)
    states = ctx.deliveries.states([d for t in tasks for d in t.delivery_ids])
    done = [
        t
        for t in tasks
        if t.status in TASK_ENDED
        and t.fanout != "pending"
        and all(states.get(d, "delivered") in DELIVERY_SETTLED for d in t.delivery_ids)
    ]
    later = now - ctx.config.task_retention_seconds + ctx.config.retention_sweep_seconds
    pipe = ctx.primary.pipeline(transaction=False)
    waiting = {t.task_id for t in tasks} - {t.task_id for t in done}
    ctx.tasks.look_again_at(pipe, waiting, later)  # next sweep
    for task in done:
        ctx.tasks.forget(pipe, task.task_id, task.tenant_id)
        ctx.deliveries.forget(pipe, task.tenant_id, task.delivery_ids)
        if task.record_key:
            ctx.records.forget_task(pipe, task.tenant_id, task.record_key, task.task_id)
    found = {t.task_id for t in tasks}
    # removed some other way
    ctx.tasks.not_ended_any_more(pipe, [task_id for task_id in task_ids if task_id not in found])
    _archive(ctx, done)
    pipe.execute()
    return len(done), sum(len(t.delivery_ids) for t in done)


def _drop_batches(ctx: Needs, ended_before: float, now: float) -> int:
    """Batches that ended before ``ended_before``, once the deliveries of their end are settled (their rows'
    tasks go their own way, above)."""
    dropped, later = 0, now - ctx.config.task_retention_seconds + ctx.config.retention_sweep_seconds
    pipe = ctx.primary.pipeline(transaction=False)
    for batch_id in ctx.batches.ended_before(ended_before, BATCH):
        batch = ctx.batches.get(batch_id)
        delivery_ids = batch.delivery_ids if batch else []
        if batch and any(
            state not in DELIVERY_SETTLED for state in ctx.deliveries.states(delivery_ids).values()
        ):
            pipe.zadd(ctx.batches.ended_key, {batch_id: later})  # look again next sweep
            continue
        ctx.batches.forget(pipe, batch_id)
        if batch:
            ctx.deliveries.forget(pipe, batch.tenant_id, delivery_ids)
        dropped += 1
    pipe.execute()
    return dropped


def _archive(ctx: Needs, tasks: list[Task]) -> None:
    """Append each task's final record to the JSONL file of the day it ended, when archiving is on: one
    open per day and batch."""
    if not ctx.config.archive_dir or not tasks:
        return
    days: dict[str, list[str]] = {}
    for task in tasks:
        ended = iso(task.finished_at or task.updated_at)
        record = {
            k: v
            for k, v in _as_read(task).items()
            if k not in ("event_json", "slack_reply", "callback_headers")
        }
        days.setdefault(ended[:10], []).append(
            json.dumps({**record, "ended_at": ended}, ensure_ascii=False, sort_keys=True)
        )
    folder = Path(ctx.config.archive_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for day, lines in days.items():
        with (folder / f"tasks-{day}.jsonl").open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


def _as_read(task: Task) -> dict:
    """The task as archives have always held it: the strings Redis keeps, with its API-facing JSON fields
    (result, error, destinations) as objects."""
    return {
        **task.to_hash(),
        "result": task.result,
        "error": task.error,
        # which destinations, not their configs (sealed or, in a task stored before, not)
        "destinations": sealing.public_destinations(task.destinations),
    }


# -- the rest --------------------------------------------------------------------------------------


def _drop_dead_letters(ctx: Needs, died_before: float) -> int:
    dropped = ctx.deliveries.dead_before(died_before, BATCH * 5)
    for delivery_id in dropped:
        log.info(
            "dead letter %s dropped after the retention period (its record stays with its task)",
            delivery_id,
        )
    ctx.deliveries.drop_dead_letters(dropped)
    return len(dropped)


def _trim(stream: GroupStream, before: float, what: str) -> int:
    """Remove the stream's entries older than ``before`` (an entry id starts with its time in ms)."""
    removed = stream.trim_before(before)
    if removed:
        log.warning(
            "%d %s entr%s older than the retention period dropped (their work had failed for good)",
            removed,
            what,
            "y" if removed == 1 else "ies",
        )
    return removed
