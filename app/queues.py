"""Queue names and how each kind of job is enqueued (timeouts, retries, dedupe ids) in one place."""

from __future__ import annotations

import math
from datetime import timedelta

from rq import Retry

from .context import Context

EVENTS = "relay-events"
SUBMIT = "relay-submit"
RECONCILE = "relay-reconcile"
DELIVER = "relay-deliver"
ALL = (EVENTS, SUBMIT, RECONCILE, DELIVER)  # a worker's default order: webhooks first


def _seconds(values: tuple[float, ...]) -> list[int]:
    return [max(1, math.ceil(v)) for v in values]


def enqueue_submit(ctx: Context, task_id: str) -> None:
    """Keep trying to hand a stored submission to the API, on the configured schedule."""
    from . import jobs

    intervals = _seconds(ctx.config.submit_retry_intervals)
    ctx.queue(SUBMIT).enqueue_in(timedelta(seconds=intervals[0]), jobs.submit_pending, task_id,
                                 job_id=f"submit-{task_id}", retry=Retry(max=len(intervals), interval=intervals),
                                 job_timeout=120, result_ttl=3600, failure_ttl=7 * 86_400)

