"""A real sandbox server per test, on loopback, with its own key prefix and data folder."""

from __future__ import annotations

import itertools
import ssl
from dataclasses import dataclass

import httpx
import pytest

from sandbox import SandboxConfig, create_app
from tests.support.servers import ServedApp, WebhookReceiver, eventually

_prefixes = itertools.count()
ADMIN = "admin-token-for-tests"
TERMINAL = {"completed", "failed", "cancelled", "expired"}
TLS = ssl.create_default_context()
"""Shared by every client made here: httpx builds a context per client otherwise (~35 ms of CPU each)."""
SETTLED = {"delivered", "gone", "failed"}
"""A webhook delivery's final statuses: the dispatcher plans no attempt after them."""


@dataclass
class SandboxHandle:
    url: str
    app: object
    api_key: str
    webhook_secret: str
    org_id: str

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key or self.api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=TLS)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30, verify=TLS
        )

    @property
    def runtime(self):
        return self.app.extensions["sandbox"]

    def new_org(self, name: str = "other") -> dict:
        return self.runtime.store.create_org(name)

    def advance(self, seconds: float) -> None:
        with self.admin() as admin:
            admin.post("/_sandbox/clock", json={"seconds": seconds}).raise_for_status()

    def held(self, name: str) -> list[str]:
        """The ids of the tasks waiting at ``[[hold=NAME]]`` now (docs/sandbox.md)."""
        with self.admin() as admin:
            return admin.get(f"/_sandbox/holds/{name}").raise_for_status().json()["held"]

    def wait_held(self, name: str, count: int = 1, timeout: float = 120.0) -> list[str]:
        """Wait until ``count`` tasks wait at ``[[hold=NAME]]``: they are running, in executing_plan."""

        def reached():
            held = self.held(name)
            return held if len(held) >= count else None

        return eventually(
            reached, timeout, f"{count} sandbox task(s) to reach [[hold={name}]]", every=0.1
        )

    def release(self, name: str) -> None:
        """Let every task with ``[[hold=NAME]]`` go on, those waiting and those still to come."""
        with self.admin() as admin:
            admin.post(f"/_sandbox/holds/{name}/release").raise_for_status()

    def phases(self, task_id: str) -> list[dict]:
        """Every {status, phase, progress} the task went through, in order, as the sandbox wrote them."""
        with self.admin() as admin:
            return (
                admin.get(f"/_sandbox/tasks/{task_id}/phases").raise_for_status().json()["phases"]
            )

    def pool(self) -> dict:
        """The worker pool now: size, running, waiting, idle (every task handed to it dealt with)."""
        with self.admin() as admin:
            return admin.get("/_sandbox/pool").raise_for_status().json()

    def load(self, org_id: str | None = None) -> dict:
        """The organisation's tasks in the API now (``active``: queued or running) and ``max_active``, the most
        there ever were at once (default: this handle's organisation)."""
        with self.admin() as admin:
            return (
                admin.get(f"/_sandbox/orgs/{org_id or self.org_id}/load").raise_for_status().json()
            )

    def deliveries(self) -> list[dict]:
        """The webhook delivery records: status, attempts, last_outcome, due_at (None: no attempt planned)."""
        with self.admin() as admin:
            return admin.get("/_sandbox/webhooks").raise_for_status().json()["items"]

    def wait_settled(self, count: int = 1, timeout: float = 60.0) -> list[dict]:
        """Wait until ``count`` webhook deliveries are settled: a final status and no attempt planned, so the
        dispatcher will make no more attempts and a test can count what arrived."""

        def settled():
            items = self.deliveries()
            done = [d for d in items if d["status"] in SETTLED and d["due_at"] is None]
            return items if len(done) >= count else None

        def state():
            return [(d["status"], d["attempts"], d["due_at"]) for d in self.deliveries()]

        return eventually(settled, timeout, f"{count} webhook deliveries to settle", show=state)

    def wait_task(self, client: httpx.Client, task_id: str, timeout: float = 60.0) -> dict:
        last: dict = {}

        def ended():
            last.update(client.get(f"/tasks/{task_id}").json())
            return dict(last) if last["status"] in TERMINAL else None

        return eventually(
            ended,
            timeout,
            f"task {task_id} to end",
            show=lambda: f"last seen {last.get('status')} in {last.get('phase')}",
        )


def fetch(url: str) -> httpx.Response:
    """GET a link the sandbox gave (a download, the view), without a client of one's own."""
    return httpx.get(url, timeout=30, verify=TLS)


@pytest.fixture
def make_sandbox(redis_url, tmp_path):
    started: list[tuple[ServedApp, object]] = []

    def build(**overrides) -> SandboxHandle:
        settings = dict(
            redis_url=redis_url,
            key_prefix=f"sbx{next(_prefixes)}:",
            data_dir=tmp_path / "sandbox",
            task_seconds=0.05,
            admin_token=ADMIN,
            webhook_retry_schedule=(0.2, 0.4, 0.8),
        )
        settings.update(overrides)
        app = create_app(SandboxConfig(**settings))
        served = ServedApp(app).start()
        started.append((served, app))
        org = app.extensions["sandbox"].store.create_org("acme")
        return SandboxHandle(served.url, app, org["api_key"], org["webhook_secret"], org["org_id"])

    yield build
    for served, app in started:
        served.stop()
        app.extensions["sandbox"].stop()


@pytest.fixture
def sandbox(make_sandbox) -> SandboxHandle:
    return make_sandbox()


@pytest.fixture
def receiver():
    hook = WebhookReceiver()
    served = ServedApp(hook).start()
    hook.url = served.url + "/hook"  # type: ignore[attr-defined]
    yield hook
    served.stop()
