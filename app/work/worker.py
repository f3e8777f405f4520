"""Worker and scheduler processes.

A worker that serves the events queue also runs the intake lane (app.work.intake): the verified webhooks of
the intake stream, applied on its own threads. One that serves the delivery queue runs the delivery lane
(app.work.lane): the deliveries due now.
Workers are RQ SimpleWorkers: jobs run in the long-lived worker process, so connections are pooled and
there is no ~60 ms fork per job (DESIGN.md). Crash safety comes from idempotent jobs, RQ's heartbeats
and its abandoned-job handling, not from a fork per job.

Both processes stop cleanly on SIGTERM and SIGINT: the work in hand finishes, every thread they started is
stopped and joined (a thread still inside a Redis or HTTP call while the interpreter tears down can crash
it), and they exit 0. Both go on through storage trouble (Redis full, read-only or gone), backing off.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, worker_registration
from rq.cron import CronScheduler
from rq.exceptions import StopRequested
from rq.job import Job
from rq.registry import clean_registries
from rq.utils import now
from rq.worker import WorkerStatus

from app.core import logs, storage
from app.stores import context, queues
from app.work import delivering, jobs
from app.work.intake import IntakeLane
from app.work.lane import DeliveryLane

log = logging.getLogger(__name__)


SCHEDULER_STOP_SECONDS = 10
CLEANING_LOCK_SECONDS = 60
"""How long a queue's maintenance lock lasts, at the least (RQ's is 899 s; see clean_registries)."""


def _nothing() -> None:
    pass


@dataclass
class Controls:
    """What one worker process's RQ loops share with the rest of the process: RQ makes a new worker object
    each time its loop is started again, and a signal may come before any exists."""

    lease_seconds: float = 60
    on_ready: Callable[[], None] = _nothing
    """Called once RQ's loop is about to start (after the scheduler's fork: forking a process whose other
    threads hold locks can deadlock the child), to start the lanes."""
    on_stop: Callable[[], None] = _nothing
    """Called from the signal handler: the lanes stop taking new work at once."""
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set by a stop signal, also by one that came before RQ's handlers were in place (run_worker's own)."""

    def stop(self) -> None:
        self.stopping.set()
        self.on_stop()


