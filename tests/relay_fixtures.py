"""A whole relay per test: the sandbox API, the relay's web app on loopback, real worker and
scheduler processes, a Redis database of its own."""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.cli.devstack import free_port, stop_processes
from app.core.config import RelayConfig
from app.core.crypto import SecretBox
from app.stores.context import Context, build_context, install
from app.web import create_app
from tests.sandbox_fixtures import TLS, SandboxHandle
from tests.support.servers import ServedApp, eventually

ENDED = {"completed", "failed", "cancelled", "expired"}


@dataclass
class RelayStack:
    sandbox: SandboxHandle
    config: RelayConfig
    ctx: Context
    web: ServedApp
    api_key: str
    tenant_id: str
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.web.url

    def client(self, api_key: str | None = None) -> httpx.Client:
        # one TLS context: each new one costs ~35 ms of CPU
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key or self.api_key}"},
            timeout=30,
            verify=TLS,
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.config.to_env()}

    def start_worker(self) -> subprocess.Popen:
        return self._spawn("worker")

    def start_scheduler(self) -> subprocess.Popen:
        return self._spawn("scheduler")

    def _spawn(self, command: str) -> subprocess.Popen:
        """A relay process; its output (JSON logs, and every thread's stack if it crashes) goes to a log file
        of its own: ``log_of(process)``."""
        log = (self.log_dir / f"{command}-{len(self.processes)}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", command],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def log_of(self, process: subprocess.Popen) -> str:
        [path] = self.log_dir.glob(f"*-{self.processes.index(process)}.log")
        return path.read_text(errors="replace")

    def submit(self, client: httpx.Client, **body) -> dict:
        body.setdefault("format", "excel")
        response = client.post("/v1/documents", json=body)
        assert response.status_code in (200, 202), response.text
        return response.json()

    def wait_task(self, client: httpx.Client, task_id: str, timeout: float = 120.0) -> dict:
        """The task once it has ended. The deadline is for a hang: the first task of a test also waits for its
        worker process to start, slow on a busy machine."""
        seen: dict = {}

        def ended():
            task = client.get(f"/v1/tasks/{task_id}").json()
            seen.update(task)
            return task if task["status"] in ENDED else None

        return eventually(
            ended,
            timeout,
            f"relay task {task_id} to end",
            every=0.1,  # each look is a request
            show=lambda: {k: seen.get(k) for k in ("status", "phase", "progress", "updated_at")},
        )

    def deliveries_of(self, task_ids: list[str]) -> list[dict]:
        """The delivery records of these tasks, read from the relay's Redis in two round trips: for tests that
        look again and again at many tasks (over HTTP, each look would be a request per task)."""

        ids = [i for task in self.ctx.tasks.many(task_ids) for i in task.delivery_ids]
        pipe = self.ctx.redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hmget(
                self.ctx.deliveries.key_for(delivery_id),
                "delivery_id",
                "kind",
                "state",
                "attempts",
                "last_error",
            )
        return [
            dict(
                zip(("delivery_id", "kind", "state", "attempts", "last_error"), fields, strict=True)
            )
            for fields in pipe.execute()
        ]

    def new_tenant(self, name: str = "other", upstream_key: str | None = None) -> tuple[str, str]:
        tenant, api_key = self.ctx.tenants.create(
            name,
            self.sandbox.url,
            upstream_key or self.sandbox.api_key,
            self.sandbox.webhook_secret,
        )
        return tenant.tenant_id, api_key

    def stop(self) -> None:
        stop_processes(self.processes, timeout=10)
        self.web.stop()


