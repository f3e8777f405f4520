"""Queue names and how each kind of job is enqueued (timeouts, retries, dedupe ids) in one place."""

from __future__ import annotations

import math
from datetime import timedelta

from rq import Retry
from rq.exceptions import DuplicateJobError

from .context import Context
from .ids import digest

EVENTS = "relay-events"
SUBMIT = "relay-submit"
RECONCILE = "relay-reconcile"
DELIVER = "relay-deliver"
ALL = (EVENTS, SUBMIT, RECONCILE, DELIVER)  # a worker's default order: webhooks first

_EVENT_RETRY = Retry(max=6, interval=[1, 5, 30, 120, 600, 1800])


def _seconds(values: tuple[float, ...]) -> list[int]:
    return [max(1, math.ceil(v)) for v in values]


def enqueue_upstream_event(ctx: Context, tenant_id: str, task_id: str, webhook_id: str, body: str) -> bool:
    """Store the verified event and its follow-up work in one atomic step (RQ's unique enqueue is one
    Lua script: the job hash is the durable record, its id the dedupe key). False: a redelivery."""
    from . import jobs

    job_id = "wh-" + digest(f"{tenant_id}:{webhook_id}", 40)
    try:
        ctx.queue(EVENTS).enqueue(jobs.process_upstream_event, tenant_id, task_id, body, job_id=job_id,
                                  unique=True, result_ttl=ctx.config.webhook_dedupe_ttl_seconds,
                                  failure_ttl=ctx.config.webhook_dedupe_ttl_seconds, job_timeout=120,
                                  retry=_EVENT_RETRY)
    except DuplicateJobError:
        return False
    return True


def enqueue_submit(ctx: Context, task_id: str) -> None:
    """Keep trying to hand a stored submission to the API, on the configured schedule."""
    from . import jobs

    intervals = _seconds(ctx.config.submit_retry_intervals)
    ctx.queue(SUBMIT).enqueue_in(timedelta(seconds=intervals[0]), jobs.submit_pending, task_id,
                                 job_id=f"submit-{task_id}", retry=Retry(max=len(intervals), interval=intervals),
                                 job_timeout=120, result_ttl=3600, failure_ttl=7 * 86_400)


def enqueue_reconcile(ctx: Context) -> None:
    from . import jobs

    ctx.queue(RECONCILE).enqueue(jobs.reconcile, job_timeout=300, result_ttl=60)
