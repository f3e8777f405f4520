"""What the platforms' fakes share for tests: a log of the calls, answers of 429 on demand with the platform's
refusal of calls that come before the Retry-After they were given, a hold of a request before its body is read
(to catch a client in the middle of one) and a pause after a write is committed and before it is answered (to
kill a worker right there). Every stamp comes from ``clock`` (time.monotonic): the fakes run in the test's
process, so stamps are only ever compared with each other."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Lockout:
    """After a 429 that says when to come back (Retry-After, or the platform's documented wait), the platform
    refuses the caller until then: Microsoft Graph "limits any further requests from that client app for some
    time" (learn.microsoft.com/graph/throttling); Dropbox's Retry-After is "the limit in seconds that your app
    would need to wait before retrying to ensure a successful response" (developers.dropbox.com/dbx-performance-
    guide). A call that comes earlier is answered 429 again, and recorded in ``early``: a client that honours
    Retry-After leaves it empty."""

    clock: Callable[[], float] = time.monotonic
    early: list[tuple[float, str]] = field(default_factory=list)
    """(clock(), what) of each call that came before the last 429's wait was over."""
    _until: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refuses(self, what: str) -> bool:
        """True (and recorded) when this call comes before the wait asked for is over."""
        with self._lock:
            now = self.clock()
            if now < self._until:
                self.early.append((now, what))
                return True
            return False

    def left(self) -> float:
        """Seconds until the wait is over (0 when there is none)."""
        with self._lock:
            return max(0.0, self._until - self.clock())

    def start(self, seconds: float | None) -> None:
        """A 429 answered now asks the caller to wait ``seconds`` (None: it says nothing of when)."""
        if seconds:
            with self._lock:
                self._until = max(self._until, self.clock() + seconds)


@dataclass
class _Gate:
    """Stops the request named ``what`` after ``skip`` of them pass, until ``release`` is set."""

    what: str = ""
    skip: int = 0

    def stops(self, what: str) -> bool:
        if not what or what != self.what:
            return False
        if self.skip:
            self.skip -= 1
            return False
        self.what = ""
        return True


@dataclass
class Knobs:
    clock: Callable[[], float] = time.monotonic
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    """(clock(), method, path) of every call."""
    throttled: list[float] = field(default_factory=list)
    """When each 429 asked for with throttle_next was answered."""
    refusals: int = 0
    """Every 429 answered: asked for, before a Retry-After was over, or past the platform's limit."""
    lockout: Lockout | None = None
    """Who remembers the last 429's wait (made with ``clock``)."""
    held: threading.Event = field(default_factory=threading.Event)
    """Set while a request is held before its body is read (hold_before)."""
    paused: threading.Event = field(default_factory=threading.Event)
    """Set while a call is held after its write (pause_after)."""
    release: threading.Event = field(default_factory=threading.Event)
    """Lets a held or paused request go on."""
    _throttle: int = 0
    _hold: _Gate = field(default_factory=_Gate)
    _pause: _Gate = field(default_factory=_Gate)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.lockout = self.lockout or Lockout(self.clock)

    @property
    def early(self) -> list[tuple[float, str]]:
        """Calls made before the Retry-After of a 429 was over, each answered 429 again (see Lockout)."""
        return self.lockout.early  # type: ignore[union-attr]

    def throttle_next(self, count: int) -> None:
        with self._lock:
            self._throttle += count

    def hold_before(self, what: str, skip: int = 0) -> None:
        """The next request of ``what`` (the fake names its requests) after ``skip`` of them waits, its body
        unread, until ``release``; ``held`` is set while it waits."""
        self.release.clear()
        self.held.clear()
        self._hold = _Gate(what, skip)

    def pause_after(self, what: str, skip: int = 0) -> None:
        """The next write of ``what`` (the fake names its writes) after ``skip`` of them is committed, then held
        until ``release``."""
        self.release.clear()
        self._pause = _Gate(what, skip)

    def too_many(
        self, method: str, path: str, retry_after: float | None = None, limit: Window | None = None
    ) -> bool:
        """Log a call; True when it is to be answered 429: it came before the last 429's ``retry_after`` was over,
        a throttle was asked for, or it is past the platform's ``limit``. A 429 decided here makes the caller
        wait ``retry_after`` (what the fake's answer says)."""
        with self._lock:
            self.calls.append((self.clock(), method, path))
            if self.lockout.refuses(f"{method} {path}"):  # type: ignore[union-attr]
                self.refusals += 1
                return True
            asked = self._throttle > 0
            if asked:
                self._throttle -= 1
                self.throttled.append(self.clock())
        refused = asked or (limit is not None and limit.over())
        if refused:
            self.lockout.start(retry_after)  # type: ignore[union-attr]
            with self._lock:
                self.refusals += 1
        return refused

    def before_body(self, what: str) -> None:
        if self._hold.stops(what):
            self.held.set()
            self.release.wait(60)
            self.held.clear()

    def after_write(self, what: str) -> None:
        if self._pause.stops(what):
            self.paused.set()
            self.release.wait(60)


@dataclass
class Window:
    """A platform's limit of ``limit`` calls in any ``seconds``."""

    limit: int
    seconds: float
    clock: Callable[[], float] = time.monotonic
    _calls: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def over(self) -> bool:
        """Count a call; True when it is past the limit."""
        with self._lock:
            now = self.clock()
            while self._calls and now - self._calls[0] > self.seconds:
                self._calls.popleft()
            self._calls.append(now)
            return len(self._calls) > self.limit
