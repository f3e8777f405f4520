"""Worker and scheduler processes.

Every worker also pumps verified webhooks from the intake stream into RQ (app/pump.py).
Workers are RQ SimpleWorkers: jobs run in the long-lived worker process, so connections are pooled and
there is no ~60 ms fork per job (DESIGN.md). Crash safety comes from idempotent jobs, RQ's heartbeats
and its abandoned-job handling, not from a fork per job.
"""

from __future__ import annotations

import logging

from rq import SimpleWorker
from rq.cron import CronScheduler

from . import context, jobs, queues
from .pump import IntakePump


class RelayWorker(SimpleWorker):
    """The worker class of every relay worker; cross-cutting worker behaviour goes here."""


def run_worker(queue_names: list[str], burst: bool = False, with_scheduler: bool = True) -> None:
    ctx = context.current()
    intake = IntakePump(ctx)
    intake.pump_once()  # what arrived while no worker ran
    if not burst:
        intake.start()
    worker = RelayWorker([ctx.queue(name) for name in queue_names], connection=ctx.rq_redis)
    try:
        worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
    finally:
        intake.stop()


def run_scheduler() -> None:
    """Enqueue the periodic jobs (the reconciler) with RQ's cron scheduler."""
    ctx = context.current()
    logging.basicConfig(level=logging.INFO)
    cron = CronScheduler(connection=ctx.rq_redis, name=f"relay-scheduler-{ctx.config.key_prefix}")
    cron.register(jobs.reconcile, queue_name=queues.RECONCILE, interval=ctx.config.reconcile_interval_seconds,
                  job_timeout=300, result_ttl=60)
    cron.start()
