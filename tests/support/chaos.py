"""A chaos thread for tests: SIGKILLs one of a relay's workers at random intervals and starts another in its
place, up to ``limit`` times or until ``stop`` is set."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time


class WorkerKiller(threading.Thread):
    def __init__(self, relay, workers: list[subprocess.Popen], limit: int, pause: tuple[float, float], seed: int):
        super().__init__(daemon=True)
        self.relay, self.workers, self.limit, self.pause = relay, workers, limit, pause
        self.rng = random.Random(seed)
        self.kills: list[float] = []
        """time.monotonic() of each kill."""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.kills) < self.limit:
            self.stop.wait(self.rng.uniform(*self.pause))
            victim = self.workers.pop(self.rng.randrange(len(self.workers)))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            self.kills.append(time.monotonic())
            self.workers.append(self.relay.start_worker())

    def finish(self) -> list[float]:
        self.stop.set()
        self.join(timeout=30)
        return self.kills
