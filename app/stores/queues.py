"""Queue names and how each kind of job is enqueued (timeouts, retries, dedupe ids) in one place."""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job

from app.core.config import RelayConfig
from app.core.ids import new_id
from app.stores.tasks import TaskStore

log = logging.getLogger(__name__)

EVENTS = "relay-events"
SUBMIT = "relay-submit"
RECONCILE = "relay-reconcile"
DELIVER = "relay-deliver"
ALL = (EVENTS, SUBMIT, RECONCILE, DELIVER)  # a worker's default order: webhooks first
JOBS = "app.work.jobs"


def job(name: str) -> str:
    """An RQ job function of app.work.jobs by its dotted name: the stores and the domain enqueue work
    without importing the module that runs it (which imports them)."""
    return f"{JOBS}.{name}"


_CRASH_RETRY = Retry(max=3, interval=[5, 30, 120])  # a worker killed mid-job: RQ runs the job again
_EVENT_RETRY = Retry(max=6, interval=[1, 5, 30, 120, 600, 1800])


def _seconds(values: tuple[float, ...]) -> list[int]:
    return [max(1, math.ceil(v)) for v in values]


def hand_over(queue: Queue, new: Job) -> bool:
    """Queue a job unless one with its id exists (False then: it was handed over before)."""
    try:
        queue.enqueue_job(new, unique=True)
    except DuplicateJobError:
        return False
    return True


