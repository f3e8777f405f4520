"""Applying what the API says about a task (from a webhook or a poll) to the relay's task, once.

Finishing is one Lua script: the terminal status, the usage of the tenant and the record, and the
event-log entry are written together or not at all, so a redelivered webhook, a poll and a retried job
can race and the task is finished (and counted, and announced) exactly once. Follow-up work (deliveries,
callbacks, hook subscribers) is then planned idempotently and marked done; a crash in between is repaired by
the job's retry or, as the end leaves the task on the watch list until then, by the reconciler
(``fanout == "pending"``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from app.core.ids import new_id
from app.core.states import TASK_ENDED, TaskStatus
from app.core.upstream import UpstreamClients, UpstreamError
from app.domain import batch_rows, budgets, deliveries, polling
from app.domain.serializers import task_view
from app.stores.events import iso
from app.stores.tasks import Task


class Needs(batch_rows.Needs, budgets.Needs, polling.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    upstream: UpstreamClients


log = logging.getLogger(__name__)

Done = Callable[[Any], None]
"""Writes queued on a pipeline with the mark that a task's follow-ups ran."""


def apply(
    ctx: Needs,
    task_id: str,
    upstream: dict,
    source: str,
    now: float | None = None,
    with_done: Done | None = None,
) -> str:
    """Bring the relay task up to date with the API's view of it. Returns what happened. ``now``: a test's
    clock, for how long a batch row waited for the API's pool. ``with_done(pipe)``: writes to make with the
    mark that an ending's follow-ups ran, in the same round trip (the intake lane lets its entry go)."""
    task = ctx.tasks.get(task_id)
    if task is None:
        log.warning("event for unknown task %s from %s", task_id, source)
        return "unknown"
    if task.upstream_task_id and upstream.get("task_id") != task.upstream_task_id:
        log.warning("event for task %s names another API task; ignored", task_id)
        return "mismatch"
    link = (
        {}
        if task.upstream_task_id
        else {"upstream_task_id": upstream["task_id"], "run_id": upstream.get("run_id", "")}
    )
    status = TaskStatus(upstream["status"])
    batch_rows.pool_wait(ctx, task, upstream, by_webhook=source.startswith("webhook"), now=now)
    # the link (the webhook overtook the submit call) is written with the end
    if status in TASK_ENDED:
        return (
            "finished"
            if finish(ctx, task_id, {**_terminal_fields(upstream), **link}, task, with_done)
            else "duplicate"
        )
    if link:  # the webhook overtook the submit call: link it here
        ctx.tasks.set(task_id, **link)
    if not ctx.tasks.transition(
        task_id,
        status=status,
        phase=upstream.get("phase") or None,
        progress=int(upstream.get("progress") or 0),
        turn_index=upstream.get("turn_index"),
    ):
        return "ended"  # progress that arrived after the end: nothing to change, and nothing to watch again
    ctx.tasks.watch(task_id, time.time() + ctx.config.reconcile_quiet_seconds)
    return "updated"


def cancel(ctx: Needs, tenant, task: Task) -> bool:
    """Cancel a task that has not ended: at the API once it has it (the task ends with the API's answer, or
    its webhook), else here, before it is handed over. False: it had ended, or the API refused."""
    if task.status in TASK_ENDED:
        return False
    if not task.upstream_task_id:
        return finish(ctx, task.task_id, {"status": TaskStatus.CANCELLED, "phase": None})
    try:
        with ctx.upstream.once(tenant) as client:
            answer = client.cancel_task(task.upstream_task_id)
    except UpstreamError as exc:
        log.warning("task %s: cancelling it at the API failed: %s", task.task_id, exc)
        return False
    apply(ctx, task.task_id, answer.raw, source="cancel")
    return True


