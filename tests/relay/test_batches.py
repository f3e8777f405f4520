"""Batches over real HTTP against the sandbox: JSON and CSV rows, every row checked first, skip_done, the
failed rows retried alone, cancel, the manifest, Idempotency-Key, and the tenant's feed keeping its rows
in the API under its limit while single submits go straight through."""

from __future__ import annotations

import csv
import io
import json
import math
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from rq.registry import ScheduledJobRegistry

from app.core.states import RowState
from app.domain import batch_rows, batches, tracking
from app.stores import queues
from tests.support.servers import eventually


def batch_body(
    rows: list[dict], template: str = "Renewal memo for {{company}}, {{seats}} seats", **extra
) -> dict:
    return {"format": "word", "prompt_template": template, "rows": rows, **extra}


def finished(client, batch_id: str, timeout: float = 90) -> dict:
    def ended():
        batch = client.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] != "running" and batch["percent_done"] == 100 else None

    return eventually(
        ended,
        timeout,
        f"batch {batch_id} to end",
        every=0.1,
        show=lambda: client.get(f"/v1/batches/{batch_id}").json()["counts"],
    )


def run(client, body: dict) -> dict:
    answer = client.post("/v1/batches", json=body)
    assert answer.status_code == 202, answer.text
    return finished(client, answer.json()["batch_id"])


def rows_of(client, batch_id: str, **query) -> list[dict]:
    items, cursor = [], 0
    while cursor is not None:
        page = client.get(
            f"/v1/batches/{batch_id}/rows", params={**query, "cursor": cursor, "limit": 2}
        ).json()
        items += page["items"]
        cursor = page["next_cursor"]
    return items


DEALS = [{"record_key": f"deal:{n}", "company": f"Acme {n}", "seats": 10 * n} for n in range(1, 6)]


def test_a_json_batch_makes_one_document_per_row_and_a_manifest(relay):
    with relay.client() as client:
        answer = client.post("/v1/batches", json=batch_body(DEALS))
        assert answer.status_code == 202, answer.text
        batch = finished(client, answer.json()["batch_id"])
        rows = rows_of(client, batch["batch_id"])
        prompts = [client.get(f"/v1/tasks/{row['task_id']}").json() for row in rows]
        manifest = client.get(f"/v1/batches/{batch['batch_id']}/manifest.csv")
    assert (
        batch["status"] == "completed"
        and batch["counts"]["completed"] == 5
        and batch["percent_done"] == 100
    )
    assert batch["credits_used"] > 0 and batch["seconds_left"] is None
    assert [row["row"] for row in rows] == [1, 2, 3, 4, 5] and {row["state"] for row in rows} == {
        "completed"
    }
    assert [task["record_key"] for task in prompts] == [f"deal:{n}" for n in range(1, 6)]
    lines = list(csv.DictReader(io.StringIO(manifest.text)))
    assert manifest.headers["content-type"].startswith("text/csv") and len(lines) == 5
    assert (
        lines[0]["record_key"] == "deal:1"
        and lines[0]["status"] == "completed"
        and float(lines[0]["credits"]) > 0
    )
    download = httpx.get(lines[0]["file"], follow_redirects=True)
    assert download.status_code == 200 and download.content[:2] == b"PK", (
        "the manifest's link downloads the file"
    )


def test_a_csv_batch_by_upload_and_by_multipart(relay):
    text = "record_key,company,seats\ndeal:7,Globex,40\ndeal:8,Initech,12\n"
    with relay.client() as client:
        plain = client.post(
            "/v1/batches",
            content=text.encode(),
            headers={"Content-Type": "text/csv"},
            params={"format": "word", "prompt_template": "Memo for {{company}} ({{seats}})"},
        )
        multipart = client.post(
            "/v1/batches",
            files={"file": ("deals.csv", text, "text/csv")},
            data={"format": "word", "prompt_template": "Second memo for {{company}}"},
        )
        assert plain.status_code == 202 and multipart.status_code == 202, (
            plain.text,
            multipart.text,
        )
        first = finished(client, plain.json()["batch_id"])
        second = finished(client, multipart.json()["batch_id"])
        [row] = [r for r in rows_of(client, first["batch_id"]) if r["record_key"] == "deal:7"]
        task = client.get(f"/v1/tasks/{row['task_id']}").json()
    assert first["counts"]["completed"] == 2 and second["counts"]["completed"] == 2
    assert (
        task["record_key"] == "deal:7"
        and relay.ctx.tasks.get(row["task_id"]).prompt == "Memo for Globex (40)"
    )


