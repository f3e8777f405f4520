"""A chaos thread for tests: SIGKILLs one of a relay's workers each time the work reaches the next step, and
starts another in its place.

Kills follow the work's progress, not the clock, so the same kills happen however fast the machine is: a
fast machine cannot finish the work before the last kill, and a slow one is not killed more often."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.servers import eventually


@dataclass(frozen=True)
class Kill:
    step: int
    """The progress the kill waited for."""
    progress: int
    """The progress when the victim was chosen."""
    pid: int
    busy: bool
    """The victim held work in hand (a lane entry it was running)."""


class WorkerKiller(threading.Thread):
    def __init__(
        self,
        relay,
        workers: list[subprocess.Popen],
        steps: list[int],
        progress: Callable[[], int],
        seed: int,
        busy: Callable[[], set[int]] | None = None,
        every: float = 0.2,
    ):
        """``steps``: the values of ``progress()`` at which to kill, in order (looked at each ``every`` seconds).
        ``busy()``: the pids of the workers holding work now; a victim is chosen among them when there are any."""
        super().__init__(daemon=True)
        self.relay, self.workers, self.steps, self.progress, self.busy = (
            relay,
            workers,
            steps,
            progress,
            busy,
        )
        self.every = every
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for step in self.steps:
                eventually(
                    lambda step=step: self.stop.is_set() or self.progress() >= step,
                    900,
                    f"the work to reach {step} for a kill",
                    every=self.every,
                )
                if self.stop.is_set():
                    return
                self._kill(step)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def _kill(self, step: int) -> None:
        busy = self.busy() if self.busy else set()
        candidates = [w for w in self.workers if w.pid in busy] or self.workers
        victim = candidates[self.rng.randrange(len(candidates))]
        progress = self.progress()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.workers.remove(victim)
        self.kills.append(Kill(step, progress, victim.pid, victim.pid in busy))
        self.workers.append(self.relay.start_worker())

    def start_killing(self) -> WorkerKiller:
        self.start()
        return self

    def wait_for_kills(self, timeout: float = 1800) -> list[Kill]:
        """Until every step's kill is made (the work is expected to reach them all)."""
        self.join(timeout)
        return self.finish()

    def finish(self) -> list[Kill]:
        """Stop making kills; the kills made. Raises what went wrong in the thread."""
        self.stop.set()
        self.join(60)
        assert not self.is_alive(), "the chaos thread did not stop"
        if self.error is not None:
            raise AssertionError(
                f"the chaos thread failed after {len(self.kills)} kills: {self.error}"
            ) from self.error
        return self.kills


def lane_holders(relay) -> set[int]:
    """The pids of the workers running delivery-lane entries now (the lane's consumers are named host-pid)."""
    from app.stores import lane_stream

    ctx, host = relay.ctx, socket.gethostname()
    pending = ctx.redis.xpending(ctx.lane.key, lane_stream.GROUP)
    return {
        int(c["name"].rsplit("-", 1)[1])
        for c in pending.get("consumers") or []
        if c["name"].startswith(f"{host}-") and int(c["pending"])
    }


def where_is(relay, delivery_id: str) -> dict:
    """Everything that could move a delivery on, for a chaos test's report of one that never settled: its
    record, its lane entry (in the stream? pending with which consumer, idle how long?) and its RQ job."""
    from rq.job import Job

    from app.stores import lane_stream

    ctx = relay.ctx
    record = ctx.redis.hgetall(ctx.deliveries.key_for(delivery_id))
    record.pop("event", None)  # long, and the same for all of a task's deliveries
    entry, stream = record.get("lane_entry", ""), ctx.lane.key
    found: dict = {"record": record}
    if entry:
        found["entry in stream"] = bool(ctx.redis.xrange(stream, entry, entry, count=1))
        found["entry pending"] = [
            (p["consumer"], p["time_since_delivered"], p["times_delivered"])
            for p in ctx.redis.xpending_range(stream, lane_stream.GROUP, entry, entry, 1)
        ]
    if job_id := record.get("retry_job"):
        raw = ctx.rq_redis.hgetall(Job.key_for(job_id))
        found["rq job"] = {
            k.decode(): v.decode(errors="replace")[:80]
            for k, v in raw.items()
            if k in (b"status", b"retries_left", b"origin", b"ended_at", b"exc_info")
        }
    return found