@pytest.fixture
def make_relay(make_sandbox, fresh_redis_url, tmp_path):
    stacks: list[RelayStack] = []

    def build(sandbox: SandboxHandle | None = None, worker: bool = True, **overrides) -> RelayStack:
        box = sandbox or make_sandbox()
        port = free_port()
        # tests that need it set a limit of their own
        settings = dict(
            redis_url=fresh_redis_url,
            public_url=f"http://127.0.0.1:{port}",
            encryption_keys=SecretBox.new_key(),
            secret_key=secrets.token_urlsafe(32),
            upstream_retries=2,
            upstream_backoff_seconds=0.05,
            upstream_backoff_cap_seconds=0.2,
            submit_retry_intervals=(1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
            reconcile_interval_seconds=1,
            reconcile_quiet_seconds=30,
            poll_first_seconds=0.5,
            poll_cap_seconds=1,
            upstream_rate_limit_per_minute=60_000,  # polling's budget: tests that measure it set theirs
            outbound_allow="127.0.0.0/8",
            folder_roots=str(tmp_path / "deliveries"),
            delivery_backoff_seconds=0.5,
            delivery_backoff_cap_seconds=2,
            delivery_max_attempts=4,
            worker_lease_seconds=3,
            worker_maintenance_seconds=1,
            intake_reclaim_seconds=5,
            metrics_dir=str(tmp_path / "metrics"),
            rate_limit="",
        )
        settings.update(overrides)
        config = RelayConfig(**settings)
        ctx = build_context(config)
        # the jobs a test runs in this process (a burst worker, the reconciler) find it as a worker
        # process's jobs find theirs
        install(ctx)
        web = ServedApp(create_app(context=ctx), port=port).start()
        tenant, api_key = ctx.tenants.create("acme", box.url, box.api_key, box.webhook_secret)
        log_dir = tmp_path / f"relay-logs-{len(stacks)}"
        log_dir.mkdir()
        stack = RelayStack(box, config, ctx, web, api_key, tenant.tenant_id, log_dir=log_dir)
        stacks.append(stack)
        if worker:
            stack.start_worker()
        return stack

    yield build
    for stack in stacks:
        stack.stop()


@pytest.fixture
def relay(make_relay) -> RelayStack:
    return make_relay()


@pytest.fixture
def fake_slack(tmp_path):
    from connectors.slack.fake import FakeSlack

    fake = FakeSlack(storage=tmp_path / "slack-files")
    served = ServedApp(fake.app()).start()
    fake.url = served.url  # type: ignore[attr-defined]
    yield fake
    served.stop()


@pytest.fixture
def fake_drive(tmp_path):
    """The fake Drive with a service account and an OAuth client registered."""
    from connectors.gdrive.fake import FakeDrive

    private_pem, public_pem = _service_account_keys()
    fake = FakeDrive(
        storage=tmp_path / "drive-files",
        service_accounts={"key-1": public_pem},
        oauth_clients={"1//refresh-token": ("client-id.apps", "client-secret")},
    )
    served = ServedApp(fake.app()).start()
    fake.url = served.url  # type: ignore[attr-defined]
    fake.service_account = {
        "type": "service_account",
        "client_email": "relay@project.iam.gserviceaccount.com",  # type: ignore[attr-defined]
        "private_key": private_pem,
        "private_key_id": "key-1",
    }
    fake.oauth_user = {
        "type": "authorized_user",
        "client_id": "client-id.apps",  # type: ignore[attr-defined]
        "client_secret": "client-secret",
        "refresh_token": "1//refresh-token",
    }
    yield fake
    fake.knobs.release.set()
    served.stop()


@pytest.fixture(scope="session")
def loopback_ca(tmp_path_factory):
    """A certificate authority for HTTPS fakes (tests.support.tls); the relay trusts it through
    RELAY_OUTBOUND_CA_FILE."""
    from tests.support.tls import make_ca

    return make_ca(tmp_path_factory.mktemp("loopback-ca"))


@pytest.fixture
def smtp_server(tmp_path):
    from tests.support.smtp import SmtpServer

    server = SmtpServer(tmp_path, free_port(), users={"relay": "s3cret-pass"}).start()
    yield server
    server.stop()


@functools.cache
def _service_account_keys() -> tuple[str, str]:
    """An RSA key pair: (private PEM for the relay, public PEM for the fake's token endpoint). One per test
    process: making a 2048-bit key costs a good part of a CPU-second, and each test's fake knows only its own
    service account anyway."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def _served(fake, tls=None):
    """A platform's fake on loopback (``fake.url``; HTTPS with ``tls``) until the test ends; a paused call is
    let go first."""
    served = ServedApp(fake.app(), tls=tls).start()
    fake.url = served.url
    yield fake
    fake.knobs.release.set()
    served.stop()


@pytest.fixture
def fake_hubspot(loopback_ca):
    """The fake HubSpot over HTTPS, as the real one is: the relay trusts it only through
    RELAY_OUTBOUND_CA_FILE (``fake.settings`` has it)."""
    from connectors.hubspot.fake import FakeHubSpot

    fake = FakeHubSpot(interval_ms=1000)
    fake.settings = lambda: {  # type: ignore[attr-defined]
        "hubspot_api_url": fake.url,
        "outbound_ca_file": str(loopback_ca.ca_file),
    }
    yield from _served(fake, tls=loopback_ca.server_context())


@pytest.fixture
def fake_airtable():
    from connectors.airtable.fake import FakeAirtable

    # as long as the relay's tests wait after a 429
    yield from _served(FakeAirtable(back_off_seconds=1.0))


@pytest.fixture
def fake_sheets(tmp_path):
    """The fake Sheets, whose token endpoint knows one service account (``fake.service_account``). Its quota
    window is 6 s instead of a minute (the same 60 reads and 60 writes in it): a relay for it gets the same
    window (``sheets_quota_window_seconds=fake.window_seconds``)."""
    from connectors.gdrive.fake import FakeDrive
    from connectors.sheets.fake import SHEETS_SCOPE, FakeSheets

    private_pem, public_pem = _service_account_keys()
    fake = FakeSheets(
        auth=FakeDrive(
            storage=tmp_path / "sheets-auth",
            scope=SHEETS_SCOPE,
            service_accounts={"key-1": public_pem},
        ),
        window_seconds=6.0,
    )
    fake.service_account = {
        "type": "service_account",
        "client_email": "relay@project.iam.gserviceaccount.com",  # type: ignore[attr-defined]
        "private_key": private_pem,
        "private_key_id": "key-1",
    }
    yield from _served(fake)


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 (a real S3 endpoint on loopback), one per test session: each test has a bucket of its own."""
    from connectors.s3.fake import start_moto

    port = free_port()
    process = start_moto(port)
    yield f"http://127.0.0.1:{port}"
    process.kill()
    process.wait()


@pytest.fixture
def moto(moto_server):
    """A new bucket, and the proxy in front of moto (``proxy.url``) that the relay talks to."""
    from connectors.s3.fake import S3Proxy
    from tests.relay.test_s3_delivery import s3_client

    proxy = S3Proxy(moto_server)
    proxy.bucket = f"reports-{secrets.token_hex(4)}"  # type: ignore[attr-defined]
    s3_client(moto_server).create_bucket(Bucket=proxy.bucket)
    served = ServedApp(proxy).start()
    proxy.url = served.url  # type: ignore[attr-defined]
    proxy.s3 = s3_client(moto_server)  # type: ignore[attr-defined]
    yield proxy
    proxy.release.set()
    served.stop()


@pytest.fixture
def fake_teams():
    """The fake Teams workflow webhook; ``fake.url(fake.base)`` is a workflow's URL."""
    from connectors.teams.fake import FakeTeams

    fake = FakeTeams()
    served = ServedApp(fake.app()).start()
    fake.base = served.url  # type: ignore[attr-defined]
    yield fake
    served.stop()


@pytest.fixture
def fake_graph(tmp_path, loopback_ca):
    """The fake Microsoft Graph and Entra sign-in, over HTTPS (msal speaks nothing else)."""
    from connectors.onedrive.fake import FakeGraph

    yield from _served(FakeGraph(storage=tmp_path / "graph"), tls=loopback_ca.server_context())


@pytest.fixture
def fake_dropbox(tmp_path, loopback_ca):
    """The fake Dropbox API, over HTTPS (the SDK speaks nothing else)."""
    from connectors.dropbox.fake import FakeDropbox

    yield from _served(FakeDropbox(storage=tmp_path / "dropbox"), tls=loopback_ca.server_context())


@pytest.fixture
def dropbox_relay(make_relay, fake_dropbox, loopback_ca):
    """``dropbox_relay(**overrides)``: a relay that delivers to the fake Dropbox and trusts its CA."""
    return lambda **overrides: make_relay(
        dropbox_api_url=fake_dropbox.url,
        dropbox_content_url=fake_dropbox.url,
        outbound_ca_file=str(loopback_ca.ca_file),
        **overrides,
    )