def test_every_row_is_checked_before_anything_starts(make_relay):
    relay = make_relay(worker=False)  # nothing is to start
    rows = [{"record_key": f"deal:{n}", "company": "Acme"} for n in range(1, 62)]
    with relay.client() as client:
        answer = client.post("/v1/batches", json=batch_body(rows))
        syntax = client.post("/v1/batches", json=batch_body(DEALS, template="Memo {{ company"))
        schema = client.post(
            "/v1/batches", json={"format": "word", "prompt_template": "x", "rows": []}
        )
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == "invalid_batch" and error["count"] == 61
    assert len(error["errors"]) == 50 and error["errors"][0] == {
        "row": 1,
        "column": "seats",
        "message": "the template names {{seats}}, which this row has no column for",
    }
    assert error["field"] == "rows.0.seats", "a JSON path into the body; row counts from 1"
    assert relay.ctx.batches.running() == [], "nothing started"
    blank = client_post(relay, batch_body([{"record_key": " ", "company": "x", "seats": 1}]))
    assert blank.status_code == 400 and blank.json()["error"]["field"] == "rows.0.record_key"
    assert syntax.status_code == 400 and syntax.json()["error"]["field"] == "prompt_template"
    assert schema.status_code == 400 and schema.json()["error"]["field"] == "rows"


def client_post(relay, body: dict) -> httpx.Response:
    with relay.client() as client:
        return client.post("/v1/batches", json=body)


def test_without_a_template_each_rows_prompt_column_is_its_prompt(relay):
    rows = [
        {"record_key": "deal:1", "prompt": "Renewal memo for Acme"},
        {"record_key": "deal:2", "prompt": "Renewal memo for Globex"},
    ]
    with relay.client() as client:
        batch = run(client, {"format": "word", "rows": rows})
        prompts = [
            relay.ctx.tasks.get(row["task_id"]).prompt for row in rows_of(client, batch["batch_id"])
        ]
        missing = client.post(
            "/v1/batches", json={"format": "word", "rows": [{"record_key": "deal:3"}]}
        )
    assert prompts == ["Renewal memo for Acme", "Renewal memo for Globex"]
    error = missing.json()["error"]
    assert missing.status_code == 400 and error["field"] == "rows.0.prompt"
    assert (
        error["errors"][0]["message"]
        == "without a prompt_template, each row's prompt column is its prompt"
    )


def test_skip_done_skips_rows_whose_record_has_that_document_already(relay):
    with relay.client() as client:
        first = run(client, batch_body(DEALS[:3]))
        again = run(client, batch_body(DEALS[:3]))
        forced = run(client, batch_body(DEALS[:1], skip_done=False))
    assert first["counts"]["completed"] == 3
    assert (
        again["counts"]["skipped"] == 3
        and again["credits_used"] == 0
        and again["status"] == "completed"
    )
    assert forced["counts"]["completed"] == 1


def test_retry_runs_the_failed_rows_only(relay):
    rows = [
        {"record_key": "deal:1", "note": ""},
        {"record_key": "deal:2", "note": "[[fail]]"},
        {"record_key": "deal:3", "note": ""},
    ]
    with relay.client() as client:
        batch = run(client, batch_body(rows, template="Memo {{note}}"))
        [failed] = rows_of(client, batch["batch_id"], state="failed")
        completed = {
            row["row"]: row["task_id"]
            for row in rows_of(client, batch["batch_id"], state="completed")
        }
        retried = client.post(f"/v1/batches/{batch['batch_id']}/retry")
        again = finished(client, batch["batch_id"])
        after = {row["row"]: row for row in rows_of(client, batch["batch_id"])}
    assert batch["counts"]["failed"] == 1 and failed["row"] == 2 and failed["error"]
    assert retried.status_code == 202 and retried.json()["retried"] == 1
    assert again["counts"]["failed"] == 1 and after[2]["task_id"] != failed["task_id"], (
        "the failed row ran again"
    )
    assert {n: after[n]["task_id"] for n in (1, 3)} == completed, "and only it"


