"""bench/ingest: webhook intake throughput against a bare 204 route and against the peer a Python team would
write (a Flask route verifying with standardwebhooks and handing the event to Celery with `.delay()`, on a
Redis broker: bench/celery_peer.py).

All three are served the way the relay is (`relay web`: gunicorn with app/web/gunicorn_conf.py, its access
log, gc.freeze), with the same worker class and count, back to back, loaded by wrk with the same pre-signed
requests (each with its own webhook-id, so every request takes the full path: verify, validate, one atomic
dedupe+store+enqueue). Prints requests/s, p50/p99 latency and the ratios.
Goals: intake/bare >= 0.6, and intake faster than the Celery peer.

    python bench/ingest.py [--duration 10] [--connections 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.devstack import free_port, wait_until_up  # noqa: E402
from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.stores.context import build_context  # noqa: E402

SECRET = "whsec_" + "YmVuY2htYXJrIHNlY3JldCBmb3IgdGhlIGluZ2VzdCBiZW5jaA=="
TASK = {
    "task_id": "task_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "run_id": "run_01ARZ3NDEKTSV4RRFFQ69G5FAV",
    "status": "completed",
    "phase": None,
    "turn_index": 2,
    "progress": 100,
    "created_at": "2026-11-22T10:00:00.000Z",
    "updated_at": "2026-11-22T10:01:00.000Z",
    "error": None,
    "credits_used": 84,
    "duration_ms": 187707,
    "result": {
        "download_url": "https://files.example/" + "x" * 120,
        "edit_url": "https://edit.example/abc",
        "summary": "Built a 3-statement model with FY26-FY30 projections.",
        "artifacts": [],
    },
}


def signed_requests(path: Path, count: int, batch: str) -> None:
    hook, now = Webhook(SECRET), datetime.now(UTC)
    with path.open("w") as out:
        for n in range(count):
            msg_id = f"evt_bench{batch}_{n:09d}"
            body = json.dumps(
                {
                    "type": "task.completed",
                    "id": msg_id,
                    "created_at": "2026-11-22T10:01:00Z",
                    "data": TASK,
                }
            )
            out.write(f"{msg_id}\t{int(now.timestamp())}\t{hook.sign(msg_id, now, body)}\t{body}\n")


def serve(
    app_spec: str,
    port: int,
    workers: int,
    worker_class: str,
    env: dict[str, str],
    production_config: bool = False,
) -> subprocess.Popen:
    """gunicorn serving ``app_spec``; with ``production_config``, from the relay's own gunicorn settings
    (access log, gc.freeze after loading) with the bench's bind, workers and threads."""
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    config = ["--config", "python:app.web.gunicorn_conf"] if production_config else []
    process = subprocess.Popen(
        [
            gunicorn,
            *config,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            "8",
            "--log-level",
            "warning",
            app_spec,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_up(
        f"http://127.0.0.1:{port}/healthz" if "app.web" in app_spec else f"http://127.0.0.1:{port}/"
    )
    return process


def load(
    url: str, requests_file: Path, duration: int, connections: int, threads: int
) -> dict[str, float]:
    script = ROOT / "bench" / "signed_requests.lua"
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(requests_file),
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    fields = dict(
        re.findall(
            r"(\w+)=(\d+)",
            next(line for line in out.stdout.splitlines() if line.startswith("RESULT")),
        )
    )
    stats = {k: float(v) for k, v in fields.items()}
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    return stats


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="gunicorn workers, all servers (default: gunicorn's 2 x cores + 1)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--worker-class",
        default="gthread",
        choices=["gthread", "sync"],
        help="gunicorn worker class for both servers (relay web uses gthread)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/ingest needs wrk: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    redis = EmbeddedRedis(work / "redis")  # AOF on, appendfsync everysec: production durability
    config = RelayConfig(
        redis_url=redis.start(),
        encryption_keys=SecretBox.new_key(),
        secret_key=secrets.token_urlsafe(32),
    )
    ctx = build_context(config)
    tenant, _ = ctx.tenants.create("bench", "http://127.0.0.1:9", "key", SECRET)
    task = ctx.tasks.create(tenant.tenant_id, format="excel", prompt="bench")
    intake_path = f"/webhooks/upstream/{ctx.tokens.webhook(tenant.tenant_id, task.task_id)}"
    requests_file = work / "requests.tsv"
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT)}
    env.update(
        BENCH_CELERY_BROKER=f"redis+socket://{redis.socket}?virtual_host=1",
        BENCH_WEBHOOK_SECRET=SECRET,
    )
    results: dict[str, list[dict]] = {"bare 204": [], "intake": [], "celery peer": []}
    try:
        for round_ in range(args.rounds):
            # new webhook ids each round
            signed_requests(requests_file, 8_000 * args.duration, str(round_))
            for name, spec, path in (
                ("bare 204", "bench.bare:create_app()", "/bare"),
                ("intake", "app.web:create_app()", intake_path),
                ("celery peer", "bench.celery_peer:create_app()", f"/hook/{tenant.tenant_id}"),
            ):
                port = free_port()
                server = serve(
                    spec, port, args.workers, args.worker_class, env, production_config=True
                )
                try:
                    queue_before = ctx.redis.xlen(ctx.intake.key)
                    stats = load(
                        f"http://127.0.0.1:{port}{path}",
                        requests_file,
                        args.duration,
                        args.connections,
                        args.threads,
                    )
                    if name == "intake":
                        stats["stored"] = ctx.redis.xlen(ctx.intake.key) - queue_before
                    results[name].append(stats)
                finally:
                    stop(server)
                time.sleep(1)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(results, args)


def report(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    print(
        f"bench/ingest: gunicorn {args.worker_class} x{args.workers} workers, wrk {args.threads} threads "
        f"{args.connections} connections, {args.duration} s per run, {args.rounds} rounds, {os.cpu_count()} cores"
    )
    print(
        f"{'server':<12} {'round':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'enqueued':>9}"
    )
    for name, runs in results.items():
        for n, run in enumerate(runs, start=1):
            enqueued = f"{int(run['stored']):>9}" if "stored" in run else f"{'-':>9}"
            print(
                f"{name:<12} {n:>5} {run['rps']:>9.0f} {run['p50_us'] / 1000:>8.2f} {run['p99_us'] / 1000:>8.2f} "
                f"{int(run['non2xx']):>8} {enqueued}"
            )
    bare = max(r["rps"] for r in results["bare 204"])
    intake = max(r["rps"] for r in results["intake"])
    peer = max(r["rps"] for r in results["celery peer"])
    print(f"ratio intake/bare (best runs): {intake / bare:.2f}  (goal >= 0.60)")
    print(f"ratio intake/celery peer (best runs): {intake / peer:.2f}  (goal > 1)")


if __name__ == "__main__":
    main()
