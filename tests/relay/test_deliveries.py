"""Fan-out over real HTTP: folder, webhook subscribers, callbacks; retries, dead letters, replay."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from click.testing import CliRunner
from openpyxl import load_workbook
from standardwebhooks import Webhook

from app.cli.deliveries import deliveries_group
from app.domain import retention, usage_report
from app.stores import context
from app.stores.tasks import Task
from tests.support.dashboard import ADMIN_TOKEN, signed_in_client
from tests.support.servers import eventually

DONE = ("delivered", "accepted", "dead")


def delivered(relay, client, task_id: str, count: int = 1, timeout: float = 60) -> list[dict]:
    """The task's ``count`` deliveries once each has delivered or died. The deadline only ends a hang: a
    retry waits for its backoff and RQ's scheduler, which a busy machine makes longer."""

    def deliveries() -> list[dict]:
        return client.get(f"/v1/tasks/{task_id}").json()["deliveries"]

    def settled():
        found = deliveries()
        return found if len(found) == count and all(d["state"] in DONE for d in found) else None

    shown = ("delivery_id", "kind", "state", "attempts", "next_attempt_at", "last_error")
    return eventually(
        settled,
        timeout,
        f"{count} deliveries of {task_id} to settle",
        every=0.1,
        show=lambda: [{k: d.get(k) for k in shown} for d in deliveries()],
    )


def fanned_out(relay, task_id: str) -> Task:
    """The task once the relay has planned all its deliveries (its fan-out is done): what it decided."""
    return eventually(
        lambda: (task := relay.ctx.tasks.get(task_id)) and task.fanout == "done" and task,
        60,
        f"the fan-out of {task_id}",
        every=0.1,
        show=lambda: relay.ctx.tasks.get(task_id),
    )


def test_folder_delivery_is_written_atomically_and_exported(relay):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales by region",
            record_key="deal:42",
            destinations=[
                {"kind": "folder", "config": {"path": "reports"}},
                {"kind": "folder", "config": {"path": "csv"}, "export": "csv"},
            ],
        )
        done = delivered(relay, client, task["task_id"], count=2)
    assert [d["state"] for d in done] == ["delivered", "delivered"]
    workbook = Path(done[0]["location"])
    assert workbook.parent.name == "reports" and workbook.name.startswith("deal-42-workbook-")
    assert load_workbook(workbook).sheetnames == ["Sales Region"]
    assert Path(done[1]["location"]).read_text().splitlines()[2].startswith("Item,Q1")
    assert not list(workbook.parent.glob(".*.part")), "no temporary file left behind"


def test_folder_outside_the_roots_is_refused_at_submit(make_relay):
    relay = make_relay(worker=False)  # answered at once: nothing runs
    with relay.client() as client:
        response = client.post(
            "/v1/documents",
            json={
                "format": "excel",
                "prompt": "x",
                "destinations": [{"kind": "folder", "config": {"path": "../../etc"}}],
            },
        )
    assert (
        response.status_code == 400
        and response.json()["error"]["field"] == "destinations.0.config.path"
    )


def test_hook_subscribers_get_signed_events_and_410_unsubscribes(relay, receiver):
    with relay.client() as client:
        hook = client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
        ).json()
        assert hook["secret"].startswith("whsec_")
        assert "secret" not in client.get("/v1/hooks").json()["items"][0]
        first = relay.submit(client, prompt="First")
        [request] = receiver.wait_for(1)
        event = Webhook(hook["secret"]).verify(request.body, request.headers)
        assert event["type"] == "task.completed" and event["data"]["task_id"] == first["task_id"]
        assert event["data"]["file_url"].startswith(relay.url + "/files/")
        receiver.script = [410]
        relay.submit(client, prompt="Second")
        receiver.wait_for(2)
        eventually(
            lambda: client.get("/v1/hooks").json()["items"] == [],
            60,
            "the subscription to be removed",
            every=0.1,
        )
        third = fanned_out(relay, relay.submit(client, prompt="Third")["task_id"])
    assert third.delivery_ids == [], "no delivery planned to the removed subscriber"
    assert len(receiver.requests) == 2


