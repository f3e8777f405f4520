"""Worker and scheduler processes.

Every worker also pumps verified webhooks from the intake stream into RQ (app/pump.py) and, when it
serves the delivery queue, runs the delivery lane (app/lane.py): the deliveries due now.
Workers are RQ SimpleWorkers: jobs run in the long-lived worker process, so connections are pooled and
there is no ~60 ms fork per job (DESIGN.md). Crash safety comes from idempotent jobs, RQ's heartbeats
and its abandoned-job handling, not from a fork per job.
"""

from __future__ import annotations

import logging
import threading

from rq import Queue, SimpleWorker
from rq.cron import CronScheduler
from rq.job import Job
from rq.worker import WorkerStatus

from . import context, deliveries, jobs, logs, queues
from .lane import DeliveryLane
from .pump import IntakePump


class RelayWorker(SimpleWorker):
    """A SimpleWorker whose running job holds a short lease, renewed by a heartbeat thread.

    RQ's SimpleWorker sets a job's heartbeat to its whole timeout and never renews it, so a worker
    killed mid-job would leave its job unretried for the job's timeout (an hour for a delivery). With a
    lease, RQ's maintenance in any other worker sees the job abandoned within about one lease and
    retries it (RQ's Retry); the job itself is idempotent.
    """

    lease_seconds = 60

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.lease_seconds

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(target=self._renew_lease, args=(job, execution, done), daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _renew_lease(self, job: Job, execution, done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a missed beat only shortens the lease; the next one may succeed
                logging.getLogger(__name__).warning("could not renew the lease of job %s", job.id)


def run_worker(queue_names: list[str], burst: bool = False, with_scheduler: bool = True) -> None:
    logs.configure()
    ctx = context.current()
    intake = IntakePump(ctx)
    intake.pump_once()  # what arrived while no worker ran
    lane = _delivery_lane(ctx) if queues.DELIVER in queue_names else None
    if not burst:
        intake.start()
        if lane:
            lane.start()
    RelayWorker.lease_seconds = ctx.config.worker_lease_seconds
    # An idle worker blocks in its dequeue for worker_ttl - 15 s and looks after abandoned jobs only in
    # between: tie that to the maintenance interval instead of RQ's default seven minutes.
    maintenance = ctx.config.worker_maintenance_seconds
    worker = RelayWorker([ctx.queue(name) for name in queue_names], connection=ctx.rq_redis,
                         maintenance_interval=maintenance, worker_ttl=maintenance + 15)
    try:
        if burst and lane:
            lane.drain()
        worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
        if burst and lane:
            lane.drain()  # what the jobs just run (tasks that ended) planned
    finally:
        intake.stop()
        if lane:
            lane.stop()  # a warm shutdown: running deliveries finish


def _delivery_lane(ctx: context.Context) -> DeliveryLane:
    config = ctx.config
    return DeliveryLane(ctx, lambda delivery_id: deliveries.attempt(ctx, delivery_id),
                        threads=config.delivery_threads, lease_seconds=config.worker_lease_seconds)


def run_scheduler() -> None:
    """Enqueue the periodic jobs (the reconciler) with RQ's cron scheduler."""
    ctx = context.current()
    logs.configure()
    cron = CronScheduler(connection=ctx.rq_redis, name=f"relay-scheduler-{ctx.config.key_prefix}")
    cron.register(jobs.reconcile, queue_name=queues.RECONCILE, interval=ctx.config.reconcile_interval_seconds,
                  job_timeout=300, result_ttl=60)
    cron.start()