class RelayWorker(SimpleWorker):
    """A SimpleWorker whose running job holds a short lease, renewed by a heartbeat thread, and that stops
    cleanly.

    RQ's SimpleWorker sets a job's heartbeat to its whole timeout and never renews it, so a worker
    killed mid-job would leave its job unretried for the job's timeout (an hour for a delivery). With a
    lease, RQ's maintenance in any other worker sees the job abandoned within about one lease and
    retries it (RQ's Retry); the job itself is idempotent.
    """

    def __init__(self, *args, controls: Controls | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.controls = controls or Controls()

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return int(self.controls.lease_seconds)

    def clean_registries(self) -> None:
        """RQ's, but with a lock a worker killed while it cleans holds for a minute (or three maintenance
        intervals), not RQ's 15: until the lock goes, no worker looks for abandoned jobs, so a delivery whose
        worker was killed mid-attempt stayed "delivering" that long (found by the worker-kills chaos test).
        Cleaning is far shorter than the lock, so two workers still never clean one queue at once."""
        lock_seconds = max(CLEANING_LOCK_SECONDS, 3 * int(self.maintenance_interval))
        for queue in self.queues:
            if self.connection.set(queue.registry_cleaning_key, 1, nx=True, ex=lock_seconds):
                self.log.info("Worker %s: cleaning registries for queue: %s", self.name, queue.name)
                clean_registries(queue, self._exc_handlers)
                worker_registration.clean_worker_registry(queue)
                queue.intermediate_queue.cleanup(self, queue)
                queue.release_maintenance_lock()
        self.last_cleaned_at = now()

    def stop_scheduler(self) -> None:
        """RQ's sends the scheduler's process one SIGTERM and waits for it to end. A stop signal during the
        worker's start can reach that process before it has set its own handlers (the one it inherited
        swallows it), and RQ would then wait for ever: send it again each second, then kill it."""
        process = self.scheduler._process if self.scheduler else None
        if not process or not process.pid:
            return
        for _ in range(SCHEDULER_STOP_SECONDS):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
            process.join(timeout=1)
            if not process.is_alive():
                return
        log.warning("the scheduler's process %s did not stop on SIGTERM; killed", process.pid)
        process.kill()
        process.join()

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(
            target=self._renew_lease, args=(job, execution, done), name="relay-job-lease"
        )
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _renew_lease(self, job: Job, execution, done: threading.Event) -> None:
        while not done.wait(self.controls.lease_seconds / 3):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a missed beat only shortens the lease; the next one may succeed
                log.warning("could not renew the lease of job %s", job.id)

    def _install_signal_handlers(self) -> None:
        """The last step before RQ's loop (the scheduler has forked by now): start the lanes while
        run_worker's own handlers, which only set a flag, are still in place; then RQ's."""
        if not self.controls.stopping.is_set():
            self.controls.on_ready()
        super()._install_signal_handlers()
        # told to stop while starting: RQ's loop ends before its first job
        if self.controls.stopping.is_set():
            self._stop_requested = True
        else:  # what tests and supervisors wait for: from here a stop signal is a warm shutdown in RQ's loop
            log.info("worker %s ready: working, and a stop signal ends it warmly", self.name)

    _waiting = False
    """The main thread is in the blocking dequeue: the one place a stop signal interrupts."""

    def request_stop(self, signum, frame) -> None:
        """A warm shutdown. RQ's own raises StopRequested wherever the main thread is unless its state says
        busy, so a signal in the instant between two steps of a job was swallowed inside the job and the
        worker ran on. Here the loop ends after the job in hand, and only the blocking dequeue is cut short.
        What can wind down meanwhile is told to now (the lanes, the command channel's thread, the
        scheduler's process), so the exit waits for none of them."""
        self.controls.stop()
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()
        process = self.scheduler._process if self.scheduler else None
        if process is not None and process.pid:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)
        self.handle_warm_shutdown_request()
        self._shutdown_requested_date = now()
        for name in (signal.SIGINT, signal.SIGTERM):  # a second signal is RQ's cold shutdown
            signal.signal(name, self.request_force_stop)
        self._stop_requested = True
        if self._waiting:
            raise StopRequested()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        self._waiting = True
        try:
            if self._stop_requested:  # asked just before the wait began
                raise StopRequested()
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self._waiting = False

    def subscribe(self) -> None:
        """RQ's command channel, read in short waits: RQ's own blocks 60 s per read and is joined for 1 s
        only, then its connection is closed under it, which can crash the process as it exits."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=0.5, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if thread is None:
            return
        # stop() again: a thread that had not started yet would start running
        while thread.is_alive():
            thread.stop()
            thread.join(timeout=2)
        self.pubsub_thread = None
        self.pubsub.close()

    def teardown(self) -> None:
        try:
            super().teardown()
        except RedisError as exc:  # storage trouble at the end: the worker's key expires by itself
            log.warning("worker %s: could not register its death: %s", self.name, exc)
            self.unsubscribe()


def run_worker(queue_names: list[str], burst: bool = False, with_scheduler: bool = True) -> None:
    _keep_what_is_loaded()
    logs.configure()
    ctx = context.current()
    intake = IntakeLane(ctx) if queues.EVENTS in queue_names else None
    lane = _delivery_lane(ctx) if queues.DELIVER in queue_names else None
    background = [part for part in (intake, lane) if part is not None]
    started = threading.Event()

    def start_background() -> None:
        if not burst and not started.is_set():
            started.set()
            for part in background:
                part.start()

    def stop_background() -> None:
        for part in background:
            part.request_stop()

    controls = Controls(ctx.config.worker_lease_seconds, start_background, stop_background)
    # outside RQ's loop a stop signal only sets a flag (RQ's raises anywhere)
    _on_stop_signals(controls.stop)
    try:
        if burst:  # webhooks first: applying them plans deliveries
            _drain(background)
        _work(ctx, controls, queue_names, burst, with_scheduler)
        if burst and lane:
            _drain([lane])  # what the jobs just run (tasks that ended) planned
    finally:
        for part in background:
            part.stop()  # a warm shutdown: running deliveries finish, threads are joined


def _work(
    ctx: context.Context,
    controls: Controls,
    queue_names: list[str],
    burst: bool,
    with_scheduler: bool,
) -> None:
    """RQ's loop, started again after a pause when it quit on an error (RQ quits on any exception, such as
    Redis going away), until a signal asks the worker to stop."""
    # An idle worker blocks in its dequeue for worker_ttl - 15 s and looks after abandoned jobs only in
    # between: tie that to the maintenance interval instead of RQ's default seven minutes.
    maintenance = ctx.config.worker_maintenance_seconds
    backoff, stopping = storage.Backoff("worker"), controls.stopping
    while not stopping.is_set():
        try:
            worker = RelayWorker(
                [ctx.queues.get(name) for name in queue_names],
                connection=ctx.rq_redis,
                maintenance_interval=maintenance,
                worker_ttl=maintenance + 15,
                controls=controls,
            )
            worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
            failure: RedisError | None = (
                None if stopping.is_set() or burst else RedisError("RQ's loop quit")
            )
        except StopRequested:  # a signal in RQ's own start or teardown, outside its loop
            failure = None
        # its start (registering the queues, the worker) met storage trouble
        except RedisError as exc:
            failure = exc
        _on_stop_signals(controls.stop)
        if failure is None:
            return
        stopping.wait(backoff.failed(failure))


def _drain(lanes: list) -> None:
    try:
        for lane in lanes:
            lane.drain()
    # storage trouble: what is left waits in its stream for the next worker
    except RedisError as exc:
        storage.Backoff("lanes").failed(exc)


def _keep_what_is_loaded() -> None:
    """The modules are imported: what they made lives as long as the process. Frozen, the garbage collector
    never walks it again (each full collection would, as the web's processes found, and so would the
    interpreter's exit: about 0.3 CPU-s of a worker's stop)."""
    gc.freeze()


def _on_stop_signals(handler: Callable[[], object]) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: handler())


def _delivery_lane(ctx: context.Context) -> DeliveryLane:
    config = ctx.config
    return DeliveryLane(
        ctx,
        partial(delivering.attempt, ctx),
        threads=config.delivery_threads,
        lease_seconds=config.worker_lease_seconds,
    )


class RelayCron(CronScheduler):
    """RQ's cron scheduler with a loop that goes on through storage trouble, and that stops on a signal
    between two steps (RQ's raises from the signal handler, possibly in the middle of a Redis call)."""

    def start(self) -> None:
        stopped, backoff, born = threading.Event(), storage.Backoff("scheduler"), False
        _on_stop_signals(stopped.set)
        self.log.info("CronScheduler %s: starting...", self.name)
        while not stopped.is_set():
            try:
                if not born:
                    self.register_birth()
                    born = True
                if self.enqueue_jobs():
                    self.save()
                self.heartbeat()
                pause = self.calculate_sleep_interval()
                backoff.succeeded()
            except RedisError as exc:
                pause = backoff.failed(exc)
            stopped.wait(pause)
        try:
            # a stop before the first step: RQ's registry never heard of it (it raises SchedulerNotFound)
            if born:
                self.register_death()
        except RedisError as exc:  # its registry entry ages out by itself
            self.log.warning("CronScheduler %s: could not register its death: %s", self.name, exc)
        self.log.info("CronScheduler %s: shutdown complete", self.name)


def run_scheduler() -> None:
    """Enqueue the periodic jobs (the reconciler, the retention sweep) with RQ's cron scheduler."""
    _keep_what_is_loaded()
    ctx = context.current()
    logs.configure()
    config = ctx.config
    cron = RelayCron(connection=ctx.rq_redis, name=f"relay-scheduler-{config.key_prefix}")
    cron.register(
        jobs.reconcile,
        queue_name=queues.RECONCILE,
        interval=config.reconcile_interval_seconds,
        job_timeout=300,
        result_ttl=60,
    )
    cron.register(
        jobs.sweep,
        queue_name=queues.RECONCILE,
        interval=config.retention_sweep_seconds,
        job_timeout=300,
        result_ttl=60,
    )
    cron.start()