def test_callback_gets_one_post_with_the_result(relay, receiver):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="For Zapier",
            callback_url=receiver.url,
            callback_headers={"Authorization": "Bearer n8n-secret"},
        )
        [request] = receiver.wait_for(1)
        done = delivered(relay, client, task["task_id"])
    body = json.loads(request.body)
    assert (
        body["task_id"] == task["task_id"]
        and body["status"] == "completed"
        and body["result"]["summary"]
    )
    assert request.headers["Authorization"] == "Bearer n8n-secret"
    assert done[0]["kind"] == "callback" and done[0]["state"] == "delivered"
    file = httpx.get(body["file_url"], follow_redirects=True)
    assert load_workbook(io.BytesIO(file.content)).sheetnames


def test_callback_also_reports_failures(relay, receiver):
    with relay.client() as client:
        relay.submit(client, prompt="x [[fail]]", callback_url=receiver.url)
        [request] = receiver.wait_for(1)
    assert json.loads(request.body)["status"] == "failed"


def test_retry_after_5xx_and_429_then_delivered(relay, receiver):
    receiver.script = [503, 429]
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 3
    assert len({r.headers["Webhook-Id"] for r in receiver.requests}) == 1, (
        "the same webhook-id every time"
    )


def test_permanent_failure_goes_to_dead_letters_and_replay_delivers(relay, receiver):
    receiver.script = [400]
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        [dead] = delivered(relay, client, task["task_id"])
        assert dead["state"] == "dead" and dead["attempts"] == 1 and "400" in dead["last_error"]
        assert [d["delivery_id"] for d in client.get("/v1/deliveries").json()["items"]] == [
            dead["delivery_id"]
        ]
        replayed = client.post(f"/v1/deliveries/{dead['delivery_id']}/replay")
        assert replayed.status_code == 202
        [done] = eventually(
            lambda: [
                d
                for d in client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
                if d["state"] == "delivered"
            ],
            60,
            "the replay",
            every=0.1,
        )
        assert client.get("/v1/deliveries").json()["items"] == []
        again = client.post(f"/v1/deliveries/{dead['delivery_id']}/replay")
    assert again.status_code == 409 and done["attempts"] == 1
    today = datetime.now(UTC).date()
    [day] = usage_report.daily_series(relay.ctx, relay.tenant_id, today, today)
    assert day["deliveries"] == {"webhook": {"delivered": 1, "dead": 0}}, (
        "counted once, by how it ended at last"
    )


def test_exhausted_retries_land_in_dead_letters_and_cli_replays_them(relay, receiver, monkeypatch):
    receiver.default_status = 500
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        [dead] = delivered(relay, client, task["task_id"], timeout=120)
        assert dead["state"] == "dead" and dead["attempts"] == relay.config.delivery_max_attempts
        receiver.default_status = 204
        # `relay deliveries` in this process, on the relay's own context (a process of its own costs a second
        # and a half of CPU to start; tests/relay/test_cli_*.py run the command line as a process)
        monkeypatch.setattr(context, "_current", relay.ctx)
        listed = CliRunner().invoke(deliveries_group, ["list"])
        assert listed.exit_code == 0 and dead["delivery_id"] in listed.output, listed.output
        replay = CliRunner().invoke(deliveries_group, ["replay", "--all-failed"])
        assert replay.exit_code == 0 and "queued again" in replay.output, replay.output
        eventually(
            lambda: (
                client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"][0]["state"]
                == "delivered"
            ),
            60,
            "the replayed delivery",
            every=0.1,
        )


