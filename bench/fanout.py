"""bench/fanout: delivery throughput and memory.

1. Deliveries/s to a loopback webhook subscriber (gunicorn) with 2 relay worker processes (each running
   its delivery lane: decision 0008), against a plain httpx loop posting the same signed payloads, and
   against the peer a Python team would write (bench/celery_peer.py: 2 Celery worker processes, a thread
   pool of 8 each, late acknowledgement, Redis broker), in the same run.
   Goals: relay/httpx loop >= 0.5, relay/Celery >= 1.5, from the best of 2 rounds (as bench/ingest).
2. Peak RSS of one worker delivering one 1 GiB document to the folder, the Drive fake, the Slack fake,
   S3 (moto's server), the Graph (OneDrive) and Dropbox fakes (the file streams from the sandbox), and
   Teams (a card with the file's link). Goal: under 150 MiB; under 100 MiB for S3, OneDrive, Dropbox, Teams.

    python bench/fanout.py [--count 2000] [--rounds 2] [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.devstack import free_port, wait_until_up  # noqa: E402
from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.core.states import DeliveryState  # noqa: E402
from app.domain import deliveries  # noqa: E402
from app.domain.tracking import finish  # noqa: E402
from app.stores.context import build_context  # noqa: E402
from app.stores.destinations import new_webhook_secret  # noqa: E402
from app.stores.tasks import Task  # noqa: E402
from bench import proc  # noqa: E402
from tests.support.servers import ServedApp  # noqa: E402

TASK_RESULT = {"summary": "Built a workbook.", "download_url": "", "edit_url": "", "artifacts": []}


def gunicorn_subscriber(
    port: int, app: str = "bench.bare:create_app()", env: dict | None = None
) -> subprocess.Popen:
    """A subscriber as a real one is served: its own processes, keep-alive connections."""
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    process = subprocess.Popen(
        [
            gunicorn,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--log-level",
            "warning",
            app,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    wait_until_up(f"http://127.0.0.1:{port}/")
    return process


def finished_task(ctx, tenant_id: str, result: dict, run_id: str = "run_bench") -> Task:
    task = ctx.tasks.create(tenant_id, format="excel", prompt="bench", run_id=run_id)
    finish(
        ctx,
        task.task_id,
        {"status": "completed", "phase": "", "result": result, "credits_used": 1, "duration_ms": 1},
    )
    return ctx.tasks.get(task.task_id)


def run_workers(env: dict, count: int, log: Path | None = None) -> list[subprocess.Popen]:
    out = log.open("ab") if log else subprocess.DEVNULL
    return [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--burst", "--queues", "relay-deliver"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )
        for _ in range(count)
    ]


def throughput(ctx, env: dict, tenant_id: str, count: int) -> dict:
    port = free_port()
    subscriber = gunicorn_subscriber(port)
    url = f"http://127.0.0.1:{port}/bare"
    try:
        task = finished_task(ctx, tenant_id, TASK_RESULT)
        event = task.event_json
        secret = new_webhook_secret()
        # baseline: a plain httpx loop posting the same signed payloads
        body = json.dumps(event)
        stamp = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": "msg_bench",
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign("msg_bench", stamp, body),
        }
        with httpx.Client() as client:
            start = time.perf_counter()
            for _ in range(count):
                client.post(url, content=body, headers=headers).raise_for_status()
            baseline = count / (time.perf_counter() - start)
        # the relay: 2000 deliveries recorded and queued as the finish hook does, 2 worker processes
        ids = [
            deliveries.record(
                ctx,
                task,
                event,
                f"bench:{n}",
                {"kind": "webhook", "config": {"url": url, "secret": secret}},
            )
            for n in range(count)
        ]
        for delivery_id in ids:
            deliveries.enqueue(ctx, delivery_id)
        for worker in run_workers(env, 2):
            worker.wait(timeout=1800)
        records = [ctx.deliveries.get(i) for i in ids]
        done = [r.delivered_at for r in records if r and r.state == DeliveryState.DELIVERED]
        relay = (len(done) - 1) / (max(done) - min(done)) if len(done) > 1 else 0.0
        celery = celery_peer(ctx, env, url, body, headers, count)
        return {
            "baseline": baseline,
            "relay": relay,
            "celery": celery,
            "delivered": len(done),
            "count": count,
        }
    finally:
        subscriber.terminate()
        subscriber.wait()


def celery_peer(ctx, env: dict, url: str, body: str, headers: dict, count: int) -> float:
    """The same signed posts as Celery tasks, queued first (as the relay's deliveries are), then run by 2
    worker processes; deliveries/s from first to last completion, as for the relay."""
    from bench import celery_peer as peer  # only this stage needs Celery

    broker = f"redis+socket://{ctx.config.redis_url.removeprefix('unix://')}?virtual_host=2"
    peer.celery.conf.broker_url = broker
    for _ in range(count):
        peer.deliver.delay(url, body, headers)
    done_store = peer._done()
    done_store.delete(peer.DONE)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.celery_peer",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "--loglevel",
                "WARNING",
                "-n",
                f"peer{n}@%h",
            ],
            env={**env, "BENCH_CELERY_BROKER": broker},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(2)
    ]
    deadline = time.monotonic() + 600
    while done_store.llen(peer.DONE) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in workers:
        worker.terminate()
        worker.wait(timeout=60)
    done = [float(t) for t in done_store.lrange(peer.DONE, 0, -1)]
    return (len(done) - 1) / (max(done) - min(done)) if len(done) > 1 else 0.0


def peak_rss(
    ctx, env: dict, tenant_id: str, work: Path, size_mb: int, only: set[str] | None = None
) -> list[dict]:
    from connectors.dropbox.fake import FakeDropbox
    from connectors.gdrive.fake import FakeDrive
    from connectors.onedrive.fake import FakeGraph
    from connectors.s3.fake import start_moto
    from connectors.slack.fake import FakeSlack
    from connectors.teams.fake import FakeTeams
    from tests.support.tls import make_ca

    sandbox_port = free_port()
    sandbox_env = {
        **os.environ,
        "SANDBOX_REDIS_URL": ctx.config.redis_url,
        "SANDBOX_KEY_PREFIX": "benchsandbox:",
        "SANDBOX_DATA_DIR": str(work / "sandbox"),
        "SANDBOX_TASK_SECONDS": "0",
    }
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--port", str(sandbox_port)],
        env=sandbox_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    slack = FakeSlack(storage=work / "slack")
    drive = FakeDrive(
        storage=work / "drive", oauth_clients={"1//bench": ("bench-client", "bench-secret")}
    )
    ca = make_ca(work / "ca")  # Graph's and Dropbox's clients speak HTTPS only
    graph, dropbox, teams = (
        FakeGraph(storage=work / "graph"),
        FakeDropbox(storage=work / "dropbox"),
        FakeTeams(),
    )
    servers = [
        ServedApp(slack.app()).start(),
        ServedApp(drive.app()).start(),
        ServedApp(graph.app(), tls=ca.server_context()).start(),
        ServedApp(dropbox.app(), tls=ca.server_context()).start(),
        ServedApp(teams.app()).start(),
    ]
    graph.url, dropbox.url = servers[2].url, servers[3].url
    moto_port = free_port()
    moto = start_moto(moto_port)
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{moto_port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket="bench")
        wait_until_up(f"http://127.0.0.1:{sandbox_port}/healthz")
        org = json.loads(
            subprocess.run(
                [sys.executable, "-m", "sandbox", "orgs", "create", "bench", "--json"],
                env=sandbox_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        with httpx.Client(
            base_url=f"http://127.0.0.1:{sandbox_port}",
            timeout=1800,
            headers={"Authorization": f"Bearer {org['api_key']}"},
        ) as upstream:
            made = upstream.post(
                "/excel/generate", json={"prompt": f"Big [[pad_mb={size_mb}]]"}
            ).json()
        ctx.tenants.update_upstream(tenant_id, upstream_key=org["api_key"])
        ctx.redis.hset(
            ctx.tenants.key_for(tenant_id), "upstream_url", f"http://127.0.0.1:{sandbox_port}"
        )
        result = {
            **TASK_RESULT,
            "download_url": made["download_url"],
            "artifacts": [{"file_name": "workbook.xlsx"}],
        }
        task = finished_task(ctx, tenant_id, result, run_id=made["run_id"])
        event = task.event_json
        destinations = {
            "folder": {"kind": "folder", "config": {"path": "bench"}},
            "gdrive": {
                "kind": "gdrive",
                "config": {
                    "folder_id": "folder-reports",
                    "credentials": {
                        "type": "authorized_user",
                        "client_id": "bench-client",
                        "client_secret": "bench-secret",
                        "refresh_token": "1//bench",
                    },
                },
            },
            "slack": {
                "kind": "slack",
                "config": {"channel": "C0BENCH01", "bot_token": "xoxb-test-token"},
            },
            "s3": {
                "kind": "s3",
                "config": {
                    "bucket": "bench",
                    "endpoint_url": f"http://127.0.0.1:{moto_port}",
                    "addressing_style": "path",
                    "access_key_id": "bench",
                    "secret_access_key": "bench",
                },
            },
            "onedrive": {
                "kind": "onedrive",
                "config": {
                    "tenant_id": graph.tenant,
                    "client_id": "relay-app",
                    "client_secret": "app-secret",
                    "user": "alice@contoso.com",
                },
            },
            "dropbox": {
                "kind": "dropbox",
                "config": {
                    "app_key": "relayappkey",
                    "app_secret": "relay-app-secret",
                    "refresh_token": "refresh-token-of-ana",
                },
            },
            # a card with the link
            "teams": {
                "kind": "teams",
                "config": {"url": teams.url(servers[4].url)},
            },
        }
        env = {
            **env,
            "RELAY_SLACK_API_URL": f"{servers[0].url}/api/",
            "RELAY_DRIVE_API_URL": servers[1].url,
            "RELAY_DRIVE_TOKEN_URL": f"{servers[1].url}/token",
            "RELAY_GRAPH_API_URL": f"{graph.url}/v1.0",
            "RELAY_GRAPH_LOGIN_URL": graph.url,
            "RELAY_DROPBOX_API_URL": dropbox.url,
            "RELAY_DROPBOX_CONTENT_URL": dropbox.url,
            "RELAY_OUTBOUND_CA_FILE": str(ca.ca_file),
        }
        rows = []
        for name, ref in destinations.items():
            if only and name not in only:
                continue
            delivery_id = deliveries.record(ctx, task, event, f"rss:{name}", ref)
            deliveries.enqueue(ctx, delivery_id)
            start = time.perf_counter()
            [worker] = run_workers(env, 1, work / f"worker-{name}.log")
            peak = 0
            while worker.poll() is None and time.perf_counter() - start < 600:
                peak = max(peak, proc.vm_hwm_kib(worker.pid))
                time.sleep(0.05)
            record = ctx.deliveries.get(delivery_id)
            rows.append(
                {
                    "destination": name,
                    "peak_rss_mib": peak / 1024,
                    "seconds": time.perf_counter() - start,
                    "state": record.state if record else None,
                    "error": (record.last_error if record else None) or "",
                }
            )
        return rows
    finally:
        for server in servers:
            server.stop()
        moto.kill()
        sandbox.terminate()
        sandbox.wait()


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fakes would log every chunk
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="webhook deliveries")
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the large document")
    parser.add_argument(
        "--rounds", type=int, default=2, help="throughput rounds (ratios of the best runs)"
    )
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--rss-kinds", default="", help="comma-separated destinations for the RSS table (all)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-fanout-"))
    redis = EmbeddedRedis(work / "redis")
    config = RelayConfig(
        redis_url=redis.start(),
        encryption_keys=SecretBox.new_key(),
        secret_key=secrets.token_urlsafe(32),
        outbound_allow="127.0.0.0/8",
        folder_roots=str(work / "deliveries"),
        worker_maintenance_seconds=5,
    )
    ctx = build_context(config)
    tenant, _ = ctx.tenants.create("bench", "http://127.0.0.1:9", "key", new_webhook_secret())
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT)}
    try:
        print(f"bench/fanout on {os.cpu_count()} cores")
        if not args.skip_throughput:
            rounds = [
                throughput(ctx, env, tenant.tenant_id, args.count) for _ in range(args.rounds)
            ]
            print(
                f"webhook deliveries, {args.rounds} rounds of {args.count} (the relay, then Celery, each round):"
            )
            for n, speed in enumerate(rounds, start=1):
                print(
                    f"  round {n}: plain httpx loop {speed['baseline']:5.0f} posts/s, relay {speed['relay']:5.0f} "
                    f"deliveries/s ({speed['delivered']}/{speed['count']} delivered), Celery "
                    f"{speed['celery']:5.0f} deliveries/s (2 workers, thread pool of 8 each)"
                )
            best = {name: max(r[name] for r in rounds) for name in ("baseline", "relay", "celery")}
            print(
                f"  ratio relay/httpx (best runs): {best['relay'] / best['baseline']:.2f}  (goal >= 0.50)"
            )
            print(
                f"  ratio relay/Celery (best runs): {best['relay'] / max(best['celery'], 1e-9):.2f}  (goal >= 1.50)"
            )
        if not args.skip_rss:
            print(
                f"peak RSS of one worker delivering a {args.size_mb} MiB document (goal < 150 MiB; S3, OneDrive, "
                "Dropbox, Teams < 100 MiB):"
            )
            only = set(filter(None, args.rss_kinds.split(","))) or None
            for row in peak_rss(ctx, env, tenant.tenant_id, work, args.size_mb, only):
                print(
                    f"  {row['destination']:<8} {row['peak_rss_mib']:7.1f} MiB  {row['seconds']:6.1f} s  "
                    f"{row['state']} {row['error']}"
                )
    finally:
        redis.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
