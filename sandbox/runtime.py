"""Wires the sandbox's parts together and owns their background threads."""

from __future__ import annotations

import logging
import threading

from redis import Redis

from .agent import Agent
from .config import SandboxConfig
from .executor import Executor
from .exports import Exporter
from .files import FileStore
from .links import Links
from .ratelimit import RateLimiter
from .store import SandboxStore
from .tasks import TaskService
from .webhooks import WebhookSender

log = logging.getLogger(__name__)


class Sandbox:
    def __init__(self, config: SandboxConfig):
        self.config = config
        self.redis = Redis.from_url(config.redis_url, decode_responses=True)
        self.store = SandboxStore(self.redis, config.key_prefix)
        self.files = FileStore(config.data_dir)
        self.links = Links(
            self.store.signing_secret(config.secret_key),
            self.store.clock,
            config.download_ttl_seconds,
        )
        self.webhooks = WebhookSender(self.store, config)
        self.service = TaskService(self.store, self.files, self.links, config, self.webhooks)
        self.agent = Agent(self.service, self.store, self.files, config)
        self.executor = Executor(self.agent.execute, config.pool_size)
        self.service.on_finished = self.executor.finished
        self.exporter = Exporter(config.soffice)
        self.limiter = RateLimiter(
            self.store, config.rate_limit_requests, config.rate_limit_window_seconds
        )
        self._stop = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_loop, name="sandbox-sweeper", daemon=True
        )

    def start(self) -> None:
        self._recover()
        self.executor.start()
        self.webhooks.start()
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.executor.stop()
        self.webhooks.stop()
        if self._sweeper.is_alive():
            self._sweeper.join(timeout=5)
        self.redis.close()

    def submit(self, org: dict, kind: str, body: dict, base_url: str) -> dict:
        # preflight: checks done, task recorded
        task = self.service.submit(org, kind, body, base_url)
        self.store.transition(task["task_id"], expect="queued", phase="acquiring_pool", progress=1)
        self.executor.submit(task["task_id"], task["run_id"])
        return task

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock: what falls due meanwhile (expiry, purges, webhook attempts) happens now."""
        self.store.clock.advance(seconds)
        self.sweep()
        self.webhooks.wake()

    def sweep(self) -> None:
        self.service.expire_stale()
        self.service.purge_expired_bytes()

    def _recover(self) -> None:
        """After a restart: tasks that were running were cut off mid-run, as the contract's 'cancelled'
        says ('server shutdown mid-run'); tasks still queued go back in the queue in their order."""
        for task_id in self.store.active_tasks():
            task = self.store.get_task(task_id)
            if task is None:
                continue
            if task["status"] == "running":
                self.service.finish(
                    task_id,
                    "cancelled",
                    error={
                        "code": "server_shutdown",
                        "message": "The server shut down while the task was running.",
                    },
                )
            else:
                self.executor.submit(task_id, task["run_id"])

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_interval_seconds):
            try:
                self.sweep()
            except Exception:
                log.exception("sweeper error")
