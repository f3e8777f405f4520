"""bench/slack: how fast /slack/commands acknowledges bursts of 50 commands arriving at once.

Slack drops a command's answer after 3000 ms. Each command here takes the full path: signature check
(slack_sdk), schema check, workspace lookup (its bot token decrypted), prompt check and an RQ enqueue.
The baseline is a Flask route that answers the same JSON at once, served the same way (gunicorn gthread,
same workers), loaded by the same client in the same run. Prints p50/p99 and their ratio to the
baseline. Goal: p99 under 100 ms.

Each burst opens fresh connections (as many callers would) and waits until all 50 are answered.

    python bench/slack.py [--bursts 40] [--concurrency 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import RelayConfig  # noqa: E402
from app.context import build_context  # noqa: E402
from app.crypto import SecretBox  # noqa: E402
from app.devstack import free_port  # noqa: E402
from app.embedded_redis import EmbeddedRedis  # noqa: E402
from app.pump import stream_key  # noqa: E402
from app.slack.installations import Installation, save  # noqa: E402
from bench.ingest import serve, stop  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
SERVERS = (("baseline", "bench.bare:slack_baseline()"), ("/slack/commands", "app.web:create_app()"))


def signed(n: int) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"team_id": "T0BENCH", "channel_id": f"C0BENCH{n % 97}", "user_id": "U0BENCH",
                      "command": "/overten", "text": f"excel Pipeline review number {n} by region and owner",
                      "response_url": f"https://hooks.slack.com/commands/T0BENCH/{n}/x",
                      "trigger_id": f"{n}.bench"}).encode()
    stamp = str(int(time.time()))
    return body, {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
                  "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp,
                                                                                            body=body)}


async def load(url: str, bursts: int, concurrency: int, first: int) -> list[float]:
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        response = await client.post(url, content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"a command was answered {response.status_code}: {response.text[:200]}")

    # no keep-alive: every command on a fresh connection, as from many callers
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for burst in range(bursts):
            requests = [signed(first + burst * concurrency + n) for n in range(concurrency)]
            await asyncio.gather(*(one(client, body, headers) for body, headers in requests))
            await asyncio.sleep(0.2)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (relay web's default)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-bench-slack-"))
    redis = EmbeddedRedis(work / "redis")
    config = RelayConfig(redis_url=redis.start(), encryption_keys=SecretBox.new_key(), secret_key="bench",
                         slack_signing_secret=SIGNING_SECRET)
    ctx = build_context(config)
    tenant, _ = ctx.tenants.create("bench", "http://127.0.0.1:9", "key", "whsec_YmVuY2htYXJrIHNsYWNrIHNlY3JldA==")
    save(ctx, Installation("T0BENCH", "Bench", tenant.tenant_id, "xoxb-bench-token"))
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT)}
    results: dict[str, list[list[float]]] = {"baseline": [], "/slack/commands": []}
    try:
        for round_ in range(args.rounds):
            for name, spec in SERVERS:
                port = free_port()
                server = serve(spec, port, args.workers, "gthread", env)
                try:
                    url = f"http://127.0.0.1:{port}/slack/commands"
                    first = round_ * args.bursts * args.concurrency
                    results[name].append(asyncio.run(load(url, args.bursts, args.concurrency, first)))
                finally:
                    stop(server)
        enqueued = ctx.redis.xlen(stream_key(ctx))  # no worker runs: every taken command waits here
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args, enqueued)


def report(results: dict[str, list[list[float]]], args: argparse.Namespace, enqueued: int) -> None:
    print(f"bench/slack: {args.bursts} bursts of {args.concurrency} concurrent commands x {args.rounds} rounds, "
          f"gunicorn gthread x{args.workers}, {os.cpu_count()} cores")
    print(f"{'server':<16} {'round':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    best: dict[str, tuple[float, float]] = {}
    for name, runs in results.items():
        for n, latencies in enumerate(runs, start=1):
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            print(f"{name:<16} {n:>5} {p50:>8.1f} {p99:>8.1f} {max(latencies) * 1000:>8.1f}")
            best[name] = min(best.get(name, (p50, p99)), (p50, p99), key=lambda pair: pair[1])
    command, baseline = best["/slack/commands"], best["baseline"]
    print(f"commands taken in: {enqueued} (each acknowledged command, durably queued once)")
    print(f"best p99: {command[1]:.1f} ms (goal < 100 ms; Slack's limit 3000 ms); "
          f"ratio to baseline p50 {command[0] / baseline[0]:.2f}, p99 {command[1] / baseline[1]:.2f}")


if __name__ == "__main__":
    main()