def test_cancel_stops_what_has_not_ended(make_relay, make_sandbox):
    relay = make_relay(sandbox=make_sandbox(task_seconds=600))
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(DEALS)).json()["batch_id"]
        eventually(
            lambda: client.get(f"/v1/batches/{batch_id}").json()["counts"]["running"] >= 1,
            60,
            "a row to start",
            every=0.1,
        )
        cancelled = client.post(f"/v1/batches/{batch_id}/cancel")
        batch = finished(client, batch_id)
        again = client.post(f"/v1/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202 and batch["status"] == "cancelled"
    assert batch["counts"]["cancelled"] == 5 and batch["counts"]["completed"] == 0
    assert again.status_code == 409 and again.json()["error"]["code"] == "batch_ended"


def test_an_idempotency_key_makes_one_batch(make_relay):
    relay = make_relay(worker=False)  # the answers are the point, not the rows
    with relay.client() as client:
        headers = {"Idempotency-Key": "renewals-2026-12"}
        first = client.post("/v1/batches", json=batch_body(DEALS[:2]), headers=headers)
        second = client.post("/v1/batches", json=batch_body(DEALS[:2]), headers=headers)
    assert (
        first.json()["batch_id"] == second.json()["batch_id"]
        and second.headers["Idempotent-Replayed"] == "true"
    )


def test_an_idempotency_key_replays_a_batch_with_an_inline_webhook(make_relay):
    relay = make_relay(worker=False)
    webhook = {"kind": "webhook", "config": {"url": "https://example.com/hook"}}
    body = batch_body(DEALS[:2], destinations=[webhook])
    with relay.client() as client:
        headers = {"Idempotency-Key": "renewals-with-hook"}
        first = client.post("/v1/batches", json=body, headers=headers)
        second = client.post("/v1/batches", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"


def feed_limits(count: int, cap: float) -> list[float]:
    """The feed's limit after each of ``count`` rows handed over without trouble (app.domain.batches)."""
    limits, limit = [], float(batches.FIRST_LIMIT)
    for _ in range(count):
        limit = min(cap, limit + 1.0 / limit)
        limits.append(limit)
    return limits


def test_the_feed_keeps_a_tenants_rows_under_its_limit_and_single_submits_go_straight_through(
    make_relay, make_sandbox
):
    """Six quick rows grow the feed's limit to its cap of 3 (uncapped it would be past 4 by then); the next
    four are held running at the API, so the feed fills up to its limit and stops there, while a single submit
    goes to the API at once and completes. The claims' own high-water mark says no more ever went."""
    relay = make_relay(sandbox=make_sandbox(pool_size=8), batch_max_concurrency=3)
    assert feed_limits(6, cap=math.inf)[-1] >= 4 and feed_limits(6, cap=3)[-1] == 3
    rows = [
        {"record_key": f"deal:{n}", "prompt": f"Memo {n}" + (" [[hold=rows]]" if n > 6 else "")}
        for n in range(1, 11)
    ]
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json={"format": "word", "rows": rows}).json()[
            "batch_id"
        ]

        def full():  # the quick rows ended, and the held ones fill the feed up to its limit
            batch, feed = relay.ctx.batches.get(batch_id), relay.ctx.batches.feed(relay.tenant_id)
            counts, held = batch.counts, relay.sandbox.held("rows")
            in_api = counts[RowState.RUNNING] + counts[RowState.SUBMITTING]
            limit = math.floor(feed.get("limit", 0))
            settled = counts[RowState.COMPLETED] == 6 and in_api == limit == len(held)
            return (in_api, feed) if settled else None

        in_api, feed = eventually(
            full,
            90,
            "the held rows to fill the feed",
            every=0.2,
            show=lambda: (
                relay.ctx.batches.get(batch_id),
                relay.ctx.batches.feed(relay.tenant_id),
                relay.sandbox.held("rows"),
            ),
        )
        assert in_api <= 3 and feed["limit"] <= 3, (
            f"never more rows in the API than the feed's cap: {feed}"
        )
        assert relay.ctx.batches.get(batch_id).counts[RowState.PENDING] == 4 - in_api, (
            "the rest wait their turn"
        )
        single = relay.submit(client, prompt="A one-off memo", format="word")
        assert single["status"] != "pending_submit", (
            "the single submit went to the API at once, beside the batch"
        )
        assert relay.wait_task(client, single["task_id"], 60)["status"] == "completed", (
            "while the feed was full"
        )
        relay.sandbox.release("rows")
        batch = finished(client, batch_id)
    feed = relay.ctx.batches.feed(relay.tenant_id)
    assert batch["counts"]["completed"] == 10
    assert in_api <= feed["max_inflight"] <= 3, (
        f"the most rows the claims ever had in the API: {feed}"
    )


def test_the_feed_backs_off_when_rows_wait_for_the_apis_pool(make_relay, make_sandbox):
    """A pool of one, and a first row held running there: the second row waits in acquiring_pool. The relay
    learns it as it polls the row (as for someone watching; on the test's clock, which it moves past
    POOL_WAIT_SECONDS instead of waiting) and takes a row off the feed's limit, once a second at most."""
    relay = make_relay(sandbox=make_sandbox(pool_size=1), batch_max_concurrency=8)
    rows = [
        {"record_key": f"deal:{n}", "prompt": f"Memo {n}" + (" [[hold=first]]" if n == 1 else "")}
        for n in range(1, 7)
    ]
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json={"format": "word", "rows": rows}).json()[
            "batch_id"
        ]
        relay.sandbox.wait_held("first")

        def second_waits():  # two rows handed over; the second still queued at the API behind the first
            first, second = relay.ctx.batches.rows_by_number(batch_id, [1, 2])
            task = relay.ctx.tasks.get(second.task_id or "")
            if not task or second.state != RowState.RUNNING or not task.upstream_task_id:
                return None
            with relay.sandbox.client() as api:
                upstream = api.get(f"/tasks/{task.upstream_task_id}").json()
            return (
                task if upstream["status"] == "queued" and first.state == RowState.RUNNING else None
            )

        second = eventually(second_waits, 60, "the second row to wait in the API's pool", every=0.1)
        submitted = second.submitted_at

        # as a poll for someone watching, on the test's clock
        def poll_at(
            seconds_after_hand_over: float,
        ) -> dict:
            before = relay.ctx.batches.feed(relay.tenant_id)
            tracking.refresh(
                relay.ctx, second, min_age_seconds=0, now=submitted + seconds_after_hand_over
            )
            return before

        before = poll_at(batch_rows.POOL_WAIT_SECONDS - 0.5)
        assert relay.ctx.batches.feed(relay.tenant_id) == before, "not waiting long enough to count"
        before = poll_at(60)
        cut = relay.ctx.batches.feed(relay.tenant_id)
        assert before["limit"] > 1 and cut["limit"] == pytest.approx(before["limit"] - 1), (
            f"one row off: {cut}"
        )
        assert cut["pool_waits"] == before.get("pool_waits", 0) + 1
        assert relay.ctx.batches.feed(relay.tenant_id) == poll_at(60.5), "at most once a second"
        poll_at(61.5)
        assert relay.ctx.batches.feed(relay.tenant_id)["pool_waits"] == cut["pool_waits"] + 1, (
            "then again"
        )
        relay.sandbox.release("first")
        batch = finished(client, batch_id)
    feed = relay.ctx.batches.feed(relay.tenant_id)
    assert batch["counts"]["completed"] == 6
    assert not feed.get("slowdowns") and not feed.get("hold_until"), (
        f"no 429 here: the cuts came from the pool: {feed}"
    )


