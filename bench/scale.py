"""bench/scale: how far one Redis carries the relay on this machine, in one run.

1. Intake: webhook requests/s with 1, 2 and 4 web processes (`relay web`'s gunicorn settings, wrk, the
   requests of bench/ingest), and Redis's CPU time per 1,000 webhooks (INFO cpu).
2. Delivery lane: deliveries/s with 1, 2 and 4 worker processes (bench/fanout's signed posts to a gunicorn
   subscriber), and Redis's CPU time per 1,000 deliveries.
3. End to end: a webhook answered -> its task's event delivered to a REST-hook subscriber, with 1, 2 and 4
   workers behind a `relay web` of 2 processes. Webhooks are sent open-loop at a fixed rate, each ending its
   own task (after 40 at 20/s to warm up, not counted); prints p50/p99 at each rate, and the highest rate
   whose p99 stays under 1 s.
   Goal: p99 under 250 ms at 200 webhooks/s with 2 workers.

    python bench/scale.py [--seconds 8] [--rates 50,100,150,200,300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import statistics
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
from app.stores import queues  # noqa: E402
from app.stores.context import build_context  # noqa: E402
from app.stores.destinations import new_webhook_secret  # noqa: E402
from app.stores.tasks import Task  # noqa: E402
from bench import fanout, ingest, proc  # noqa: E402
from bench.subscriber import start as start_subscriber  # noqa: E402
from tests.chaos.test_redis_restart import _event  # noqa: E402

PROCESSES = (1, 2, 4)


def redis_cpu(ctx) -> float:
    info = ctx.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def intake_scaling(ctx, env: dict, token_path: str, work: Path, seconds: int) -> list[dict]:
    rows = []
    for n, processes in enumerate(PROCESSES):
        requests_file = work / "requests.tsv"
        ingest.signed_requests(requests_file, 6_000 * seconds, f"scale{n}")
        port = free_port()
        server = ingest.serve(
            "app.web:create_app()", port, processes, "gthread", env, production_config=True
        )
        try:
            stored, cpu = ctx.redis.xlen(ctx.intake.key), redis_cpu(ctx)
            stats = ingest.load(
                f"http://127.0.0.1:{port}{token_path}", requests_file, seconds, 32, 2
            )
            stored, cpu = ctx.redis.xlen(ctx.intake.key) - stored, redis_cpu(ctx) - cpu
        finally:
            ingest.stop(server)
        rows.append(
            {
                "processes": processes,
                "rps": stats["rps"],
                "p99_ms": stats["p99_us"] / 1000,
                "redis_ms_per_1k": 1e6 * cpu / max(stored, 1),
            }
        )
    return rows


def lane_scaling(ctx, env: dict, tenant_id: str, count: int) -> list[dict]:
    port = free_port()
    subscriber = fanout.gunicorn_subscriber(port)
    url = f"http://127.0.0.1:{port}/bare"
    rows = []
    try:
        for processes in PROCESSES:
            task = fanout.finished_task(ctx, tenant_id, fanout.TASK_RESULT)
            event, secret = task.event_json, new_webhook_secret()
            ids = [
                deliveries.record(
                    ctx,
                    task,
                    event,
                    f"scale:{processes}:{n}",
                    {"kind": "webhook", "config": {"url": url, "secret": secret}},
                )
                for n in range(count)
            ]
            cpu = redis_cpu(ctx)
            for delivery_id in ids:
                deliveries.enqueue(ctx, delivery_id)
            for worker in fanout.run_workers(env, processes):
                worker.wait(timeout=1800)
            cpu = redis_cpu(ctx) - cpu
            done = [
                r.delivered_at
                for i in ids
                if (r := ctx.deliveries.get(i)) and r.state == DeliveryState.DELIVERED
            ]
            rate = (len(done) - 1) / (max(done) - min(done)) if len(done) > 1 else 0.0
            rows.append(
                {
                    "processes": processes,
                    "per_s": rate,
                    "delivered": len(done),
                    "redis_ms_per_1k": 1e6 * cpu / max(len(done), 1),
                }
            )
    finally:
        subscriber.terminate()
        subscriber.wait()
    return rows


class Subscriber:
    """A REST-hook subscriber in a process of its own (bench/subscriber.py: asyncio, keep-alive), which notes
    when each task's event arrived."""

    def __init__(self, work: Path):
        self._file = work / "arrivals.txt"
        self._file.touch()
        self._read, self._first = 0, {}  # what was read of the file so far, and the arrivals in it
        port = free_port()
        self.process = start_subscriber(port, self._file)
        self.url = f"http://127.0.0.1:{port}/hook"

    @property
    def arrived(self) -> dict[str, float]:
        """Each task's first arrival; reads only what was appended since the last look."""
        with self._file.open("rb") as lines:
            lines.seek(self._read)
            new = lines.read()
        complete = new[: new.rfind(b"\n") + 1]  # a line being written is read next time
        self._read += len(complete)
        for line in complete.decode().splitlines():
            task_id, _, when = line.partition(" ")
            self._first.setdefault(task_id, float(when))
        return self._first

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class CpuBudget:
    """CPU time each part of the end-to-end stack spends from now on: this process (the senders), the relay's
    web and workers, the subscriber (each with its child processes) and Redis."""

    def __init__(self, ctx, **pids: list[int]):
        self._ctx, self._pids = ctx, pids
        self._start = self._now()

    def _now(self) -> dict[str, float]:
        return {
            "senders": time.process_time(),
            **{name: proc.cpu_seconds(*p) for name, p in self._pids.items()},
            "redis": redis_cpu(self._ctx),
        }

    def per_item_ms(self, items: int) -> dict[str, float]:
        """Milliseconds of CPU per item since the start, by part."""
        now = self._now()
        return {name: 1000 * (now[name] - self._start[name]) / max(items, 1) for name in now}

    @staticmethod
    def describe(cpu_ms: dict[str, float]) -> str:
        relay = cpu_ms["web"] + cpu_ms["workers"] + cpu_ms["redis"]
        total = sum(cpu_ms.values())
        cores = os.cpu_count() or 1
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items())
        return (
            f"CPU ms per webhook: {parts}; relay (web, workers, Redis) {relay:.2f} of {total:.2f} -> "
            f"{cores} cores carry at most {1000 * cores / total:.0f}/s with this harness on them, "
            f"{1000 * cores / relay:.0f}/s for the relay alone"
        )


