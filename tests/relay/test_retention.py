"""Bounded storage: the retention sweep removes what has served its time, in batches from time-ordered
indexes, and keeps what must stay (records, their runs, usage). Driven with an injected clock."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import REGISTRY

from app.domain import retention
from app.stores import intake_stream, lane_stream
from app.stores.consumer_group import ensure_group
from tests.support.servers import eventually

DAY = 86_400


def finished_tasks(relay, count: int, record_key: str = "deal:retained", **body) -> list[dict]:
    """Tasks that ended and whose follow-ups are done: a sweep takes a task only then (its fan-out may plan
    deliveries that must settle first)."""
    with relay.client() as client:
        tasks = [
            relay.submit(client, prompt=f"Report {n}", record_key=record_key, **body)
            for n in range(count)
        ]
        ended = [relay.wait_task(client, t["task_id"], timeout=60) for t in tasks]
    for task in ended:
        eventually(
            lambda task=task: relay.ctx.tasks.get(task["task_id"]).fanout == "done",
            60,
            f"the follow-ups of {task['task_id']}",
            every=0.1,
        )
    return ended


def settled(relay, task_ids: list[str]) -> list[dict]:
    """The tasks once each has its deliveries planned and settled."""
    with relay.client() as client:

        def views() -> list[dict]:
            return [client.get(f"/v1/tasks/{t}").json() for t in task_ids]

        def done():
            found = views()
            return (
                found
                if all(
                    v["deliveries"]
                    and all(d["state"] in ("delivered", "dead") for d in v["deliveries"])
                    for v in found
                )
                else None
            )

        return eventually(
            done,
            60,
            "the deliveries to settle",
            every=0.1,
            show=lambda: [v["deliveries"] for v in views()],
        )


def removed(kind: str) -> float:
    return REGISTRY.get_sample_value("relay_retention_removed_total", {"kind": kind}) or 0.0


def test_finished_tasks_go_with_their_deliveries_and_events_while_records_and_usage_stay(
    relay, tmp_path
):
    folder = [{"kind": "folder", "config": {"path": "kept"}}]
    tasks = finished_tasks(relay, 3, destinations=folder)
    task_ids = [t["task_id"] for t in tasks]
    tasks = settled(relay, task_ids)
    ctx, before = relay.ctx, removed("task")
    assert retention.sweep(ctx, now=time.time() + 29 * DAY)["task"] == 0, (
        "not before the retention period"
    )

    swept = retention.sweep(ctx, now=time.time() + 31 * DAY)
    assert (swept["task"], swept["delivery"], swept["event"]) == (3, 3, 3)
    assert removed("task") - before == 3
    with relay.client() as client:
        assert all(client.get(f"/v1/tasks/{t}").status_code == 404 for t in task_ids)
        record = client.get("/v1/records/deal%3Aretained").json()
        assert record["run_id"] == tasks[-1]["run_id"], "the record still leads to its document"
        assert record["tasks"] == [] and record["usage"]["task_count"] == 3
        assert client.get("/v1/events").json()["items"] == []
        assert client.get("/v1/me").json()["usage"]["task_count"] == 3
        report = client.get("/v1/usage").json()
        again = relay.submit(client, prompt="Now add a forecast tab", record_key="deal:retained")
    assert (
        report["totals"]["task_count"] == 3
        and report["days"][0]["records"][0]["record_key"] == "deal:retained"
    )
    assert report["totals"]["credits_used"] == sum(t["credits_used"] for t in tasks)
    assert again["run_id"] == tasks[-1]["run_id"], "the next prompt still changes the same document"
    ids = [*task_ids, *(d["delivery_id"] for t in tasks for d in t["deliveries"])]
    leftovers = [
        k for k in ctx.redis.scan_iter(f"{ctx.config.key_prefix}*") if any(i in k for i in ids)
    ]
    assert leftovers == [], leftovers


def test_an_ended_batch_goes_with_its_rows_and_the_deliveries_of_its_end(relay):
    body = {
        "format": "excel",
        "destinations": [{"kind": "folder", "config": {"path": "kept"}}],
        "rows": [{"record_key": f"deal:b{n}", "prompt": f"Report {n}"} for n in range(2)],
    }
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=body).json()["batch_id"]

        def ended():
            batch = client.get(f"/v1/batches/{batch_id}").json()
            return (
                batch
                if batch["deliveries"]
                and all(d["state"] == "delivered" for d in batch["deliveries"])
                else None
            )

        batch = eventually(ended, 30, "the batch's end to be delivered")
        assert retention.sweep(relay.ctx, now=time.time() + 29 * DAY)["batch"] == 0
        swept = retention.sweep(relay.ctx, now=time.time() + 31 * DAY)
        assert swept["batch"] == 1 and client.get(f"/v1/batches/{batch_id}").status_code == 404
    ids = [batch_id, *(d["delivery_id"] for d in batch["deliveries"])]
    leftovers = [
        k
        for k in relay.ctx.redis.scan_iter(f"{relay.ctx.config.key_prefix}*")
        if any(i in k for i in ids)
    ]
    assert leftovers == [] and relay.ctx.batches.recent() == [], leftovers


def test_a_task_whose_delivery_still_retries_waits_for_a_later_sweep(make_relay, receiver):
    # the subscriber is down for good, and the delivery keeps retrying for longer than the test runs
    relay = make_relay(
        delivery_backoff_seconds=30, delivery_backoff_cap_seconds=30, delivery_max_attempts=50
    )
    receiver.default_status = 503
    [task] = finished_tasks(
        relay, 1, destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
    )
    with relay.client() as client:

        def delivery() -> dict:
            return client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"][0]

        eventually(
            lambda: delivery()["state"] == "retrying",
            60,
            "the delivery to be retrying",
            every=0.1,
            show=delivery,
        )
        assert retention.sweep(relay.ctx, now=time.time() + 31 * DAY)["task"] == 0
        assert client.get(f"/v1/tasks/{task['task_id']}").status_code == 200


def test_the_archive_keeps_each_task_s_final_record_by_day(make_relay, tmp_path):
    archive = tmp_path / "archive"
    relay = make_relay(archive_dir=str(archive))
    tasks = finished_tasks(relay, 2)
    retention.sweep(relay.ctx, now=time.time() + 31 * DAY)
    [day] = list(archive.iterdir())
    lines = [json.loads(line) for line in day.read_text().splitlines()]
    assert day.name.startswith("tasks-") and day.suffix == ".jsonl"
    assert sorted(line["task_id"] for line in lines) == sorted(t["task_id"] for t in tasks)
    assert all(line["status"] == "completed" and "slack_reply" not in line for line in lines)


def test_dead_letters_leave_the_list_after_their_retention_with_a_log_line(
    make_relay, receiver, caplog
):
    relay = make_relay(dead_letter_retention_seconds=DAY)
    receiver.default_status = 400  # refused for good: straight to the dead letters
    [task] = finished_tasks(
        relay, 1, destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
    )
    settled(relay, [task["task_id"]])
    with relay.client() as client:
        assert len(client.get("/v1/deliveries").json()["items"]) == 1
        with caplog.at_level(logging.INFO, logger="app.domain.retention"):
            swept = retention.sweep(relay.ctx, now=time.time() + 2 * DAY)
        assert swept["dead_letter"] == 1 and "dead letter" in caplog.text
        assert client.get("/v1/deliveries").json()["items"] == []
        [delivery] = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
    assert delivery["state"] == "dead", "its record stays with its task"


def test_old_stream_entries_and_consumers_of_gone_workers_are_removed(make_relay):
    # Redis measures idle time itself: no clock here
    relay = make_relay(worker=False, consumer_idle_seconds=0)
    ctx = relay.ctx
    ensure_group(ctx.redis, ctx.intake.key, intake_stream.GROUP)
    # a week-old entry whose work failed for good
    ctx.redis.xadd(
        ctx.intake.key,
        {"tenant": "t", "task": "x", "webhook": "w", "body": "{}"},
        id=f"{int((time.time() - 8 * DAY) * 1000)}-0",
    )
    ctx.redis.xadd(
        ctx.lane.key,
        {"delivery": "dlv_old"},
        id=f"{int((time.time() - 8 * DAY) * 1000)}-0",
    )
    ctx.redis.xgroup_create(ctx.lane.key, lane_stream.GROUP, id="$")
    ctx.redis.xadd(ctx.lane.key, {"delivery": "dlv_new"})
    # holds dlv_new: it stays
    ctx.redis.xreadgroup(lane_stream.GROUP, "gone-worker", {ctx.lane.key: ">"})
    ctx.redis.xgroup_createconsumer(ctx.intake.key, intake_stream.GROUP, "another-gone-worker")
    swept = retention.sweep(ctx)
    assert (swept["intake_entry"], swept["lane_entry"]) == (1, 1)
    assert ctx.redis.xlen(ctx.lane.key) == 1, "the new entry stays"
    pump_consumers = {
        c["name"] for c in ctx.redis.xinfo_consumers(ctx.intake.key, intake_stream.GROUP)
    }
    lane_consumers = {c["name"] for c in ctx.redis.xinfo_consumers(ctx.lane.key, lane_stream.GROUP)}
    assert pump_consumers == set() and lane_consumers == {"gone-worker"}, (
        "one that holds an entry stays"
    )


def test_the_scheduler_runs_the_sweep(make_relay):
    relay = make_relay(task_retention_seconds=1, retention_sweep_seconds=1)
    relay.start_scheduler()
    with relay.client() as client:
        task = relay.submit(client, prompt="Short-lived")
        eventually(
            lambda: client.get(f"/v1/tasks/{task['task_id']}").status_code == 404,
            120,
            "the scheduler's sweep (every second) to remove the task once it has ended (kept a second)",
            every=0.2,
        )
        assert client.get("/v1/me").json()["usage"]["task_count"] == 1, "it had ended"


def test_usage_ranges_are_read_liberally_and_bad_dates_named(make_relay):
    relay = make_relay(worker=False)
    with relay.client() as client:
        backwards = client.get("/v1/usage", params={"from": "2026-02-31", "to": "2026-02-01"})
        long = client.get("/v1/usage", params={"from": "2020-01-01", "to": "2026-12-01"}).json()
        bad = client.get("/v1/usage", params={"from": "2026-13-01"})
    assert (
        backwards.status_code == 200
        and backwards.json()["from"] == "2026-02-28"
        and backwards.json()["days"] == []
    )
    assert (long["from"], long["to"]) == ("2025-10-28", "2026-12-01"), "cut to its last 400 days"
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "from"