def test_the_end_of_a_batch_goes_to_its_callback_and_hooks_with_the_manifest_and_a_zip(
    relay, receiver
):
    with relay.client() as client:
        client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "batch.completed"}
        ).raise_for_status()
        batch = run(client, batch_body(DEALS[:3], callback_url=receiver.url + "/callback"))
        [hook, callback] = sorted(receiver.wait_for(2, 60), key=lambda r: r.path)
        zipped = client.get(f"/v1/batches/{batch['batch_id']}/files.zip")
    event = json.loads(hook.body)
    assert event["type"] == "batch.completed" and callback.path.endswith("/callback")
    data = event["data"]
    assert data["batch_id"] == batch["batch_id"] and data["counts"]["completed"] == 3
    manifest = list(csv.DictReader(io.StringIO(httpx.get(data["manifest_url"]).text)))
    assert [line["record_key"] for line in manifest] == ["deal:1", "deal:2", "deal:3"]
    signed_zip = httpx.get(data["zip_url"]).content
    for archive in (zipped.content, signed_zip):
        with zipfile.ZipFile(io.BytesIO(archive)) as files:
            names = files.namelist()
            assert names == [
                "00001-deal_1.docx",
                "00002-deal_2.docx",
                "00003-deal_3.docx",
                "manifest.csv",
            ]
            assert all(files.read(name)[:2] == b"PK" for name in names[:3]), "whole Word files"
    stored = relay.ctx.batches.get(batch["batch_id"])
    ids = stored.delivery_ids
    assert stored.announced and len(ids) == 2, "the end was announced once: a callback and a hook"
    eventually(
        lambda: set(relay.ctx.deliveries.states(ids).values()) == {"delivered"},
        60,
        "the announcement's two deliveries to settle",
        show=lambda: relay.ctx.deliveries.states(ids),
    )
    assert len(receiver.requests) == 2, "each went once"