def send_at_rate(
    url_for, signer: Webhook, tasks: list[str], rate: float, first: int
) -> dict[str, float]:
    """Open loop: webhook i goes at start + i/rate whatever the answers; returns when each 200 came back.

    The requests are signed beforehand and written to keep-alive connections by one asyncio loop: a load
    generator of threads with an HTTP client each cost more CPU per webhook than the relay's web, on the
    same two cores (docs/scaling.md)."""
    requests = []
    for i, task_id in enumerate(tasks):
        webhook_id, body = f"msg_scale_{first + i:09d}", json.dumps(_event(first + i)).encode()
        stamp = datetime.now(UTC)
        url = httpx.URL(url_for(task_id))
        head = (
            f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nwebhook-id: {webhook_id}\r\n"
            f"webhook-timestamp: {int(stamp.timestamp())}\r\n"
            f"webhook-signature: {signer.sign(webhook_id, stamp, body.decode())}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    target = httpx.URL(url_for(tasks[0])) if tasks else None
    return asyncio.run(_send_all(target.host, target.port, tasks, requests, rate)) if target else {}


async def _send_all(
    host: str,
    port: int,
    tasks: list[str],
    requests: list[bytes],
    rate: float,
    connections: int = 32,
) -> dict[str, float]:
    answered: dict[str, float] = {}
    start = time.time() + 0.2

    async def exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> bytes:
        """The answer's status code, b"" when the server had closed the connection."""
        writer.write(request)
        status_line = await reader.readline()
        if not status_line:
            return b""
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return status_line.split(b" ", 2)[1]

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in range(offset, len(requests), connections):
                await asyncio.sleep(max(0.0, start + i / rate - time.time()))
                status = await exchange(reader, writer, requests[i])
                # an idle keep-alive connection the server closed: again on a new one
                if not status:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    status = await exchange(reader, writer, requests[i])
                if status == b"200":
                    answered[tasks[i]] = time.time()
        finally:
            writer.close()

    await asyncio.gather(*(connection(n) for n in range(connections)))
    return answered


def drained(ctx, timeout: float = 120) -> bool:
    """Nothing waits: no stored webhook unread or unfinished, no job queued, no delivery in the lane."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        waiting = (
            ctx.redis.xlen(ctx.intake.key)
            + ctx.lane.backlog()
            + sum(ctx.rq_redis.llen(f"rq:queue:{name}") for name in queues.ALL)
        )
        if waiting == 0:
            return True
        time.sleep(0.5)
    return False


def end_to_end(
    ctx,
    config: RelayConfig,
    tenant,
    api_key: str,
    work: Path,
    rates: list[int],
    seconds: int,
    counts: tuple[int, ...],
) -> list[dict]:
    subscriber = Subscriber(work)
    port = free_port()
    env = {
        **os.environ,
        **config.to_env(),
        "PYTHONPATH": str(ROOT),
        "RELAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    web = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows, sent = [], 0
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz")
        httpx.post(
            f"http://127.0.0.1:{port}/v1/hooks",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"target_url": subscriber.url, "event": "task.completed"},
        ).raise_for_status()
        signer = Webhook(tenant.webhook_secret)
        base = f"http://127.0.0.1:{port}/webhooks/upstream/"
        for processes in counts:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(processes)
            ]
            try:
                time.sleep(2)  # the workers have registered and their lanes run
                # first connections and script loads: not counted
                warm = [
                    ctx.tasks.create(tenant.tenant_id, format="excel", prompt="warm-up").task_id
                    for _ in range(40)
                ]
                send_at_rate(
                    lambda t: base + ctx.tokens.webhook(tenant.tenant_id, t), signer, warm, 20, sent
                )
                sent += len(warm)
                for rate in rates:
                    if not drained(ctx):
                        print(
                            f"  e2e workers={processes}: the backlog of the last rate never drained",
                            flush=True,
                        )
                        break
                    tasks = [
                        ctx.tasks.create(tenant.tenant_id, format="excel", prompt="scale").task_id
                        for _ in range(int(rate * seconds))
                    ]
                    cpu = CpuBudget(
                        ctx,
                        web=[web.pid],
                        workers=[w.pid for w in workers],
                        subscriber=[subscriber.process.pid],
                    )
                    answered = send_at_rate(
                        lambda t: base + ctx.tokens.webhook(tenant.tenant_id, t),
                        signer,
                        tasks,
                        rate,
                        sent,
                    )
                    sent += len(tasks)
                    deadline = time.time() + 30
                    while time.time() < deadline and any(
                        t not in (arrived := subscriber.arrived) for t in answered
                    ):
                        time.sleep(0.2)
                    arrived = subscriber.arrived
                    latencies = sorted(arrived.get(t, float("inf")) - answered[t] for t in answered)
                    row = {
                        "workers": processes,
                        "rate": rate,
                        "sent": len(tasks),
                        "answered": len(answered),
                        "p50_ms": 1000 * statistics.median(latencies),
                        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
                        "cpu_ms": cpu.per_item_ms(len(answered)),
                    }
                    rows.append(row)
                    print(
                        f"  e2e workers={processes} rate={rate}/s p50={row['p50_ms']:.0f} ms "
                        f"p99={row['p99_ms']:.0f} ms",
                        flush=True,
                    )
                    print(f"    {CpuBudget.describe(row['cpu_ms'])}", flush=True)
                    if row["p99_ms"] > 5000:  # far past saturation: higher rates say nothing more
                        break
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=120)
    finally:
        web.terminate()
        web.wait(timeout=60)
        subscriber.stop()
    return rows


def stages(ctx, env: dict, tenant, task: Task, work: Path, args: argparse.Namespace) -> None:
    token_path = f"/webhooks/upstream/{ctx.tokens.webhook(tenant.tenant_id, task.task_id)}"
    intake = intake_scaling(ctx, env, token_path, work, args.seconds)
    print("intake (webhooks stored, answered 200):")
    for row in intake:
        print(
            f"  {row['processes']} web processes: {row['rps']:7.0f} req/s  p99 {row['p99_ms']:6.1f} ms  "
            f"Redis CPU {row['redis_ms_per_1k']:6.1f} ms per 1,000 webhooks"
        )
    lane = lane_scaling(ctx, env, tenant.tenant_id, args.deliveries)
    print("delivery lane (signed posts to a loopback subscriber):")
    for row in lane:
        print(
            f"  {row['processes']} workers: {row['per_s']:7.0f} deliveries/s ({row['delivered']} delivered)  "
            f"Redis CPU {row['redis_ms_per_1k']:6.1f} ms per 1,000 deliveries"
        )


def fresh_stack(work: Path):
    """A Redis of its own (AOF on), the relay's settings for the bench, and a tenant."""
    redis = EmbeddedRedis(work / "redis")
    config = RelayConfig(
        redis_url=redis.start(),
        encryption_keys=SecretBox.new_key(),
        secret_key=secrets.token_urlsafe(32),
        outbound_allow="127.0.0.0/8",
        folder_roots=str(work / "deliveries"),
        worker_maintenance_seconds=5,
        rate_limit="",
    )
    ctx = build_context(config)
    tenant, api_key = ctx.tenants.create("bench", "http://127.0.0.1:9", "key", ingest.SECRET)
    return redis, ctx, config, tenant, api_key


def main() -> None:
    # the subscriber would log every delivery
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=8, help="length of each load run")
    parser.add_argument(
        "--rates", default="50,100,150,200,300", help="end-to-end webhooks/s to try"
    )
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument(
        "--workers", default="1,2,4", help="worker processes for the end-to-end runs"
    )
    parser.add_argument("--only-e2e", action="store_true", help="skip the intake and lane stages")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    counts = tuple(int(n) for n in args.workers.split(","))

    work = Path(tempfile.mkdtemp(prefix="relay-scale-"))
    if not args.only_e2e:
        redis, ctx, config, tenant, _ = fresh_stack(work / "stages")
        task = ctx.tasks.create(tenant.tenant_id, format="excel", prompt="bench")
        env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT)}
        print(
            f"bench/scale on {os.cpu_count()} cores, Redis {ctx.redis.info('server')['redis_version']} with AOF"
        )
        try:
            stages(ctx, env, tenant, task, work, args)
        finally:
            redis.stop()
    # a Redis of its own: the stages' 100,000 stored webhooks and their AOF are no load for this one
    redis, ctx, config, tenant, api_key = fresh_stack(work / "e2e")
    if args.only_e2e:
        print(
            f"bench/scale on {os.cpu_count()} cores, Redis {ctx.redis.info('server')['redis_version']} with AOF"
        )
    try:
        print(
            "end to end (webhook answered -> event at a REST-hook subscriber), relay web with 2 processes:"
        )
        e2e = end_to_end(ctx, config, tenant, api_key, work, rates, args.seconds, counts)
        for processes in counts:
            mine = [r for r in e2e if r["workers"] == processes]
            under = [r["rate"] for r in mine if r["p99_ms"] < 1000]
            print(
                f"  {processes} workers: highest rate tried with p99 < 1 s: {max(under, default=0)}/s"
            )
        goal = next((r for r in e2e if r["workers"] == 2 and r["rate"] == 200), None)
        if goal:
            print(f"goal: p99 at 200/s with 2 workers {goal['p99_ms']:.0f} ms (goal < 250 ms)")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
