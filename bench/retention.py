"""bench/retention: the relay's Redis memory through 20,000 tasks, with a retention of seconds.

Each task goes the whole way: submitted over HTTP to `relay web` (gunicorn), run by the sandbox (on a Redis
of its own, so only the relay's memory is measured), its signed webhook taken by the relay, one webhook
delivery to a loopback subscriber by 2 worker processes. Everything the relay keeps has a retention of
RETENTION seconds (tasks, dead letters, dedupe keys, RQ's results and failed jobs, stream entries); the
bench runs the retention sweep itself every few seconds, as the scheduler does, to time it.

Prints Redis used_memory at the start, at the peak and after the last sweep (goal: back within 10% of the
start), the bytes kept per task at steady state, and the sweep's cost per task.

    python bench/retention.py [--tasks 20000] [--retention 10]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.devstack import DevStack, free_port  # noqa: E402
from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.domain import retention  # noqa: E402
from app.stores.context import build_context  # noqa: E402
from bench.fanout import gunicorn_subscriber  # noqa: E402

RECORDS = (
    50  # record keys the tasks cycle through: records stay by design, so they must not grow with N
)


def used(ctx) -> int:
    ctx.redis.execute_command("MEMORY", "PURGE")
    return int(ctx.redis.info("memory")["used_memory"])


def kept_tasks(ctx) -> int:
    """Tasks stored now: those that ended and wait for the sweep, and those still running (watched)."""
    return ctx.redis.zcard(ctx.tasks.ended_key) + ctx.redis.zcard(ctx.tasks.watch_key)


def key_kinds(ctx) -> dict[str, int]:
    """Keys by kind (their name with ids left out), to say what is left when memory does not come back."""
    kinds: dict[str, int] = {}
    for key in ctx.redis.scan_iter(count=1000):
        kind = ":".join(part for part in key.split(":")[:3] if not any(c.isdigit() for c in part))
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


class Sweeper(threading.Thread):
    """Runs the retention sweep every ``every`` seconds, timing it; samples used_memory each second."""

    def __init__(self, ctx, every: float):
        super().__init__(daemon=True)
        self.ctx, self.every = ctx, every
        self.seconds, self.removed, self.samples = 0.0, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        last = 0.0
        while not self.stop.wait(1.0):
            self.samples.append(
                (int(self.ctx.redis.info("memory")["used_memory"]), kept_tasks(self.ctx))
            )
            if time.monotonic() - last >= self.every:
                self.sweep()
                last = time.monotonic()

    def sweep(self) -> dict:
        started = time.perf_counter()
        removed = retention.sweep(self.ctx)
        self.seconds += time.perf_counter() - started
        self.removed += removed["task"]
        return removed


def submit_all(url: str, api_key: str, subscriber: str, count: int, first: int = 0) -> None:
    local = threading.local()

    def one(n: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
            )
        # resume False: each task a document of its own, so the sandbox's cost stays flat (resuming makes
        # every record's workbook grow by a sheet per task)
        body = {
            "format": "excel",
            "prompt": f"Renewal memo {n}",
            "record_key": f"crm:deal:{n % RECORDS}",
            "resume": False,
            "destinations": [{"kind": "webhook", "config": {"url": subscriber}}],
        }
        local.client.post("/v1/documents", json=body).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(first, first + count)))


def wait_all_swept(ctx, sweeper: Sweeper, total: int, timeout: float) -> None:
    """Until every task has ended, been delivered and swept."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended = ctx.tenants.usage(ctx.tenants.list()[0].tenant_id)["task_count"]
        if ended >= total and kept_tasks(ctx) == 0:
            return
        time.sleep(1.0)
    raise SystemExit(
        f"not all {total} tasks were swept within {timeout:g} s ({kept_tasks(ctx)} kept)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument(
        "--retention", type=float, default=10.0, help="seconds, for everything the relay keeps"
    )
    args = parser.parse_args()
    # stop what it started (finally) when told to stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="relay-retention-"))
    stack = DevStack(work)  # its Redis is the sandbox's; the relay gets one of its own
    relay_redis = EmbeddedRedis(work / "relay-redis")
    subscriber_port, port = free_port(), free_port()
    subscriber = gunicorn_subscriber(subscriber_port)
    try:
        stack.start_redis()
        sandbox_url = stack.start_sandbox(
            free_port(),
            SANDBOX_TASK_SECONDS="0",
            SANDBOX_POOL_SIZE="16",
            SANDBOX_RATE_LIMIT_REQUESTS="1000000",
        )
        org = stack.create_sandbox_org("bench")
        seconds = int(args.retention)
        config = RelayConfig(
            redis_url=relay_redis.start(),
            public_url=f"http://127.0.0.1:{port}",
            encryption_keys=SecretBox.new_key(),
            secret_key=secrets.token_urlsafe(32),
            outbound_allow="127.0.0.0/8",
            rate_limit="",
            metrics_dir="",
            task_retention_seconds=args.retention,
            dead_letter_retention_seconds=args.retention,
            job_result_ttl_seconds=seconds,
            job_failure_ttl_seconds=seconds,
            webhook_dedupe_ttl_seconds=seconds,
            idempotency_ttl_seconds=seconds,
            stream_retention_seconds=args.retention,
            consumer_idle_seconds=args.retention,
            reconcile_quiet_seconds=120,
        )
        ctx = build_context(config)
        _, api_key = ctx.tenants.create("bench", sandbox_url, org["api_key"], org["webhook_secret"])
        env = {**os.environ, **config.to_env()}
        url = stack.start_relay(port, env, workers=2, scheduler=False, timeout=60)
        hook = f"http://127.0.0.1:{subscriber_port}/bare"
        sweeper = Sweeper(ctx, every=max(1.0, args.retention / 2))

        warmup = 50  # scripts loaded, consumer groups and queues made, one of everything swept
        submit_all(url, api_key, hook, warmup)
        sweeper.start()
        wait_all_swept(ctx, sweeper, warmup, timeout=120)
        start = used(ctx)
        at_start = key_kinds(ctx)

        started = time.monotonic()
        submit_all(url, api_key, hook, args.tasks, first=warmup)
        submitted = time.monotonic() - started
        wait_all_swept(ctx, sweeper, warmup + args.tasks, timeout=1800)
        elapsed = time.monotonic() - started
        # what expires by itself (RQ's results, dedupe keys) needs its retention, and RQ's registries a worker
        # maintenance pass (RELAY_WORKER_MAINTENANCE_SECONDS), before "after the sweep" is measured
        time.sleep(args.retention + config.worker_maintenance_seconds + 5)
        sweeper.stop.set()
        sweeper.join()
        sweeper.sweep()
        end = used(ctx)
        left = key_kinds(ctx)

        peak = max(u for u, _ in sweeper.samples)
        steady = [
            (u - start) / k for u, k in sweeper.samples[len(sweeper.samples) // 4 :] if k > 100
        ]
        print(
            f"{args.tasks} tasks (submit -> sandbox -> signed webhook -> 1 webhook delivery), retention "
            f"{args.retention:g} s; submitted in {submitted:.0f} s, all swept after {elapsed:.0f} s "
            f"({args.tasks / elapsed:.0f} tasks/s)"
        )
        print(
            f"redis used_memory  start {start / 1e6:.2f} MB   peak {peak / 1e6:.2f} MB   "
            f"after the sweep {end / 1e6:.2f} MB   end/start {end / start:.3f} (goal <= 1.10)"
        )
        if steady:
            print(
                f"bytes kept per task at steady state: {statistics.median(steady):,.0f} "
                f"(median of {len(steady)} samples; tasks kept at once: up to {max(k for _, k in sweeper.samples)})"
            )
        grown = {
            kind: (left.get(kind, 0), at_start.get(kind, 0))
            for kind in sorted(set(left) | set(at_start))
            if left.get(kind, 0) != at_start.get(kind, 0)
        }
        print(
            "keys after the sweep that differ from the start (after, start): "
            + (", ".join(f"{kind} {a}/{b}" for kind, (a, b) in grown.items()) or "none")
        )
        print(
            f"sweep: {sweeper.removed} tasks removed in {sweeper.seconds:.2f} s, "
            f"{sweeper.seconds / max(1, sweeper.removed) * 1e6:.0f} us per task"
        )
    finally:
        stack.stop()
        relay_redis.stop()
        subscriber.terminate()
        subscriber.wait()


if __name__ == "__main__":
    main()
