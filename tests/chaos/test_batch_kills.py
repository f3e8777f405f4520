"""Workers SIGKILLed at random during a 1,000-row batch: every row ends exactly once, with one task each
(the API is asked once per row), and the tenant's feed gives back every place it lent."""

from __future__ import annotations

from collections import Counter

from tests.support.chaos import WorkerKiller
from tests.support.servers import eventually

ROWS = 1000
KILLS = 6


def test_sigkill_workers_during_a_1000_row_batch(make_relay, make_sandbox, reliability):
    sandbox = make_sandbox(task_seconds=0.05, pool_size=8)
    relay = make_relay(sandbox=sandbox, worker=False, batch_max_concurrency=8, batch_claim_stale_seconds=3)
    relay.start_scheduler()  # its reconciler starts rows whose claim outlived a killed worker
    workers = [relay.start_worker() for _ in range(2)]
    chaos = WorkerKiller(relay, workers, KILLS, pause=(0.5, 1.5), seed=11)

    rows = [{"record_key": f"chaos:{n}", "n": n} for n in range(ROWS)]
    with relay.client() as client:
        answer = client.post("/v1/batches", json={"format": "excel", "prompt_template": "Report {{n}}", "rows": rows})
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]
        chaos.start()

        def ended():
            batch = client.get(f"/v1/batches/{batch_id}").json()
            return batch if batch["status"] != "running" else None

        try:
            batch = eventually(ended, 400, "the batch to end", every=2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; rows not ended: {_unended(relay, batch_id)}") from None
        finally:
            kills = chaos.finish()
    rows_seen = relay.ctx.batches.rows(batch_id)
    tasks_per_record = Counter(len(relay.ctx.records.task_ids(relay.tenant_id, f"chaos:{n}")) for n in range(ROWS))
    twice = sum(count for tasks, count in tasks_per_record.items() if tasks > 1)
    assert len(kills) == KILLS, "the workers were killed while the batch ran"
    assert batch["counts"]["completed"] == ROWS and {row["state"] for row in rows_seen} == {"completed"}
    assert twice == 0 and tasks_per_record == {1: ROWS}, f"one task per row (tasks: rows): {dict(tasks_per_record)}"
    assert relay.ctx.batches.feed(relay.tenant_id).get("inflight") == 0, "every place given back"
    reliability(fault=f"{KILLS} worker SIGKILLs during a {ROWS}-row batch", tried=ROWS,
                lost=ROWS - batch["counts"]["completed"], duplicated=f"{twice} of {ROWS} rows started twice",
                notes=f"batch ended {batch['status']} with {batch['counts']['completed']} rows completed")


def _unended(relay, batch_id: str) -> list[dict]:
    """What a stuck batch's unended rows wait for: their task's state, and a hand-over lease left behind."""
    ctx, found = relay.ctx, []
    for row in ctx.batches.rows(batch_id):
        if row["state"] in ("pending", "submitting", "running"):
            task_id = row.get("task_id") or "-"
            task = ctx.tasks.get(task_id) or {}
            found.append({"row": row["row"], "state": row["state"], "task": task.get("status"),
                          "fanout": task.get("fanout"), "lease_ttl": ctx.redis.ttl(ctx.key("handover", task_id))})
    return found[:20]
