"""bench/batch: a batch at the API's own pace, and the safety net's polling of long tasks.

1. A batch of 5,000 rows against the sandbox (`relay web` of 2 processes, 2 workers and the scheduler),
   with the sandbox's pool of 8, tasks of 0.5 s, and a rate limit low enough to answer 429 now and then.
   It prints the wall time against the ideal (rows x task_seconds / pool; goal: at least 0.85 of it; and
   the ideal counting the single submits, which share the API's pool, with how busy the pool was),
   rows lost and duplicated (goal 0 and 0), the API's peak concurrency (never above its pool), and the p99
   answer time of single submits made while the batch runs (goal under 1 s).
2. A batch of a few long rows (minutes each): the API calls per task and the share of the rate limit the
   reconciler's polls spent.

    python bench/batch.py [--rows 5000] [--long-rows 4] [--long-seconds 180]
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
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.devstack import DevStack, free_port  # noqa: E402
from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.stores.context import build_context  # noqa: E402


def run_batch(
    client: httpx.Client, rows: int, prefix: str, template: str, timeout: float
) -> tuple[dict, float]:
    body = {
        "format": "excel",
        "prompt_template": template,
        "skip_done": False,
        "rows": [{"record_key": f"{prefix}:{n}", "n": n} for n in range(rows)],
    }
    started = time.monotonic()
    answer = client.post("/v1/batches", json=body, timeout=120)
    answer.raise_for_status()
    batch_id = answer.json()["batch_id"]
    deadline = started + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] != "running" and batch["percent_done"] >= 100:
            return batch, time.monotonic() - started
        time.sleep(1.0)
    raise SystemExit(f"batch {batch_id} did not end within {timeout:.0f} s: {batch['counts']}")


class SingleSubmits(threading.Thread):
    """A one-off submit every half second while the batch runs, timed from request to answer."""

    def __init__(self, url: str, api_key: str):
        super().__init__(daemon=True)
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        )
        self.times: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(0.5):
            started = time.perf_counter()
            answer = self.client.post(
                "/v1/documents", json={"format": "excel", "prompt": f"One-off {n}"}
            )
            if answer.status_code in (200, 202):
                self.times.append(time.perf_counter() - started)
            n += 1


def pool_record(sandbox_redis_url: str) -> tuple[int, float]:
    """From the API's own records (each task's end and run time, on its clock): the most tasks it ran at
    once, and the seconds of pool time all its tasks took."""
    sandbox = redis.Redis.from_url(sandbox_redis_url, decode_responses=True)
    edges, busy = [], 0.0
    for key in sandbox.scan_iter(match="*task:task_*", count=1000):
        task = sandbox.hgetall(key)
        if task.get("finished_at") and task.get("duration_ms"):
            end, took = float(task["finished_at"]), float(task["duration_ms"]) / 1000
            edges += [(end - took, 1), (end, -1)]
            busy += took
    running = peak = 0
    for _, step in sorted(edges):  # an end before a start at the same instant: -1 sorts first
        running += step
        peak = max(peak, running)
    return peak, busy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--task-seconds", type=float, default=0.5)
    parser.add_argument(
        "--rate-limit", type=int, default=1200, help="the sandbox's requests a minute per key"
    )
    parser.add_argument("--long-rows", type=int, default=4)
    parser.add_argument("--long-seconds", type=float, default=180.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="relay-batch-"))
    stack, relay_redis, port = DevStack(work), EmbeddedRedis(work / "relay-redis"), free_port()
    try:
        stack.start_redis()
        sandbox_url = stack.start_sandbox(
            free_port(),
            SANDBOX_TASK_SECONDS=str(args.task_seconds),
            SANDBOX_POOL_SIZE=str(args.pool),
            SANDBOX_RATE_LIMIT_REQUESTS=str(args.rate_limit),
        )
        org = stack.create_sandbox_org("bench")
        config = RelayConfig(
            redis_url=relay_redis.start(),
            public_url=f"http://127.0.0.1:{port}",
            encryption_keys=SecretBox.new_key(),
            secret_key=secrets.token_urlsafe(32),
            outbound_allow="127.0.0.0/8",
            rate_limit="",
            metrics_dir="",
            upstream_rate_limit_per_minute=args.rate_limit,
        )
        ctx = build_context(config)
        tenant, api_key = ctx.tenants.create(
            "bench", sandbox_url, org["api_key"], org["webhook_secret"]
        )
        env = {**os.environ, **config.to_env()}
        url = stack.start_relay(port, env, workers=2, timeout=60)
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        )

        print(
            f"bench/batch on {os.cpu_count()} cores: sandbox pool {args.pool}, tasks of {args.task_seconds:g} s, "
            f"rate limit {args.rate_limit}/min"
        )
        singles = SingleSubmits(url, api_key)
        singles.start()
        batch, wall = run_batch(client, args.rows, "row", "Report {{n}}", timeout=3600)
        singles.stop.set()
        singles.join()
        ideal = args.rows * args.task_seconds / args.pool
        rows = ctx.batches.rows(batch["batch_id"])
        per_record = [
            len(ctx.records.task_ids(tenant.tenant_id, f"row:{n}")) for n in range(args.rows)
        ]
        throttled = sum(
            1
            for row in rows
            if row.task_id and (task := ctx.tasks.get(row.task_id)) and task.last_submit_error
        )
        p99 = (
            statistics.quantiles(singles.times, n=100)[98]
            if len(singles.times) >= 100
            else max(singles.times)
        )
        print(
            f"{args.rows} rows in {wall:.0f} s; ideal {ideal:.0f} s; ideal/wall {ideal / wall:.2f} (goal >= 0.85)"
        )
        print(
            f"  rows completed {batch['counts']['completed']}, lost {args.rows - batch['counts']['completed']}, "
            f"started twice {sum(1 for count in per_record if count > 1)} (goal 0 and 0)"
        )
        peak, busy = pool_record(stack.redis.url)
        shared = ideal + len(singles.times) * args.task_seconds / args.pool
        print(
            f"  the pool also ran the {len(singles.times)} single submits: counting them, the ideal is "
            f"{shared:.0f} s and ideal/wall {shared / wall:.2f}; the API's pool was busy "
            f"{100 * busy / (args.pool * wall):.0f}% of the wall time"
        )
        feed = ctx.batches.feed(tenant.tenant_id)
        print(
            f"  API peak concurrency {peak} (pool {args.pool}); rows whose hand-over the API refused for a "
            f"while (429, 5xx): {throttled}; feed cuts for a full pool: {int(feed.get('pool_waits', 0))}"
        )
        print(
            f"  single submits during the batch: {len(singles.times)}, p50 "
            f"{statistics.median(singles.times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (goal < 1000 ms)"
        )

        if args.long_rows:
            long_batch, long_wall = run_batch(
                client,
                args.long_rows,
                "long",
                f"Long report {{{{n}}}} [[duration={args.long_seconds:g}]]",
                timeout=args.long_seconds * 4,
            )
            tasks = [
                ctx.tasks.get(row.task_id or "") for row in ctx.batches.rows(long_batch["batch_id"])
            ]
            polls = sum(task.polls for task in tasks if task)
            minutes = long_wall / 60
            print(
                f"{args.long_rows} rows of {args.long_seconds:g} s in {long_wall:.0f} s: API calls per task "
                f"{1 + polls / args.long_rows:.1f} (1 submit + {polls / args.long_rows:.1f} polls); the polls "
                f"spent {100 * polls / (args.rate_limit * minutes):.2f}% of the rate limit"
            )
    finally:
        stack.stop()
        relay_redis.stop()


if __name__ == "__main__":
    main()
