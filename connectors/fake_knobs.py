"""What the write-back platforms' fakes share for tests: a log of the calls, answers of 429 on demand,
and a pause after a write is committed and before it is answered (to kill a worker right there)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Knobs:
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    """(time.time(), method, path) of every call."""
    throttled: list[float] = field(default_factory=list)
    """When each 429 was answered."""
    _throttle: int = 0
    _pause_on: str = ""
    _pause_skip: int = 0
    paused: threading.Event = field(default_factory=threading.Event)
    """Set while a call is held after its write."""
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle_next(self, count: int) -> None:
        with self._lock:
            self._throttle += count

    def pause_after(self, what: str, skip: int = 0) -> None:
        """The next write of ``what`` (the fake names its writes) after ``skip`` of them is committed, then held
        until ``release``."""
        self._pause_on, self._pause_skip = what, skip
        self.release.clear()

    def note(self, method: str, path: str) -> bool:
        """Log a call; True when it is to be answered 429."""
        with self._lock:
            self.calls.append((time.time(), method, path))
            if self._throttle:
                self._throttle -= 1
                self.throttled.append(time.time())
                return True
        return False

    def after_write(self, what: str) -> None:
        if what and what == self._pause_on:
            if self._pause_skip:
                self._pause_skip -= 1
                return
            self._pause_on = ""
            self.paused.set()
            self.release.wait(60)

    def calls_after(self, moment: float) -> list[float]:
        return [when for when, _, _ in self.calls if when > moment]


@dataclass
class Window:
    """A platform's limit of ``limit`` calls in any ``seconds``."""

    limit: int
    seconds: float
    clock: Callable[[], float] = time.monotonic
    refused: int = 0
    """Calls answered 429 for crossing the limit: a client that keeps the platform's pace meets none."""
    _calls: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def over(self) -> bool:
        """Count a call; True when it is past the limit."""
        with self._lock:
            now = self.clock()
            while self._calls and now - self._calls[0] > self.seconds:
                self._calls.popleft()
            self._calls.append(now)
            over = len(self._calls) > self.limit
            self.refused += over
            return over