def test_the_end_of_a_batch_gives_its_destinations_the_manifest(relay, fake_teams):
    destinations = [
        {"kind": "folder", "config": {"path": "renewals"}},
        {"kind": "teams", "config": {"url": fake_teams.url(fake_teams.base)}},
    ]
    with relay.client() as client:
        batch = run(client, batch_body(DEALS[:3], destinations=destinations))

        def delivered():
            deliveries = client.get(f"/v1/batches/{batch['batch_id']}").json()["deliveries"]
            settled = len(deliveries) == 2 and all(
                d["state"] in ("delivered", "accepted", "dead") for d in deliveries
            )
            return deliveries if settled else None

        folder, teams = eventually(delivered, 60, "the batch's deliveries", every=0.1)

        def rows_delivered():  # each row's own folder file and card
            found = [
                d
                for row in rows_of(client, batch["batch_id"])
                for d in client.get(f"/v1/tasks/{row['task_id']}").json()["deliveries"]
            ]
            return len(found) == 6 and all(
                d["state"] in ("delivered", "accepted", "dead") for d in found
            )

        eventually(rows_delivered, 60, "the rows' deliveries to settle", every=0.1)
    assert (folder["state"], teams["state"]) == ("delivered", "accepted"), (
        folder["last_error"],
        teams["last_error"],
    )
    manifest = Path(folder["location"])
    assert (
        manifest.name == f"{batch['batch_id']}-manifest.csv" and manifest.parent.name == "renewals"
    )
    lines = list(csv.DictReader(io.StringIO(manifest.read_text())))
    assert [(line["record_key"], line["status"]) for line in lines] == [
        ("deal:1", "completed"),
        ("deal:2", "completed"),
        ("deal:3", "completed"),
    ]
    assert len(list(manifest.parent.glob("deal-*.docx"))) == 3, (
        "each row's own document went there too"
    )
    [card] = [c for c in fake_teams.posted if c["body"][0]["text"] == "Your batch has ended"]
    _, text, _ = card["body"]
    assert "3 of 3 documents made" in text["text"]
    opened = list(csv.DictReader(io.StringIO(httpx.get(card["actions"][0]["url"]).text)))
    assert [line["record_key"] for line in opened] == ["deal:1", "deal:2", "deal:3"], (
        "Open gives the manifest"
    )
    assert len(fake_teams.posted) == 4, "the rows' three cards, and the batch's"


def at_a_window_start(sandbox, window: int) -> None:
    """Move the sandbox's clock to the start of its next rate-limit window, so the test has all of one."""
    now = sandbox.runtime.store.clock.now()
    sandbox.advance(window - now % window)


