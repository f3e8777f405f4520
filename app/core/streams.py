"""The thread that reads a lane's stream (app.work.lane), step after step, through storage trouble."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from redis.exceptions import RedisError

from app.core import storage

log = logging.getLogger(__name__)


class ReaderThread:
    """A thread calling ``step`` (one short blocking read and what follows) until stopped. Storage trouble
    (Redis full, read-only, restarting) costs a growing pause and an unexpected error a second's, never the
    thread."""

    def __init__(self, name: str, step: Callable[[], object]):
        self._name, self._step = name, step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Take no new step (safe in a signal handler: it only sets a flag)."""
        self._stop.set()

    def stop(self) -> None:
        """Stop and wait for the step in progress: nothing may run on once the process tears down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        backoff = storage.Backoff(self._name.removeprefix("relay-"))
        while not self._stop.is_set():
            try:
                self._step()
                backoff.succeeded()
            except RedisError as exc:
                self._stop.wait(backoff.failed(exc))
            except Exception:
                log.exception("%s failed", self._name)
                self._stop.wait(1.0)
