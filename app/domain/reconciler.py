"""The reconciler: every few seconds, one look at what may have been lost.

- Tasks quiet too long are polled at the API, so a lost webhook still ends them; an ended task whose
  follow-ups did not run gets them now; a submission whose job was lost is queued again.
- Deliveries overdue are queued again when their lane entry or RQ job was lost (app.domain.deliveries).
- Batch rows whose claim outlived its worker are handed over (app.domain.batches).

Its RQ entry point is app.work.jobs.reconcile, which runs it alone (one run at a time).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from app.core.states import TASK_ENDED, TaskStatus
from app.core.upstream import UpstreamNotFound, UpstreamUnavailable
from app.domain import batches, deliveries, polling, tracking
from app.stores import queues


class Needs(batches.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""


log = logging.getLogger(__name__)


def run(ctx: Needs, now: float | None = None) -> dict:
    """One look at the tasks due and the deliveries and batch rows overdue. ``now``: a test's clock, also for
    the tenants' poll budgets (else those are on Redis's clock)."""
    counts = {"polled": 0, "finished": 0, "repaired": 0, "deferred": 0}
    for task_id in ctx.tasks.due(time.time() if now is None else now):
        counts[_reconcile_one(ctx, task_id, now)] += 1
    counts["deliveries_requeued"] = deliveries.recover_lost(ctx)
    counts["batch_rows_handed_over"] = batches.tick(ctx, now=now)
    return counts


def _reconcile_one(ctx: Needs, task_id: str, now: float | None = None) -> str:
    task = ctx.tasks.get(task_id)
    if task is not None and task.status in TASK_ENDED and task.fanout == "pending":
        # their end unwatches it: a crash leaves it for next time
        tracking.run_follow_ups(ctx, task_id, task)
        return "repaired"
    if task is None or task.status in TASK_ENDED:
        ctx.tasks.unwatch(task_id)
        return "polled"
    tenant = ctx.tenants.get(task.tenant_id)
    if tenant is None:  # it can never end otherwise, and retention only removes tasks that ended
        tracking.fail(
            ctx, task_id, "tenant_removed", "The tenant was removed before the task ended."
        )
        return "finished"
    clock = time.time() if now is None else now
    if task.status == TaskStatus.PENDING_SUBMIT:
        return _recover_submit(ctx, task_id, clock)
    if not task.upstream_task_id:
        ctx.tasks.unwatch(task_id)
        return "polled"
    wait = polling.wait_for_budget(ctx, task, now=now)
    if wait:  # the tenant's polls have spent their share of the API's rate limit for now
        ctx.tasks.watch(task_id, clock + wait)
        return "deferred"
    polls = task.polls
    try:
        with ctx.upstream(tenant) as client:
            upstream = client.get_task(task.upstream_task_id)
    except UpstreamNotFound:
        tracking.fail(ctx, task_id, "upstream_task_missing", "The API no longer knows this task.")
        return "finished"
    except UpstreamUnavailable:
        upstream = None
    ctx.tasks.set(task_id, polls=polls + 1, last_polled_at=clock)
    if (
        upstream is not None
        and tracking.apply(ctx, task_id, upstream.raw, source="reconciler", now=now) == "finished"
    ):
        return "finished"
    ctx.tasks.watch(task_id, clock + polling.next_delay(ctx, task, polls, now=clock))
    return "polled"


def _recover_submit(ctx: Needs, task_id: str, now: float) -> str:
    """A submission waiting to be handed to the API: its background job is queued again when it was lost
    (a worker popped it and died, or lost Redis's reply, before running it) or never stored (a crash between
    storing the task and queuing the job); a job that failed for good fails the task."""
    task = ctx.tasks.get(task_id)
    job_id = (task.submit_job if task else None) or f"submit-{task_id}"
    status, lost = ctx.queues.requeue_if_lost(ctx.queues.get(queues.SUBMIT), job_id)
    if status == b"failed":
        tracking.fail(
            ctx,
            task_id,
            "submit_failed",
            "Handing the job to the API failed; see the worker's log.",
        )
        return "finished"
    if status is None or status == b"finished":  # no job, or one that ended without handing it over
        log.warning(
            "task %s was waiting for a submit job that does not exist; queued again", task_id
        )
        ctx.queues.submit(
            task_id,
            not_before=(task.submit_not_before or 0.0) if task else 0.0,
            fresh=bool(task and task.submit_job),  # that job's id may be taken: a new one
        )
        return "repaired"
    ctx.tasks.watch(task_id, now + ctx.config.reconcile_quiet_seconds)
    return "repaired" if lost else "polled"