def test_dead_letters_are_paged_per_tenant_in_the_api_the_dashboard_and_the_cli(
    make_relay, receiver, monkeypatch
):
    """Each tenant's dead letters are read from its own list, a page at a time with a cursor: another
    tenant's many dead letters are never read for it, and no page reads more records than it shows."""
    relay = make_relay(admin_token=ADMIN_TOKEN)
    receiver.default_status = 400  # refused for good: each delivery dies at its first attempt
    other_id, other_key = relay.new_tenant("other")

    def hooks(count: int) -> list[dict]:
        return [
            {"kind": "webhook", "config": {"url": f"{receiver.url}?n={n}"}} for n in range(count)
        ]

    with relay.client() as acme, relay.client(other_key) as other:
        ours = [relay.submit(acme, prompt=f"Memo {n}", destinations=hooks(10)) for n in range(6)]
        theirs = relay.submit(other, prompt="Theirs", destinations=hooks(2))
        for task in ours:
            delivered(relay, acme, task["task_id"], count=10)
        delivered(relay, other, theirs["task_id"], count=2)
        pages, cursor = [], None
        while True:
            query = {"limit": 25} | ({"cursor": cursor} if cursor else {})
            answer = acme.get("/v1/deliveries", params=query)
            assert answer.status_code == 200, answer.text
            pages.append([d["delivery_id"] for d in answer.json()["items"]])
            if (cursor := answer.json()["next_cursor"]) is None:
                break
        seen = [delivery_id for page in pages for delivery_id in page]
        assert [len(page) for page in pages] == [25, 25, 10] and len(set(seen)) == 60
        assert set(seen) == {
            d for t in ours for d in relay.ctx.tasks.get(t["task_id"]).delivery_ids
        }
        died = [relay.ctx.redis.zscore(relay.ctx.deliveries.dead_key, d) for d in seen]
        assert died == sorted(died, reverse=True), "the latest to die first"
        only_theirs = other.get("/v1/deliveries").json()
        assert len(only_theirs["items"]) == 2 and only_theirs["next_cursor"] is None
        assert acme.get("/v1/deliveries", params={"limit": 500}).status_code == 400
        assert acme.get("/v1/deliveries", params={"cursor": "soon"}).status_code == 400

    admin = signed_in_client(relay)
    first = admin.get("/dashboard/dead-letters", params={"tenant": relay.tenant_id}).text
    assert first.count("<tr data-delivery=") == 50 and "(60)" in first
    older = re.search(r'<a rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert admin.get(older).text.count("<tr data-delivery=") == 10
    theirs_page = admin.get("/dashboard/dead-letters", params={"tenant": other_id}).text
    assert theirs_page.count("<tr data-delivery=") == 2 and 'rel="next"' not in theirs_page
    everyone = admin.get("/dashboard/dead-letters").text
    assert everyone.count("<tr data-delivery=") == 50 and "(62)" in everyone

    monkeypatch.setattr(context, "_current", relay.ctx)
    listed = CliRunner().invoke(deliveries_group, ["list", "--tenant", other_id])
    assert listed.exit_code == 0 and len(listed.output.splitlines()) == 2, listed.output
    paged = CliRunner().invoke(
        deliveries_group, ["list", "--tenant", relay.tenant_id, "--limit", "25"]
    )
    lines = paged.output.splitlines()
    assert len(lines) == 26 and lines[-1].startswith("more: relay deliveries list --tenant"), lines


def test_dead_letters_from_before_the_tenant_lists_are_listed_after_a_sweep(make_relay):
    """A relay upgraded from one that kept only the list of every tenant's dead letters: the retention
    sweep builds the tenants' lists once, and the API lists what died before."""
    relay = make_relay(worker=False)
    now = time.time()
    relay.ctx.redis.hset(
        relay.ctx.deliveries.key_for("dlv_before"),
        mapping={
            "delivery_id": "dlv_before",
            "tenant_id": relay.tenant_id,
            "task_id": "tsk_before",
            "kind": "webhook",
            "state": "dead",
            "attempts": 1,
            "event": "{}",
            "created_at": now - 60,
            "updated_at": now - 30,
            "last_error": "The subscriber answered 400.",
        },
    )
    relay.ctx.redis.zadd(relay.ctx.deliveries.dead_key, {"dlv_before": now - 30})
    with relay.client() as client:
        assert client.get("/v1/deliveries").json()["items"] == []
        retention.sweep(relay.ctx)
        [listed] = client.get("/v1/deliveries").json()["items"]
        assert listed["delivery_id"] == "dlv_before" and listed["state"] == "dead"
        _, other_key = relay.new_tenant("other")
        with relay.client(other_key) as other:
            assert other.get("/v1/deliveries").json()["items"] == []


def test_saved_destinations_hide_and_encrypt_their_secrets(make_relay):
    relay = make_relay(worker=False)  # answered at once: nothing runs
    config = {"channel": "C0123ABCD", "bot_token": "xoxb-123-456-secretsecret"}
    with relay.client() as client:
        created = client.post(  # no Slack to check it against: saved unchecked
            "/v1/destinations?check=false",
            json={"name": "Sales channel", "kind": "slack", "config": config},
        )
        assert created.status_code == 201
        saved = created.json()
        assert saved["config"] == {"channel": "C0123ABCD", "bot_token": "********"}
        assert (
            client.get(f"/v1/destinations/{saved['id']}").json()["config"]["bot_token"]
            == "********"
        )
        bad = client.post(
            "/v1/destinations", json={"name": "x", "kind": "slack", "config": {"channel": "nope"}}
        )
        unknown = client.post(
            "/v1/documents",
            json={
                "format": "excel",
                "prompt": "x",
                "destinations": [{"id": "dst_01ARZ3NDEKTSV4RRFFQ69G5FAV"}],
            },
        )
        assert client.delete(f"/v1/destinations/{saved['id']}").status_code == 204
    assert bad.status_code == 400 and bad.json()["error"]["field"] in (
        "config.bot_token",
        "config.channel",
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "destinations.0.id"
    raw = " ".join(
        str(v)
        for k in relay.ctx.redis.keys("*")
        if relay.ctx.redis.type(k) == "hash"
        for v in relay.ctx.redis.hgetall(k).values()
    )
    assert "secretsecret" not in raw


def test_a_saved_destination_fixed_with_patch_delivers_its_dead_letter_on_replay(relay, receiver):
    secret = "whsec_" + "c2F2ZWQtZGVzdGluYXRpb24tc2VjcmV0"
    receiver.default_status = 204
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations?check=false",  # its check would refuse it: nobody listens there
            json={
                "name": "Ops hook",
                "kind": "webhook",
                "config": {"url": "http://127.0.0.1:1/nobody-listens", "secret": secret},
            },
        ).json()
        task = relay.submit(client, prompt="x", destinations=[{"id": saved["id"]}])
        [dead] = delivered(relay, client, task["task_id"], timeout=120)
        assert dead["state"] == "dead"

        path = f"/v1/destinations/{saved['id']}"
        fixed = client.patch(
            path,
            json={
                "name": "Ops hook (fixed)",
                "config": {"url": receiver.url, "secret": "********"},
            },
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["name"] == "Ops hook (fixed)" and fixed.json()["config"] == {
            "url": receiver.url,
            "secret": "********",
        }
        assert client.get(path).json()["name"] == "Ops hook (fixed)"
        assert client.post(f"/v1/deliveries/{dead['delivery_id']}/replay").status_code == 202
        eventually(
            lambda: (
                client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"][0]["state"]
                == "delivered"
            ),
            60,
            "the replay to the fixed destination",
            every=0.1,
        )
        check, request = receiver.requests  # the PATCH's check, then the delivery
        assert check.method == "HEAD"
        Webhook(secret).verify(request.body, request.headers)  # signed with the secret it kept

        errors = {
            name: client.patch(path, json=body)
            for name, body in {
                "empty": {},
                "kind": {"kind": "slack"},
                "url": {"config": {"url": "not a url"}},
                "default": {"default": True},
            }.items()
        }
        assert {name: answer.status_code for name, answer in errors.items()} == dict.fromkeys(
            errors, 400
        )
        assert errors["url"].json()["error"]["field"] == "config.url"
        assert errors["kind"].json()["error"]["field"] == "kind"
        assert errors["default"].json()["error"]["field"] == "default"
        assert (
            client.patch(
                "/v1/destinations/dst_01ARZ3NDEKTSV4RRFFQ69G5FAV", json={"name": "x"}
            ).status_code
            == 404
        )


def test_outbound_urls_to_private_addresses_are_refused(make_relay, receiver):
    relay = make_relay(outbound_allow="")
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and "non-public address" in dead["last_error"]
    assert receiver.requests == []