def test_the_feed_backs_off_when_the_api_answers_429(make_relay, make_sandbox):
    """The key may make 3 calls an hour: three rows go, the fourth hand-over meets a 429 and the feed halves
    its limit and holds back until the API's Retry-After, as does the refused row's next hand-over (what
    the relay decided is read from its schedule: the hour is not waited out)."""
    sandbox = make_sandbox(rate_limit_requests=3, rate_limit_window_seconds=3600)
    at_a_window_start(sandbox, 3600)
    # the key's window opens at its first request, after this: it ends an hour past this at the least
    window_ends_after = time.time() + 3600
    relay = make_relay(sandbox=sandbox, batch_max_concurrency=8)
    rows = [{"record_key": f"deal:{n}", "company": "Acme", "seats": n} for n in range(1, 7)]
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(rows)).json()["batch_id"]
        held = eventually(
            lambda: relay.ctx.batches.feed(relay.tenant_id).get("slowdowns"),
            60,
            "a hand-over to meet a 429",
            every=0.1,
            show=lambda: relay.ctx.batches.feed(relay.tenant_id),
        )
        feed = relay.ctx.batches.feed(relay.tenant_id)
        throttled = [
            task
            for row in relay.ctx.batches.rows(batch_id)
            if (task := relay.ctx.tasks.get(row.task_id or "")) and task.throttled
        ]
        batch = client.get(f"/v1/batches/{batch_id}").json()
    assert held == 1 and [task.batch_row for task in throttled] == [4], (
        "three went, the fourth met the limit"
    )
    assert feed["limit"] == pytest.approx(feed_limits(3, cap=8)[-1] / 2), (
        f"the feed halved its limit: {feed}"
    )
    [refused] = throttled
    assert refused.submit_not_before >= window_ends_after, "not before the API's Retry-After"
    assert feed["hold_until"] >= refused.submit_not_before, "no other row goes before it"
    registry = ScheduledJobRegistry(queue=relay.ctx.queues.get(queues.SUBMIT))
    again = registry.get_scheduled_time(f"submit-{refused.task_id}").timestamp()
    assert again >= refused.submit_not_before, "nor does the refused row"
    assert batch["counts"]["pending"] == 2 and batch["counts"]["completed"] <= 3


def test_on_error_stop_cancels_the_rest_at_the_first_failed_row(relay):
    # they cannot end on their own
    rows = [{"record_key": "deal:1", "note": "[[fail]]"}] + [
        {"record_key": f"deal:{n}", "note": "[[hold=rest]]"} for n in range(2, 7)
    ]
    with relay.client() as client:
        batch = run(client, batch_body(rows, template="Memo {{note}}", on_error="stop"))
    assert batch["status"] == "stopped" and batch["counts"]["failed"] == 1
    assert batch["counts"]["cancelled"] == 5 and batch["counts"]["completed"] == 0


def test_the_reconciler_starts_rows_whose_claim_outlived_its_worker_and_only_those(make_relay):
    """A worker that claimed rows and died before making their tasks: the reconciler's tick starts each once
    its claim is stale (the test's clock moves, not time), reading only the stale claims (an index)."""
    relay = make_relay(worker=False, batch_claim_stale_seconds=60)
    ctx, stale = relay.ctx, 60
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(DEALS[:4])).json()["batch_id"]
    t0 = time.time()
    # three rows claimed by a worker that then died
    claimed = [
        ctx.batches.claim(batch_id, relay.tenant_id, first_limit=4, now=t0 + n) for n in range(3)
    ]

    def started() -> list[bool]:
        return [ctx.tasks.get(row.task_id) is not None for row in claimed]

    assert batches.tick(ctx, now=t0 + stale - 0.1) == 0 and started() == [False] * 3, (
        "not stale yet"
    )
    batches.tick(ctx, now=t0 + stale + 0.5)
    assert started() == [True, False, False], "only the claim past its time"
    batches.tick(ctx, now=t0 + stale + 2.5)
    assert started() == [True] * 3, "then the others"
    tasks = [ctx.tasks.get(row.task_id) for row in claimed]
    assert [task.batch_row for task in tasks] == [row.row for row in claimed]
    assert ctx.redis.zcard(ctx.batches.claims_key(batch_id)) == 0, (
        "a row handed over leaves the index"
    )
    relay.start_worker()
    with relay.client() as client:
        batch = finished(client, batch_id)
    assert batch["counts"]["completed"] == 4
    assert [len(ctx.records.task_ids(relay.tenant_id, d["record_key"])) for d in DEALS[:4]] == [
        1,
        1,
        1,
        1,
    ]
