"""bench/redis_sizing: bytes of Redis memory per task, record, event, delivery and webhook, measured.

Runs the relay's own code paths (the stores, the finish script, delivery planning, webhook intake)
against a private Redis with production settings and reports the growth of `used_memory` per item.
The figures feed the sizing table in docs/operations.md.

    python bench/redis_sizing.py [--count 2000]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.embedded_redis import EmbeddedRedis  # noqa: E402
from app.core.config import RelayConfig  # noqa: E402
from app.core.crypto import SecretBox  # noqa: E402
from app.domain import tracking  # noqa: E402
from app.stores.context import build_context, install  # noqa: E402
from tests.support.keys import redis_key  # noqa: E402

PROMPT = (
    "Build a 3-statement financial model for Acme Corp, FY26-FY30, with revenue by segment, a hiring "
    "plan, a cash bridge and a chart of ARR by quarter. Use the attached assumptions. "
) * 2
RESULT = {
    "download_url": "https://api.overten.example/files/run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC?sig="
    + "x" * 120,
    "edit_url": "https://api.overten.example/runs/run_01JD3Y5R2Q8W6N4M7K9P0ZX1AC/edit",
    "summary": "Built a 5-sheet model: assumptions, P&L, balance sheet, cash flow and an ARR chart.",
    "artifacts": [{"file_name": "acme-model.xlsx", "size": 48213}],
}


def measure(ctx, what: str, count: int, step: Callable[[int], None]) -> tuple[str, float]:
    ctx.redis.execute_command("MEMORY", "PURGE")
    before = int(ctx.redis.info("memory")["used_memory"])
    for n in range(count):
        step(n)
    after = int(ctx.redis.info("memory")["used_memory"])
    return what, (after - before) / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relay-sizing-"))
    redis = EmbeddedRedis(work / "redis")
    try:
        config = RelayConfig(
            redis_url=redis.start(),
            encryption_keys=SecretBox.new_key(),
            secret_key=secrets.token_urlsafe(32),
            folder_roots=str(work / "out"),
        )
        ctx = build_context(config)
        install(ctx)
        tenant, _ = ctx.tenants.create(
            "sizing",
            "http://127.0.0.1:9",
            "ovt_key_" + "k" * 32,
            "whsec_c2l6aW5nIHNlY3JldCBmb3IgdGhlIGJlbmNo",
        )
        tid, n = tenant.tenant_id, args.count
        tasks: list[str] = []

        def submit(i: int) -> None:
            task = ctx.tasks.create(
                tid,
                format="excel",
                prompt=PROMPT,
                record_key=f"hubspot:deal:{i}",
                requested_run_id="",
                export="",
                callback_url="",
                callback_headers={},
                destinations=[{"kind": "folder", "config": {"path": "reports"}}],
            )
            ctx.tasks.set(
                task.task_id,
                upstream_task_id=f"task_01JD3Y5R2Q8W6N4M7K9P0Z{i:04d}",
                run_id=f"run_01JD3Y5R2Q8W6N4M7K9P0Z{i:04d}",
                submitted_at=1.0,
            )
            tasks.append(task.task_id)

        def record(i: int) -> None:
            key = f"hubspot:deal:{i}"
            ctx.records.touch(tid, key)
            ctx.records.add_task(tid, key, tasks[i])
            ctx.records.map_run(tid, key, "excel", f"run_01JD3Y5R2Q8W6N4M7K9P0Z{i:04d}")

        def finish(i: int) -> None:
            ctx.tasks.set(tasks[i], fanout="pending")
            tracking.finish(
                ctx,
                tasks[i],
                {
                    "status": "completed",
                    "phase": "",
                    "progress": 100,
                    "result": RESULT,
                    "credits_used": 12,
                    "duration_ms": 158_000,
                    "turn_index": 1,
                },
            )

        def webhook(i: int) -> None:
            body = json.dumps(
                {"type": "task.completed", "id": f"evt_{i:026d}", "data": {"result": RESULT}}
            )
            ctx.intake.record_event(tid, tasks[i], f"msg_{i:026d}", body)

        rows = [
            measure(ctx, "task (submitted, with its prompt)", n, submit),
            measure(ctx, "record (one document)", n, record),
        ]
        planned_before = ctx.queues.get("relay-deliver").count
        rows.append(measure(ctx, "finish: results, event, 1 delivery + its queued job", n, finish))
        queued = ctx.queues.get("relay-deliver").count - planned_before
        used = int(ctx.redis.info("memory")["used_memory"])
        # what a worker does: the job goes once delivered (result_ttl=0)
        ctx.queues.get("relay-deliver").empty()
        ctx.redis.execute_command("MEMORY", "PURGE")
        per_job = (used - int(ctx.redis.info("memory")["used_memory"])) / n
        rows.append(
            measure(ctx, "webhook waiting in the intake stream (+ 48 h dedupe key)", n, webhook)
        )
        ctx.redis.delete(redis_key(ctx, "intake"))
        events = ctx.redis.memory_usage(ctx.events.key_for(tid), samples=0) / n
        delivery_keys = [
            ctx.deliveries.key_for(d)
            for t in tasks[:200]
            for d in json.loads(ctx.redis.hget(ctx.tasks.key_for(t), "delivery_ids") or "[]")
        ]
        per_delivery = sum(ctx.redis.memory_usage(k, samples=0) for k in delivery_keys) / max(
            len(delivery_keys), 1
        )
        dedupe = [k for k in ctx.redis.scan_iter(redis_key(ctx, "webhook", tid, "*"), count=1000)][
            :200
        ]
        per_dedupe = sum(ctx.redis.memory_usage(k, samples=0) for k in dedupe) / max(len(dedupe), 1)
    finally:
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"bench/redis_sizing: {n} of each, Redis with AOF and noeviction; bytes of used_memory per item"
    )
    for what, size in rows:
        print(f"  {what:<58} {size:>8.0f}")
    print("  of which, by MEMORY USAGE:")
    print(f"    event in the tenant's event log (kept: newest 10,000)      {events:>8.0f}")
    print(f"    delivery record (kept with its task)                        {per_delivery:>8.0f}")
    print(f"    webhook dedupe key (expires after 48 h)                     {per_dedupe:>8.0f}")
    print(f"    queued delivery job (gone once delivered)                   {per_job:>8.0f}")
    kept = rows[0][1] + rows[1][1] + rows[2][1] - per_job
    print(
        f"  deliveries planned: {queued}; kept per finished task with its record and one delivery: {kept:.0f}"
    )


if __name__ == "__main__":
    main()