class Queues:
    """RQ's queues as the relay uses them; one Queue object per name (RQ caches the server's version
    on it, else an INFO per enqueue)."""

    def __init__(self, rq_redis: Redis, config: RelayConfig, tasks: TaskStore):
        self._rq, self._config, self._tasks = rq_redis, config, tasks
        self._queues: dict[str, Queue] = {}

    def get(self, name: str) -> Queue:
        if name not in self._queues:
            queue = Queue(name, connection=self._rq)
            # what RQ's enqueue does every time
            self._rq.sadd(queue.redis_queues_keys, queue.key)
            self._queues[name] = queue
        return self._queues[name]

    def requeue_if_lost(
        self, queue: Queue, job_id: str, now: float | None = None
    ) -> tuple[bytes | None, bool]:
        """The job's RQ status (None: no such job), and whether it was pushed again: a `queued` job in neither
        its queue nor the intermediate queue was popped by a worker that died, or lost Redis's reply, before
        running it (RQ pops from several queues with BLPOP). So was one left in the intermediate queue (the
        worker's pop reached Redis, its answer did not: a failover, a dropped connection) without starting,
        once it has been seen there for RELAY_INTAKE_RECLAIM_SECONDS; RQ's own clean-up waits a minute past its
        maintenance pass, which after a failover held webhooks back for minutes. ``now``: the time to judge that
        period by (the clock's unless a test sets it)."""
        status = self._rq.hget(f"rq:job:{job_id}", "status")
        raw = job_id.encode()
        lost = (
            status == b"queued"
            and self._rq.lpos(queue.key, raw) is None
            and (
                self._rq.lpos(queue.intermediate_queue_key, raw) is None
                or self._took_back_if_stuck(queue, job_id, now)
            )
        )
        if lost:
            log.warning("job %s was lost between Redis and a worker; queued again", job_id)
            queue.push_job_id(job_id)
        return status, lost

    def _took_back_if_stuck(self, queue: Queue, job_id: str, now: float | None = None) -> bool:
        """Take a job out of the intermediate queue once it has waited there, not started, for a reclaim period
        (RQ's own first-seen mark, set here on the first look)."""
        if job_id in queue.started_job_registry:
            return False
        intermediate = IntermediateQueue(queue.key, self._rq)
        if intermediate.set_first_seen(job_id):
            return False
        first_seen = intermediate.get_first_seen(job_id)
        now = time.time() if now is None else now
        if first_seen is None or now - first_seen.timestamp() < self._config.intake_reclaim_seconds:
            return False
        intermediate.remove(job_id)
        self._rq.delete(intermediate.get_first_seen_key(job_id))
        return True

    def _kept(self) -> dict[str, int]:
        """How long RQ keeps a job's result and a failed job (RELAY_JOB_RESULT_TTL_SECONDS, ..._FAILURE_...)."""
        return {
            "result_ttl": self._config.job_result_ttl_seconds,
            "failure_ttl": self._config.job_failure_ttl_seconds,
        }

    def batch_feed(self, batch_id: str, delay: float = 0.0) -> None:
        """Hand the batch's next rows to the API, as far as the tenant's feed has room (app.domain.batches), now
        or after ``delay`` (the end of a hold); the reconciler's tick does the same, should this job be lost."""
        options = {
            "job_timeout": 600,
            "result_ttl": 0,
            "failure_ttl": self._config.job_failure_ttl_seconds,
        }
        if delay > 0:  # RQ keeps scheduled times in whole seconds, rounded down: one more
            self.get(SUBMIT).enqueue_in(
                timedelta(seconds=delay + 1), job("feed_batch"), batch_id, **options
            )
        else:
            self.get(SUBMIT).enqueue(job("feed_batch"), batch_id, **options)

    def batch_cancel(self, batch_id: str) -> None:
        """Cancel what has not ended of a batch stopped at its first failed row (app.domain.batches.cancel)."""
        self.get(SUBMIT).enqueue(
            job("cancel_batch"),
            batch_id,
            job_timeout=600,
            result_ttl=0,
            failure_ttl=self._config.job_failure_ttl_seconds,
        )

    def submit(
        self, task_id: str, not_before: float = 0.0, attempt: int = 0, fresh: bool = False
    ) -> str:
        """Keep trying to hand a stored submission to the API, on the configured schedule from try
        ``attempt``, not before ``not_before`` (the API's Retry-After). ``fresh``: a job of its own id,
        for the job that schedules it is still running. Returns the job's id."""
        intervals = _seconds(self._config.submit_retry_intervals)
        wait = intervals[min(attempt, len(intervals) - 1)]
        if not_before:
            # RQ keeps a scheduled time in whole seconds, rounded down: a second more, never before it
            wait = max(wait, math.ceil(not_before - time.time()) + 1)
        job_id = f"submit-{task_id}" + (f"-{new_id('try')}" if fresh else "")
        later = intervals[attempt + 1 :] or intervals[-1:]
        self.get(SUBMIT).enqueue_in(
            timedelta(seconds=wait),
            job("submit_pending"),
            task_id,
            job_id=job_id,
            retry=Retry(max=len(later), interval=later),
            job_timeout=120,
            **self._kept(),
        )
        if fresh:
            self._tasks.set(task_id, submit_job=job_id)  # where the reconciler looks for it
        # the reconciler looks at the task if it is still waiting then (a job lost between Redis and a
        # worker)
        self._tasks.watch(task_id, time.time() + wait + self._config.reconcile_quiet_seconds)
        return job_id

    def delivery_retry(self, delivery_id: str, job_id: str, delay: float) -> None:
        """The next attempt at a delivery, after ``delay`` (a backoff, or until its pace slot is near)."""
        # result_ttl=0: the delivery record is the result; keeping RQ's copy only costs writes per job
        # RQ keeps a scheduled time in whole seconds, rounded down: a second more, so a retry never runs before
        # the Retry-After it was given
        self.get(DELIVER).enqueue_in(
            timedelta(seconds=delay + 1),
            job("deliver"),
            delivery_id,
            job_id=job_id,
            job_timeout=3600,
            result_ttl=0,
            failure_ttl=self._config.job_failure_ttl_seconds,
            retry=_CRASH_RETRY,
        )

    def slack_progress(self, task_id: str, delay: float) -> None:
        """The next progress update of an /overten command's task (best effort: no retry)."""
        self.get(SUBMIT).enqueue_in(
            timedelta(seconds=delay),
            job("slack_progress"),
            task_id,
            job_timeout=120,
            result_ttl=0,
            failure_ttl=86_400,
        )

    def job_exists(self, job_id: str) -> bool:
        return bool(self._rq.exists(Job.key_for(job_id)))

    def event_retry_job(self, fields: dict, entry_id: str, job_id: str) -> tuple[Queue, Job]:
        """The RQ job that retries a webhook the intake lane could not apply (its entry goes when it is done)."""
        queue = self.get(EVENTS)
        return queue, queue.create_job(
            job("process_upstream_event"),
            args=(fields["tenant"], fields["task"], fields["body"], entry_id),
            job_id=job_id,
            timeout=120,
            retry=_EVENT_RETRY,
            **self._kept(),
        )

    def slack_command_job(self, fields: dict, entry_id: str, job_id: str) -> tuple[Queue, Job]:
        """The RQ job that runs the background half of an /overten command (its entry goes when it is done)."""
        queue = self.get(SUBMIT)
        return queue, queue.create_job(
            job("slack_command"),
            args=(fields["job"], json.loads(fields["request"]), entry_id),
            job_id=job_id,
            timeout=300,
            **self._kept(),
        )

    def workers(self) -> list[Worker]:
        """The workers alive (their heartbeats fresh), as RQ lists them."""
        return Worker.all(connection=self._rq)
