"""A fixed pool of worker threads that run tasks in order; the size is the API's 'worker pool'.

Tasks beyond the pool wait queued (phase acquiring_pool). Two tasks of one run never run at once.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, run_task: Callable[[str, threading.Event], None], pool_size: int):
        self._run_task = run_task
        self._pool_size = pool_size
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._busy = 0
        self._finished: dict[str, threading.Event] = {}
        self._cancels: dict[str, threading.Event] = defaultdict(threading.Event)
        self._run_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"sandbox-agent-{i}", daemon=True)
            for i in range(pool_size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()  # what still waits in the queue is not started: the API is going away
        for event in list(self._cancels.values()):
            event.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def saturated(self) -> bool:
        """True when a new task could not start at once."""
        with self._lock:
            return self._busy + self._queue.qsize() >= self._pool_size

    def state(self) -> dict:
        """What the pool is doing: tasks running, tasks waiting for a worker, and ``idle`` when every task
        handed to it was dealt with (run, or skipped because it had ended while it waited)."""
        with self._lock:
            running = self._busy
        with self._queue.mutex:
            idle = self._queue.unfinished_tasks == 0
        return {
            "size": self._pool_size,
            "running": running,
            "waiting": self._queue.qsize(),
            "idle": idle,
        }

    def submit(self, task_id: str, run_id: str) -> None:
        with self._lock:
            self._finished[task_id] = threading.Event()
        self._queue.put(f"{task_id} {run_id}")

    def wait(self, task_id: str, timeout: float) -> bool:
        """Block until the task ends or the timeout passes; True when it ended."""
        with self._lock:
            event = self._finished.get(task_id)
        return True if event is None else event.wait(timeout)

    def finished(self, task_id: str) -> None:
        with self._lock:
            event = self._finished.pop(task_id, None)
            self._cancels.pop(task_id, None)
        if event is not None:
            event.set()

    def cancel(self, task_id: str) -> None:
        with self._lock:
            self._cancels[task_id].set()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if not self._stopping.is_set():  # what still waits at a stop is not started
                    self._run(*item.split(" "))
            finally:
                self._queue.task_done()

    def _run(self, task_id: str, run_id: str) -> None:
        with self._lock:
            self._busy += 1
            cancel = self._cancels[task_id]
            run_lock = self._run_locks[run_id]
        try:
            with run_lock:
                self._run_task(task_id, cancel)
        except Exception:
            log.exception("task %s crashed the agent", task_id)
        finally:
            with self._lock:
                self._busy -= 1