def refresh(ctx: Needs, task: Task, min_age_seconds: float = 2.0, now: float | None = None) -> Task:
    """Bring a running task's progress up to date from the API when its news is older than
    ``min_age_seconds``: what a person watching a progress bar expects. Best effort, no retries. ``now``: a
    test's clock, also for the tenant's poll budget (else that is on Redis's clock)."""
    if task.status in TASK_ENDED or not task.upstream_task_id:
        return task
    clock = time.time() if now is None else now
    if clock - (task.last_polled_at or task.updated_at) < min_age_seconds:
        return task
    # the tenant's polls are at their budget: show what we know
    if not polling.may_refresh(ctx, task, now=now):
        return task
    tenant = ctx.tenants.get(task.tenant_id)
    if tenant is None:
        return task
    ctx.tasks.set(task.task_id, last_polled_at=clock)
    try:
        with ctx.upstream.once(tenant) as client:
            upstream = client.get_task(task.upstream_task_id)
    except UpstreamError:
        return task
    apply(ctx, task.task_id, upstream.raw, source="refresh", now=now)
    return ctx.tasks.get(task.task_id) or task


def finish(
    ctx: Needs,
    task_id: str,
    fields: dict,
    task: Task | None = None,
    with_done: Done | None = None,
) -> bool:
    """End a task once (see the module notes), then run its follow-ups. False: it had already ended.
    ``task``: the task as just read, if the caller has it (the script checks again that it has not ended);
    ``with_done``: as for apply."""
    task = task or ctx.tasks.get(task_id)
    if task is None or task.status in TASK_ENDED:
        if task is not None and task.fanout == "pending":
            run_follow_ups(ctx, task_id, with_done=with_done)
        return False
    now = time.time()
    fields = {**fields, "finished_at": now, "updated_at": now}
    ended = task.with_fields(**fields)
    event = {
        "id": new_id("evt"),
        "type": f"task.{fields['status']}",
        "created_at": iso(now),
        "data": task_view(ended),
    }
    fields["event_json"] = json.dumps(event)
    ended = replace(ended, event_json=event)
    ended_now = ctx.tasks.finish(
        task,
        fields,
        now=now,
        look_again_at=now + ctx.config.reconcile_quiet_seconds,
        usage_life=int(ctx.config.usage_retention_seconds),
    )
    if not ended_now:
        return False
    if ctx.tasks.status(task_id) != fields["status"]:
        # the primary that took the end failed over before passing it on: no deliveries of a document the new
        # one never heard of; the end comes again (the reconciler's poll, or the API's webhook again)
        log.warning(
            "task %s: its end was lost with a failed-over Redis primary; it is taken up again",
            task_id,
        )
        return True
    run_follow_ups(ctx, task_id, ended, with_done)
    return True


def fail(ctx: Needs, task_id: str, code: str, message: str, **detail) -> bool:
    """End a task as failed for a reason of the relay's own (the API refused it, or lost it)."""
    return finish(
        ctx,
        task_id,
        {
            "status": TaskStatus.FAILED,
            "phase": None,
            "error": {"code": code, "message": message, **detail},
        },
    )


def run_follow_ups(
    ctx: Needs, task_id: str, task: Task | None = None, with_done: Done | None = None
) -> None:
    """Plan the ended task's deliveries, its budget alerts and its batch row's end, then mark its follow-ups
    done (``task``: as it ended, if the caller has it; ``with_done``: as for apply)."""
    task = task or ctx.tasks.get(task_id)
    if task is None:
        return
    event = task.event_json or {
        "type": f"task.{task.status}",
        "data": task_view(task),
    }
    deliveries.plan(ctx, task, event)
    budgets.after_task(ctx, task)  # each alert goes once a month whatever
    if task.batch_id:
        # after the row's deliveries: the batch's end is the last message
        batch_rows.row_ended(ctx, task)
    # only now: until then the task stays on the reconciler's watch list (the end put it there), so follow-ups
    # lost with a worker or a failed-over primary, after the end was stored, run again; each is idempotent
    ctx.tasks.follow_ups_done(task_id, with_done)


def _terminal_fields(upstream: dict) -> dict:
    status = TaskStatus(upstream["status"])
    fields = {
        "status": status,
        "phase": None,
        "progress": 100 if status == TaskStatus.COMPLETED else int(upstream.get("progress") or 0),
        "result": upstream.get("result"),
        "error": upstream.get("error"),
        "credits_used": upstream.get("credits_used") or 0,
        "duration_ms": upstream.get("duration_ms") or 0,
    }
    if upstream.get("turn_index") is not None:  # a task can end before any progress news reached us
        fields["turn_index"] = upstream["turn_index"]
    return fields
