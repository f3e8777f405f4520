"""Batches over real HTTP against the sandbox: JSON and CSV rows, every row checked first, skip_done, the
failed rows retried alone, cancel, the manifest, Idempotency-Key, and the tenant's feed keeping its rows
in the API under its limit while single submits go straight through."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
import zipfile
from pathlib import Path

import httpx

from app.domain import batches
from tests.support.servers import eventually


def batch_body(rows: list[dict], template: str = "Renewal memo for {{company}}, {{seats}} seats", **extra) -> dict:
    return {"format": "word", "prompt_template": template, "rows": rows, **extra}


def finished(client, batch_id: str, timeout: float = 60) -> dict:
    def ended():
        batch = client.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["status"] != "running" and batch["percent_done"] == 100 else None

    return eventually(ended, timeout, f"batch {batch_id} to end")


def run(client, body: dict) -> dict:
    answer = client.post("/v1/batches", json=body)
    assert answer.status_code == 202, answer.text
    return finished(client, answer.json()["batch_id"])


def rows_of(client, batch_id: str, **query) -> list[dict]:
    items, cursor = [], 0
    while cursor is not None:
        page = client.get(f"/v1/batches/{batch_id}/rows", params={**query, "cursor": cursor, "limit": 2}).json()
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
    assert batch["status"] == "completed" and batch["counts"]["completed"] == 5 and batch["percent_done"] == 100
    assert batch["credits_used"] > 0 and batch["seconds_left"] is None
    assert [row["row"] for row in rows] == [1, 2, 3, 4, 5] and {row["state"] for row in rows} == {"completed"}
    assert [task["record_key"] for task in prompts] == [f"deal:{n}" for n in range(1, 6)]
    lines = list(csv.DictReader(io.StringIO(manifest.text)))
    assert manifest.headers["content-type"].startswith("text/csv") and len(lines) == 5
    assert lines[0]["record_key"] == "deal:1" and lines[0]["status"] == "completed" and float(lines[0]["credits"]) > 0
    download = httpx.get(lines[0]["file"], follow_redirects=True)
    assert download.status_code == 200 and download.content[:2] == b"PK", "the manifest's link downloads the file"


def test_a_csv_batch_by_upload_and_by_multipart(relay):
    text = "record_key,company,seats\ndeal:7,Globex,40\ndeal:8,Initech,12\n"
    with relay.client() as client:
        plain = client.post("/v1/batches", content=text.encode(), headers={"Content-Type": "text/csv"},
                            params={"format": "word", "prompt_template": "Memo for {{company}} ({{seats}})"})
        multipart = client.post("/v1/batches", files={"file": ("deals.csv", text, "text/csv")},
                                data={"format": "word", "prompt_template": "Second memo for {{company}}"})
        assert plain.status_code == 202 and multipart.status_code == 202, (plain.text, multipart.text)
        first = finished(client, plain.json()["batch_id"])
        second = finished(client, multipart.json()["batch_id"])
        [row] = [r for r in rows_of(client, first["batch_id"]) if r["record_key"] == "deal:7"]
        task = client.get(f"/v1/tasks/{row['task_id']}").json()
    assert first["counts"]["completed"] == 2 and second["counts"]["completed"] == 2
    assert task["record_key"] == "deal:7" and relay.ctx.tasks.get(row["task_id"])["prompt"] == "Memo for Globex (40)"


def test_every_row_is_checked_before_anything_starts(relay):
    rows = [{"record_key": f"deal:{n}", "company": "Acme"} for n in range(1, 62)]
    with relay.client() as client:
        answer = client.post("/v1/batches", json=batch_body(rows))
        syntax = client.post("/v1/batches", json=batch_body(DEALS, template="Memo {{ company"))
        schema = client.post("/v1/batches", json={"format": "word", "prompt_template": "x", "rows": []})
    error = answer.json()["error"]
    assert answer.status_code == 400 and error["code"] == "invalid_batch" and error["count"] == 61
    assert len(error["errors"]) == 50 and error["errors"][0] == {
        "row": 1, "column": "seats", "message": "the template names {{seats}}, which this row has no column for"}
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
    rows = [{"record_key": "deal:1", "prompt": "Renewal memo for Acme"},
            {"record_key": "deal:2", "prompt": "Renewal memo for Globex"}]
    with relay.client() as client:
        batch = run(client, {"format": "word", "rows": rows})
        prompts = [relay.ctx.tasks.get(row["task_id"])["prompt"] for row in rows_of(client, batch["batch_id"])]
        missing = client.post("/v1/batches", json={"format": "word", "rows": [{"record_key": "deal:3"}]})
    assert prompts == ["Renewal memo for Acme", "Renewal memo for Globex"]
    error = missing.json()["error"]
    assert missing.status_code == 400 and error["field"] == "rows.0.prompt"
    assert error["errors"][0]["message"] == "without a prompt_template, each row's prompt column is its prompt"


def test_skip_done_skips_rows_whose_record_has_that_document_already(relay):
    with relay.client() as client:
        first = run(client, batch_body(DEALS[:3]))
        again = run(client, batch_body(DEALS[:3]))
        forced = run(client, batch_body(DEALS[:1], skip_done=False))
    assert first["counts"]["completed"] == 3
    assert again["counts"]["skipped"] == 3 and again["credits_used"] == 0 and again["status"] == "completed"
    assert forced["counts"]["completed"] == 1


def test_retry_runs_the_failed_rows_only(relay):
    rows = [{"record_key": "deal:1", "note": ""}, {"record_key": "deal:2", "note": "[[fail]]"},
            {"record_key": "deal:3", "note": ""}]
    with relay.client() as client:
        batch = run(client, batch_body(rows, template="Memo {{note}}"))
        [failed] = rows_of(client, batch["batch_id"], state="failed")
        completed = {row["row"]: row["task_id"] for row in rows_of(client, batch["batch_id"], state="completed")}
        retried = client.post(f"/v1/batches/{batch['batch_id']}/retry")
        again = finished(client, batch["batch_id"])
        after = {row["row"]: row for row in rows_of(client, batch["batch_id"])}
    assert batch["counts"]["failed"] == 1 and failed["row"] == 2 and failed["error"]
    assert retried.status_code == 202 and retried.json()["retried"] == 1
    assert again["counts"]["failed"] == 1 and after[2]["task_id"] != failed["task_id"], "the failed row ran again"
    assert {n: after[n]["task_id"] for n in (1, 3)} == completed, "and only it"


def test_cancel_stops_what_has_not_ended(make_relay, make_sandbox):
    relay = make_relay(sandbox=make_sandbox(task_seconds=600))
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(DEALS)).json()["batch_id"]
        eventually(lambda: client.get(f"/v1/batches/{batch_id}").json()["counts"]["running"] >= 1, 30,
                   "a row to start")
        cancelled = client.post(f"/v1/batches/{batch_id}/cancel")
        batch = finished(client, batch_id)
        again = client.post(f"/v1/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202 and batch["status"] == "cancelled"
    assert batch["counts"]["cancelled"] == 5 and batch["counts"]["completed"] == 0
    assert again.status_code == 409 and again.json()["error"]["code"] == "batch_ended"


def test_an_idempotency_key_makes_one_batch(relay):
    with relay.client() as client:
        headers = {"Idempotency-Key": "renewals-2026-12"}
        first = client.post("/v1/batches", json=batch_body(DEALS[:2]), headers=headers)
        second = client.post("/v1/batches", json=batch_body(DEALS[:2]), headers=headers)
    assert first.json()["batch_id"] == second.json()["batch_id"] and second.headers["Idempotent-Replayed"] == "true"


def test_the_feed_keeps_a_tenants_rows_under_its_limit_and_single_submits_go_straight_through(make_relay,
                                                                                              make_sandbox):
    sandbox = make_sandbox(task_seconds=1.0, pool_size=8)
    relay = make_relay(sandbox=sandbox, batch_max_concurrency=3)
    rows = [{"record_key": f"deal:{n}", "company": f"Co {n}", "seats": n} for n in range(1, 13)]
    peak = 0
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(rows)).json()["batch_id"]
        single = relay.submit(client, prompt="A one-off memo", format="word")

        def done():
            nonlocal peak
            batch = client.get(f"/v1/batches/{batch_id}").json()
            peak = max(peak, batch["counts"]["running"] + batch["counts"]["submitting"])
            return batch if batch["status"] != "running" else None

        batch = eventually(done, 90, "the batch to end", every=0.1)
    assert batch["counts"]["completed"] == 12
    assert 1 <= peak <= 3, "never more rows in the API than the feed's limit"
    assert single["status"] != "pending_submit", "the single submit went to the API at once, beside the batch"


def test_the_feed_backs_off_when_rows_wait_for_the_apis_pool(make_relay, make_sandbox):
    # a pool of 2 and rows of 1.5 s: every row past the second waits in acquiring_pool longer than a second
    sandbox = make_sandbox(task_seconds=1.5, pool_size=2)
    relay = make_relay(sandbox=sandbox, batch_max_concurrency=8)
    limits: list[float] = []
    with relay.client() as client:
        rows = [{"record_key": f"deal:{n}", "prompt": f"Memo {n}"} for n in range(1, 13)]
        batch_id = client.post("/v1/batches", json={"format": "word", "rows": rows}).json()["batch_id"]

        def ended():
            limits.append(relay.ctx.batches.feed(relay.tenant_id).get("limit", 2.0))
            batch = relay.ctx.batches.get(batch_id)
            return batch if batch["status"] != "running" else None

        batch = eventually(ended, 120, "the batch to end", every=0.1)
    feed = relay.ctx.batches.feed(relay.tenant_id)
    assert batch["completed"] == 12 and feed.get("pool_waits", 0) >= 1, feed
    assert not feed.get("hold_until"), "no 429 here: the cuts came from the pool"
    assert any(later < earlier for earlier, later in itertools.pairwise(limits)), "the limit came down"


def test_the_end_of_a_batch_goes_to_its_callback_and_hooks_with_the_manifest_and_a_zip(relay, receiver):
    with relay.client() as client:
        client.post("/v1/hooks", json={"target_url": receiver.url, "event": "batch.completed"}).raise_for_status()
        batch = run(client, batch_body(DEALS[:3], callback_url=receiver.url + "/callback"))
        [hook, callback] = sorted(receiver.wait_for(2, 30), key=lambda r: r.path)
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
            assert names == ["00001-deal_1.docx", "00002-deal_2.docx", "00003-deal_3.docx", "manifest.csv"]
            assert all(files.read(name)[:2] == b"PK" for name in names[:3]), "whole Word files"
    assert len(receiver.requests) == 2, "announced once"


def test_the_end_of_a_batch_gives_its_destinations_the_manifest(relay, fake_teams):
    destinations = [{"kind": "folder", "config": {"path": "renewals"}},
                    {"kind": "teams", "config": {"url": fake_teams.url(fake_teams.base)}}]
    with relay.client() as client:
        batch = run(client, batch_body(DEALS[:3], destinations=destinations))

        def delivered():
            deliveries = client.get(f"/v1/batches/{batch['batch_id']}").json()["deliveries"]
            settled = len(deliveries) == 2 and all(d["state"] in ("delivered", "dead") for d in deliveries)
            return deliveries if settled else None

        folder, teams = eventually(delivered, 30, "the batch's deliveries")
    assert folder["state"] == teams["state"] == "delivered", (folder["last_error"], teams["last_error"])
    manifest = Path(folder["location"])
    assert manifest.name == f"{batch['batch_id']}-manifest.csv" and manifest.parent.name == "renewals"
    lines = list(csv.DictReader(io.StringIO(manifest.read_text())))
    assert [(line["record_key"], line["status"]) for line in lines] == [("deal:1", "completed"),
                                                                       ("deal:2", "completed"),
                                                                       ("deal:3", "completed")]
    assert len(list(manifest.parent.glob("deal-*.docx"))) == 3, "each row's own document went there too"
    card = fake_teams.posted[-1]  # after the three rows' cards
    title, text, _ = card["body"]
    assert title["text"] == "Your batch has ended" and "3 of 3 documents made" in text["text"]
    opened = list(csv.DictReader(io.StringIO(httpx.get(card["actions"][0]["url"]).text)))
    assert [line["record_key"] for line in opened] == ["deal:1", "deal:2", "deal:3"], "Open gives the manifest"
    assert len(fake_teams.posted) == 4


def test_the_feed_backs_off_when_the_api_answers_429(make_relay, make_sandbox):
    # 6 calls per 2 s for the key: a batch fed at full speed would meet 429s at once
    sandbox = make_sandbox(task_seconds=0.2, rate_limit_requests=6, rate_limit_window_seconds=2)
    relay = make_relay(sandbox=sandbox, batch_max_concurrency=8)
    limits: list[float] = []
    with relay.client() as client:
        rows = [{"record_key": f"deal:{n}", "company": "Acme", "seats": n} for n in range(1, 13)]
        answer = client.post("/v1/batches", json=batch_body(rows))
        batch_id = answer.json()["batch_id"]

        def ended():
            limits.append(relay.ctx.batches.feed(relay.tenant_id).get("limit", 2.0))
            batch = relay.ctx.batches.get(batch_id)
            return batch if batch["status"] != "running" else None

        batch = eventually(ended, 120, "the batch to end", every=0.2)
        tasks = [relay.ctx.tasks.get(row["task_id"]) for row in relay.ctx.batches.rows(batch_id)]
    assert batch["completed"] == 12, "every row in the end"
    assert any(task.get("throttled") for task in tasks), "the API did answer 429"
    assert min(limits) < max(limits) and relay.ctx.batches.feed(relay.tenant_id).get("hold_until"), \
        "the feed halved its limit and held back"


def test_on_error_stop_cancels_the_rest_at_the_first_failed_row(relay):
    rows = [{"record_key": "deal:1", "note": "[[fail]]"}] + [
        {"record_key": f"deal:{n}", "note": "[[duration=30]]"} for n in range(2, 7)]
    with relay.client() as client:
        batch = run(client, batch_body(rows, template="Memo {{note}}", on_error="stop"))
    assert batch["status"] == "stopped" and batch["counts"]["failed"] == 1
    assert batch["counts"]["cancelled"] == 5 and batch["counts"]["completed"] == 0


def test_the_reconciler_starts_rows_whose_claim_outlived_its_worker_and_only_those(make_relay):
    """A worker that claimed rows and died before making their tasks: the reconciler's tick starts them once
    their claim is stale, reading only the stale claims (an index), and, for claims an older Relay made and
    did not index, the rows whole."""
    relay = make_relay(worker=False, batch_claim_stale_seconds=0.5)
    ctx = relay.ctx
    with relay.client() as client:
        batch_id = client.post("/v1/batches", json=batch_body(DEALS[:4])).json()["batch_id"]
    claimed = [ctx.batches.claim(batch_id, relay.tenant_id, first_limit=4) for _ in range(3)]  # then it died
    legacy = claimed[2]["row"]
    ctx.redis.zrem(ctx.batches.claims_key(batch_id), legacy)  # as an older Relay claimed it: not indexed
    assert batches.tick(ctx) == 0 and all(ctx.tasks.get(row["task_id"]) is None for row in claimed), "not stale yet"

    def stale() -> int:  # the three were claimed milliseconds apart: wait until the last is stale too
        return len(ctx.batches.claimed_before(ctx.batches.get(batch_id), time.time() - 0.5))
    eventually(lambda: stale() == 3, 5, "three stale claims")
    batches.tick(ctx)
    started = [ctx.tasks.get(row["task_id"]) for row in claimed]
    assert all(task and int(task["batch_row"]) == row["row"] for task, row in zip(started, claimed, strict=True))
    assert ctx.redis.zcard(ctx.batches.claims_key(batch_id)) == 0, "a row handed over leaves the index"
    relay.start_worker()
    with relay.client() as client:
        batch = finished(client, batch_id)
    assert batch["counts"]["completed"] == 4
    assert [len(ctx.records.task_ids(relay.tenant_id, d["record_key"])) for d in DEALS[:4]] == [1, 1, 1, 1]
