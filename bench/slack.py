"""bench/slack: how fast /slack/commands acknowledges bursts of 50 commands arriving at once.

Slack drops a command's answer after 3000 ms. Each command here takes the full path: signature check
(slack_sdk), schema check, workspace lookup, prompt check, and one Lua call that stores it in the intake
stream. The baseline is a Flask route that answers the same JSON at once. Both are served the way the
relay is (gunicorn with app/web/gunicorn_conf.py: gthread, access log, gc.freeze) and loaded by the same
client in the same run. Prints p50/p99 and their ratio to the baseline. Goal: p99 under 100 ms.

Each burst opens fresh connections (as many callers would) and waits until all 50 are answered. The
first burst after a server starts is reported on its own.

    python bench/slack.py [--bursts 40] [--concurrency 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.devstack import free_port  # noqa: E402
from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.stores.context import build_context  # noqa: E402
from app.stores.installations import Installation  # noqa: E402
from bench.ingest import serve, stop  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
SERVERS = (("baseline", "bench.bare:slack_baseline()"), ("/slack/commands", "app.web:create_app()"))


def signed(n: int) -> tuple[bytes, dict[str, str]]:
    body = urlencode(
        {
            "team_id": "T0BENCH",
            "channel_id": f"C0BENCH{n % 97}",
            "user_id": "U0BENCH",
            "command": "/overten",
            "text": f"excel Pipeline review number {n} by region and owner",
            "response_url": f"https://hooks.slack.com/commands/T0BENCH/{n}/x",
            "trigger_id": f"{n}.bench",
        }
    ).encode()
    stamp = str(int(time.time()))
    return body, {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(SIGNING_SECRET).generate_signature(
            timestamp=stamp, body=body
        ),
    }


async def load(url: str, bursts: int, concurrency: int, first: int) -> list[list[float]]:
    """Latencies (s) per burst. A raw asyncio client: each request is pre-signed and pre-encoded, so the
    time measured is the server's (connect, request, full response) and not a Python HTTP client's."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]

    async def one(raw: bytes) -> float:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
        await reader.readexactly(length)
        elapsed = time.perf_counter() - started
        writer.close()
        if not head.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"a command was answered {head.splitlines()[0].decode()}")
        return elapsed

    def request(n: int) -> bytes:
        body, headers = signed(n)
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {host}:{port}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    latencies = []
    for burst in range(bursts + 1):  # each command on a fresh connection, as from many callers
        requests = [request(first + burst * concurrency + n) for n in range(concurrency)]
        latencies.append(list(await asyncio.gather(*(one(raw) for raw in requests))))
        await asyncio.sleep(0.2)
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers (relay web's default)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relay-bench-slack-"))
    redis = EmbeddedRedis(work / "redis")
    config = RelayConfig(
        redis_url=redis.start(),
        encryption_keys=SecretBox.new_key(),
        secret_key=secrets.token_urlsafe(32),
        slack_signing_secret=SIGNING_SECRET,
    )
    ctx = build_context(config)
    tenant, _ = ctx.tenants.create(
        "bench", "http://127.0.0.1:9", "key", "whsec_YmVuY2htYXJrIHNsYWNrIHNlY3JldA=="
    )
    ctx.installations.save(Installation("T0BENCH", "Bench", tenant.tenant_id, "xoxb-bench-token"))
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT)}
    results: dict[str, list[list[list[float]]]] = {"baseline": [], "/slack/commands": []}
    try:
        for round_ in range(args.rounds):
            for name, spec in SERVERS:
                port = free_port()
                server = serve(spec, port, args.workers, "gthread", env, production_config=True)
                try:
                    url = f"http://127.0.0.1:{port}/slack/commands"
                    first = round_ * (args.bursts + 1) * args.concurrency
                    results[name].append(
                        asyncio.run(load(url, args.bursts, args.concurrency, first))
                    )
                finally:
                    stop(server)
        enqueued = ctx.redis.xlen(ctx.intake.key)  # no worker runs: every taken command waits here
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args, enqueued)


def report(
    results: dict[str, list[list[list[float]]]], args: argparse.Namespace, enqueued: int
) -> None:
    """The first burst after a server starts is reported on its own (its processes open their Redis
    connections then); p50/p99 are over the bursts after it."""
    print(
        f"bench/slack: {args.bursts} bursts of {args.concurrency} concurrent commands x {args.rounds} rounds, "
        f"gunicorn gthread x{args.workers}, {os.cpu_count()} cores"
    )
    print(
        f"{'server':<16} {'round':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'first burst max ms':>19}"
    )
    p99s: dict[str, list[float]] = {}
    for name, runs in results.items():
        for n, (cold, *bursts) in enumerate(runs, start=1):
            latencies = [seconds for burst in bursts for seconds in burst]
            p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
            print(
                f"{name:<16} {n:>5} {p50:>8.1f} {p99:>8.1f} {max(latencies) * 1000:>8.1f} {max(cold) * 1000:>19.1f}"
            )
            p99s.setdefault(name, []).append(p99)
    sent = args.rounds * (args.bursts + 1) * args.concurrency
    print(f"commands taken in: {enqueued}/{sent} (each acknowledged command, durably queued once)")
    command, baseline = p99s["/slack/commands"], p99s["baseline"]
    print(
        f"p99 of /slack/commands: {min(command):.1f}-{max(command):.1f} ms over the rounds (goal < 100 ms; Slack's "
        f"limit 3000 ms); baseline {min(baseline):.1f}-{max(baseline):.1f} ms; worst ratio "
        f"{max(command) / min(baseline):.2f}"
    )


if __name__ == "__main__":
    main()
