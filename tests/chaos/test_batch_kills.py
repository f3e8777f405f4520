"""Workers SIGKILLed during a 1,000-row batch: every row ends exactly once, with one task each (the API is
asked once per row), and the tenant's feed gives back every place it lent.

The kills follow the batch's progress (one each seventh of the rows), and the last rows wait in the API until
every kill is made, so the batch cannot end before its kills however fast the machine is."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.chaos import WorkerKiller
from tests.support.keys import redis_key
from tests.support.servers import eventually

ROWS = 600
KILLS = 6
HELD = 2  # the last rows, kept running in the API until the kills are made


@pytest.mark.long
def test_sigkill_workers_during_a_600_row_batch(make_relay, make_sandbox, reliability):
    sandbox = make_sandbox(task_seconds=0.05, pool_size=8)
    relay = make_relay(
        sandbox=sandbox, worker=False, batch_max_concurrency=8, batch_claim_stale_seconds=3
    )
    relay.start_scheduler()  # its reconciler starts rows whose claim outlived a killed worker
    workers = [relay.start_worker() for _ in range(2)]

    rows = [
        {
            "record_key": f"chaos:{n}",
            "n": n,
            "hold": "[[hold=batch-tail]]" if n >= ROWS - HELD else "",
        }
        for n in range(ROWS)
    ]
    with relay.client() as client:
        answer = client.post(
            "/v1/batches",
            json={"format": "excel", "prompt_template": "Report {{n}} {{hold}}", "rows": rows},
        )
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]

        def completed() -> int:
            return client.get(f"/v1/batches/{batch_id}").json()["counts"]["completed"]

        steps = [(ROWS - HELD) * k // (KILLS + 1) for k in range(1, KILLS + 1)]
        chaos = WorkerKiller(relay, workers, steps, completed, seed=11, every=0.5).start_killing()
        try:
            kills = chaos.wait_for_kills()
        finally:
            sandbox.release("batch-tail")

        def ended():
            batch = client.get(f"/v1/batches/{batch_id}").json()
            return batch if batch["status"] != "running" else None

        batch = eventually(
            ended,
            900,
            "the batch to end",
            every=2,
            show=lambda: f"rows not ended: {_unended(relay, batch_id)}",
        )
    rows_seen = relay.ctx.batches.rows(batch_id)
    tasks_per_record = Counter(
        len(relay.ctx.records.task_ids(relay.tenant_id, f"chaos:{n}")) for n in range(ROWS)
    )
    twice = sum(count for tasks, count in tasks_per_record.items() if tasks > 1)
    assert [kill.step for kill in kills] == steps, "a kill at each seventh of the batch"
    assert all(kill.progress < ROWS for kill in kills), "each kill while rows were still running"
    assert batch["counts"]["completed"] == ROWS and {row.state for row in rows_seen} == {
        "completed"
    }, f"rows not completed: {[r for r in rows_seen if r.state != 'completed'][:10]}"
    assert twice == 0 and tasks_per_record == {1: ROWS}, (
        f"one task per row (tasks: rows): {dict(tasks_per_record)}; rows started twice: "
        f"{[n for n in range(ROWS) if len(relay.ctx.records.task_ids(relay.tenant_id, f'chaos:{n}')) > 1][:10]}"
    )
    assert relay.ctx.batches.feed(relay.tenant_id).get("inflight") == 0, "every place given back"
    reliability(
        fault=f"{KILLS} worker SIGKILLs during a {ROWS}-row batch (one each seventh of the rows)",
        tried=ROWS,
        lost=ROWS - batch["counts"]["completed"],
        duplicated=f"{twice} of {ROWS} rows started twice",
        notes=f"batch ended {batch['status']} with {batch['counts']['completed']} rows completed",
    )


def _unended(relay, batch_id: str) -> list[dict]:
    """What a stuck batch's unended rows wait for: their task's state, and a hand-over lease left behind."""
    ctx, found = relay.ctx, []
    for row in ctx.batches.rows(batch_id):
        if row.state in ("pending", "submitting", "running"):
            task_id = row.task_id or "-"
            task = ctx.tasks.get(task_id)
            found.append(
                {
                    "row": row.row,
                    "state": row.state,
                    "task": task.status if task else None,
                    "fanout": task.fanout if task else None,
                    "lease_ttl": ctx.redis.ttl(redis_key(ctx, "handover", task_id)),
                }
            )
    return found[:20]
