"""Lanes: work waiting in a Redis stream, run several at a time on a worker's threads, not one RQ job each.

The delivery lane (deliveries due now) and the intake lane (app.work.intake: the API's webhooks) are both
a StreamLane; this module's text is about the first, the reasons are the same for both.

RQ's own bookkeeping costs a few milliseconds of CPU per job on this kind of machine (DESIGN.md), more
than a webhook delivery itself, so one RQ job per delivery held fan-out to a fraction of what subscribers
take (bench/fanout). A delivery due now is appended to a Redis stream instead (app.stores.lane_stream), and each worker
reads the stream through a consumer group in batches and runs the attempts on a small thread pool.

Crash safety comes from the stream's pending entries: an entry is acknowledged only after its attempt has
recorded an outcome; an entry whose worker died is claimed by another worker once it has been idle for a
lease; and a worker renews the lease of the entries it is running, so a long upload is not taken from it.
Attempts after a failure wait for their backoff as RQ jobs (RQ's scheduler), as before.
See docs/decisions/0008-delivery-lane.md.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from redis.exceptions import RedisError, ResponseError

from app.core.streams import ReaderThread
from app.stores.consumer_group import GroupStream
from app.stores.lane_stream import LaneStream


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    lane: LaneStream


log = logging.getLogger(__name__)


class StreamLane:
    """One worker's reader of a stream through a consumer group: ``handle`` runs each entry on up to
    ``threads`` threads, and the entry goes when it returns True."""

    name = "stream"
    """Names its threads (relay-<name>-reader), its logs and its storage-trouble metric."""

    def __init__(
        self,
        ctx: Needs,
        stream: GroupStream,
        threads: int,
        lease_seconds: float,
        consumer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``clock``: when to claim and renew again (a test moves it instead of waiting for real ticks)."""
        self._ctx, self._threads, self._clock = ctx, threads, clock
        self._lease_ms = max(1, int(lease_seconds * 1000))
        # how often leases are renewed, at the longest; a renewal can come up to two ticks apart, and a busy
        # process can be late by a second or more: a sixth of the lease leaves room for both
        self._tick = min(1.0, lease_seconds / 6)
        self._entries = stream.reader(consumer or f"{socket.gethostname()}-{os.getpid()}")
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"relay-{self.name}")
        # the entries whose attempts run here; changed by the pool's threads too
        self._running: set[str] = set()
        self._changed = threading.Condition()  # guards _running; notified as each attempt ends
        self._grouped = False
        self._claimed_at = -math.inf  # claim at once
        self._renewed = clock()
        self._reader = ReaderThread(
            f"relay-{self.name}-reader",
            lambda: self.run_once(block_ms=max(1, int(self._tick * 1000))),
        )

    def handle(self, entry_id: str, fields: dict, reclaimed: bool) -> bool:
        """Do an entry's work (``reclaimed``: a dead or slow worker had it before). True: it is done and goes;
        False: someone else (an RQ job) lets it go; raising: it is taken up again after a lease."""
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------------------

    def run_once(self, block_ms: int | None = None) -> int:
        """Start attempts for entries a dead worker left and for new ones, as many as there are free
        threads (waiting for one to free up first if none is). Returns how many were started."""
        running = self._count()
        if running == self._threads:
            self._wait_for_fewer_than(running)
            return 0
        return self._fill(self._threads - running, block_ms)

    def _fill(self, free: int, block_ms: int | None) -> int:
        try:
            entries = self._take(free, block_ms)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._grouped = False  # Redis lost the stream: the group is made again next time
            raise
        # read as the worker was told to stop: not this worker's any more
        if self._reader.stopping and entries:
            self._release([entry_id for entry_id, _, _ in entries])
            return 0
        for entry_id, fields, reclaimed in entries:
            self._start(entry_id, fields or {}, reclaimed)
        self._renew_leases()
        return len(entries)

    def _release(self, entry_ids: list[str]) -> None:
        """Entries taken but not started: marked idle for longer than any lease, so the next worker's
        XAUTOCLAIM takes them at once instead of after a lease."""
        self._entries.release(entry_ids)

    def _take(self, count: int, block_ms: int | None) -> list[tuple[str, dict, bool]]:
        """Entries idle for a lease (their worker died) first, then new ones: (id, fields, reclaimed)."""
        if not self._grouped:
            self._entries.ensure()
            self._grouped = True
        claimed: list = []
        if self._clock() - self._claimed_at >= self._tick:
            claimed = self._entries.claim_idle(self._lease_ms, count)
            # full: more may wait
            self._claimed_at = -math.inf if len(claimed) == count else self._clock()
        entries = [(entry_id, fields, True) for entry_id, fields in claimed]
        if len(entries) < count:
            fresh = self._entries.read_new(count - len(entries), None if entries else block_ms)
            entries += [(entry_id, fields, False) for entry_id, fields in fresh]
        return entries

    def drain(self) -> int:
        """Run everything waiting in the lane, then return how many entries were started (a worker's --burst)."""
        started = 0
        while True:
            running = self._count()
            if running < self._threads and (taken := self._fill(self._threads - running, None)):
                started += taken
                continue
            if not running:  # nothing was running, and nothing was waiting
                return started
            self._wait_for_fewer_than(running)

    def _count(self) -> int:
        with self._changed:
            return len(self._running)

    def _wait_for_fewer_than(self, running: int) -> None:
        """Until an attempt of those ``running`` ends (or a tick: leases are renewed meanwhile)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._running) < running, timeout=self._tick)
        self._renew_leases()

    # -- one entry ---------------------------------------------------------------------------------

    def _start(self, entry_id: str, fields: dict, reclaimed: bool) -> None:
        with self._changed:
            # claimed back from ourselves after a late renewal: it is running
            if entry_id in self._running:
                return
            future = self._pool.submit(self._run, entry_id, fields, reclaimed)
            self._running.add(entry_id)
        future.add_done_callback(lambda _: self._finished(entry_id))

    def _finished(self, entry_id: str) -> None:
        with self._changed:
            self._running.discard(entry_id)
            self._changed.notify_all()

    def _run(self, entry_id: str, fields: dict, reclaimed: bool) -> None:
        try:
            if self.handle(entry_id, fields, reclaimed):
                self._entries.let_go(entry_id)
        # the outcome may not be recorded: the entry is claimed again after a lease
        except RedisError as exc:
            log.warning("%s: entry %s left for a retry: %s", self.name, entry_id, exc)
        # never expected (handlers record their own failures): claimed again after a lease
        except Exception:
            log.exception("%s: entry %s failed", self.name, entry_id)

    def let_go_on(self, pipe, entry_id: str) -> None:
        """For a handler: the entry goes with the writes queued on ``pipe`` (then it returns False)."""
        self._entries.let_go_on(pipe, entry_id)

    def _renew_leases(self) -> None:
        """Reset the idle time of the entries running here, so no other worker claims them."""
        if self._clock() - self._renewed < self._tick:
            return
        self._renewed = self._clock()
        with self._changed:
            running = list(self._running)
        if running:
            try:
                self._entries.renew(running)
            # a missed renewal only shortens the lease; the next may succeed
            except RedisError as exc:
                log.warning(
                    "%s: could not renew the leases of %d entries: %s", self.name, len(running), exc
                )

    # -- in the background -------------------------------------------------------------------------

    def start(self) -> None:
        self._reader.start()

    def request_stop(self) -> None:
        """Start no new attempt (safe in a signal handler); stop() then waits for the running ones."""
        self._reader.request_stop()

    def stop(self) -> None:
        """Stop reading and let the running attempts finish (a worker's warm shutdown)."""
        self._reader.stop()
        while running := self._count():
            self._wait_for_fewer_than(running)  # leases stay renewed while a long upload finishes
        self._pool.shutdown(wait=True)


class DeliveryLane(StreamLane):
    """The delivery lane: ``attempt(delivery_id, with_delivered, entry_fields)`` for each entry
    (app.work.delivering's signature); a "delivered" answer means with_delivered(pipe) was queued with the
    success."""

    name = "lane"

    def __init__(
        self,
        ctx: Needs,
        attempt: Callable[[str, Callable, dict], str],
        threads: int = 8,
        lease_seconds: float = 60.0,
        consumer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(
            ctx,
            ctx.lane,
            threads,
            lease_seconds,
            consumer,
            clock,
        )
        self._attempt = attempt

    def handle(self, entry_id: str, fields: dict, reclaimed: bool) -> bool:
        if not fields.get("delivery"):
            return True
        # a success lets the entry go with its own record, in one round trip; any other outcome here
        return (
            self._attempt(fields["delivery"], lambda pipe: self.let_go_on(pipe, entry_id), fields)
            != "delivered"
        )
