"""A Zap, end to end: the generated app's own JavaScript runs in Zapier's runtime (zapier-platform-core)
against the live relay over real HTTP: auth test, dropdowns, REST hook subscribe, a create that waits for
its callback, performResume, the hook delivery, the polling trigger, search, unsubscribe."""

from __future__ import annotations

import json

import httpx
import pytest

import schemas
from tests.connectors.zapier_support import ZapierRuntime
from tests.support import tools
from tests.support.servers import ServedApp, WebhookReceiver, eventually

GENERATE = "creates.generate_document.operation"
CONTINUE = "creates.continue_document.operation"
COMPLETED = "triggers.document_completed.operation"
POLLING = "triggers.document_completed_polling.operation.perform"


@pytest.fixture
def callbacks():
    """Stands in for Zapier's callback endpoint: records what the relay POSTs to the callback URL."""
    receiver = WebhookReceiver(default_status=200)
    served = ServedApp(receiver).start()
    receiver.url = served.url + "/hooks/callback/"  # type: ignore[attr-defined]
    yield receiver
    served.stop()


@pytest.fixture
def zap(relay, zapier_modules, tmp_path):
    definition = httpx.get(relay.url + "/connectors/zapier/app.json").json()
    runtime = ZapierRuntime(definition, zapier_modules, tmp_path)
    runtime.definition = definition  # type: ignore[attr-defined]
    runtime.auth = {"api_key": relay.api_key}  # type: ignore[attr-defined]
    yield runtime
    runtime.close()


def _fields(zap, path: str) -> dict[str, str]:
    group, key = path.split(".")[:2]
    return {f["key"]: f["type"] for f in zap.definition[group][key]["operation"]["outputFields"]}


def _assert_matches_output_fields(item: dict, fields: dict[str, str], relay_url: str) -> None:
    assert set(item) == set(fields)
    for key, kind in fields.items():
        value = item[key]
        if value is None:
            continue
        expected = {"integer": int, "number": (int, float), "boolean": bool}.get(kind, str)
        assert isinstance(value, expected), (key, value)
        if kind == "file":
            assert value.startswith(relay_url + "/files/"), (key, value)


def _finish(zap, callbacks, count: int, accepted: dict) -> dict:
    """Wait for the callback that resumes the Zap, then run performResume on it like Zapier does."""
    body = json.loads(callbacks.wait_for(count, timeout=60)[count - 1].body)
    schemas.validate("relay/task.json", body)
    assert body["task_id"] == accepted["task_id"]
    return zap.results(
        f"{GENERATE}.performResume",
        {"authData": zap.auth, "outputData": accepted, "cleanedRequest": body},
    )


def test_a_zap_runs_end_to_end(relay, zap, receiver, callbacks):
    auth = zap.auth
    assert zap.results("authentication.test", {"authData": auth})["name"] == "acme"
    bad = zap.run("authentication.test", {"authData": {"api_key": "rly_wrong"}})
    assert "not valid" in bad["error"]["message"]

    formats = zap.results(
        "triggers.list_formats.operation.perform", {"authData": auth, "inputData": {}}
    )
    assert {"id": "excel", "label": "Excel workbook (.xlsx)"} in formats
    relay.client().post(
        "/v1/destinations",
        json={"name": "Reports", "kind": "folder", "config": {"path": "reports"}},
    ).raise_for_status()
    [destination] = zap.results(
        "triggers.list_destinations.operation.perform", {"authData": auth, "inputData": {}}
    )
    assert destination["name"] == "Reports (folder)"

    sample = zap.run(
        f"{GENERATE}.perform",
        {
            "authData": auth,
            "meta": {"isLoadingSample": True},
            "inputData": {"format": "excel", "prompt": "sample"},
        },
        callbacks.url,
    )
    assert (
        sample["results"] == zap.definition["creates"]["generate_document"]["operation"]["sample"]
    )
    assert sample["status"] != "CALLBACK" and relay.client().get("/v1/events").json()["items"] == []

    invalid = zap.run(
        f"{GENERATE}.perform",
        {"authData": auth, "inputData": {"format": "excel", "prompt": " "}},
        callbacks.url,
    )
    assert "(field: prompt)" in invalid["error"]["message"]

    subscription = zap.results(
        f"{COMPLETED}.performSubscribe", {"authData": auth, "targetUrl": receiver.url}
    )
    assert subscription["id"].startswith("hook_")

    inputs = {
        "format": "excel",
        "prompt": "Q3 forecast for Acme",
        "record_key": "crm:deal:7",
        "destinations": [destination["id"]],
    }
    answer = zap.run(f"{GENERATE}.perform", {"authData": auth, "inputData": inputs}, callbacks.url)
    assert answer["status"] == "CALLBACK", answer  # the Zap waits for the relay's callback
    accepted = answer["results"]
    first = _finish(zap, callbacks, 1, accepted)
    _assert_matches_output_fields(first, _fields(zap, GENERATE), relay.url)
    assert (
        first["id"] == accepted["task_id"] and first["status"] == "completed" and first["summary"]
    )
    download = httpx.get(first["file"], follow_redirects=True)
    assert download.status_code == 200 and download.content[:2] == b"PK"  # the .xlsx itself

    [delivery] = receiver.wait_for(1)
    event = json.loads(delivery.body)
    schemas.validate("relay/event.json", event)
    [triggered] = zap.results(f"{COMPLETED}.perform", {"authData": auth, "cleanedRequest": event})
    _assert_matches_output_fields(triggered, _fields(zap, COMPLETED), relay.url)
    assert triggered["id"] == event["id"] and triggered["task_id"] == first["task_id"]
    listed = zap.results(f"{COMPLETED}.performList", {"authData": auth})
    assert [item["id"] for item in listed] == [event["id"]]

    again = zap.run(
        f"{CONTINUE}.perform",
        {
            "authData": auth,
            "inputData": {
                "record_key": "crm:deal:7",
                "prompt": "Add a scenario with 10% churn",
                "format": "excel",
            },
        },
        callbacks.url,
    )
    second = _finish(zap, callbacks, 2, again["results"])
    # same document
    assert second["run_id"] == first["run_id"] and second["turn_index"] > first["turn_index"]

    [found] = zap.results(
        "searches.find_document.operation.perform",
        {"authData": auth, "inputData": {"record_key": "crm:deal:7"}},
    )
    _assert_matches_output_fields(found, _fields(zap, "searches.find_document"), relay.url)
    assert found["run_id"] == first["run_id"] and found["task_id"] == second["task_id"]
    assert (
        zap.results(
            "searches.find_document.operation.perform",
            {"authData": auth, "inputData": {"record_key": "crm:deal:unknown"}},
        )
        == []
    )

    first_poll = zap.results(POLLING, {"authData": auth, "inputData": {}})
    # newest first
    assert [item["task_id"] for item in first_poll] == [
        second["task_id"],
        first["task_id"],
    ]

    zap.results(
        f"{COMPLETED}.performUnsubscribe", {"authData": auth, "subscribeData": subscription}
    )
    assert relay.client().get("/v1/hooks").json()["items"] == []

    third = relay.submit(relay.client(), prompt="Board deck numbers", record_key="crm:deal:8")
    relay.wait_task(relay.client(), third["task_id"])
    eventually(
        lambda: relay.ctx.tasks.get(third["task_id"]).fanout == "done",
        60,
        "the third task's follow-ups to be planned",
    )
    # no subscription left
    assert relay.client().get(f"/v1/tasks/{third['task_id']}").json()["deliveries"] == []
    second_poll = zap.results(POLLING, {"authData": auth, "inputData": {}})
    ids = [item["id"] for item in second_poll]
    assert len(ids) == len(set(ids)) == 3
    assert second_poll[0]["task_id"] == third["task_id"] and ids[1:] == [
        item["id"] for item in first_poll
    ]


def test_a_hook_target_answering_410_is_removed(relay, zap, receiver):
    receiver.default_status = 410  # Zapier answers 410 once the Zap is turned off
    zap.results(f"{COMPLETED}.performSubscribe", {"authData": zap.auth, "targetUrl": receiver.url})
    task = relay.submit(relay.client(), prompt="Pipeline report")
    relay.wait_task(relay.client(), task["task_id"])
    receiver.wait_for(1)
    eventually(
        lambda: relay.client().get("/v1/hooks").json()["items"] == [], 60, "the hook to be removed"
    )


def test_the_connection_test_names_a_destination_that_fails_its_check(relay, zap, receiver):
    """Zapier's connection test is the check of the tenant's set-up: the key, and every saved destination
    (POST /v1/destinations/checks); one that fails is named with what failed and the fix."""
    with relay.client() as client:
        client.post(
            "/v1/destinations",
            json={"name": "Ops", "kind": "webhook", "config": {"url": receiver.url}},
        ).raise_for_status()
        passed = zap.results("authentication.test", {"authData": zap.auth})
        client.post(
            "/v1/destinations?check=false",
            json={"name": "Gone", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/h"}},
        ).raise_for_status()
    failed = zap.run("authentication.test", {"authData": zap.auth})
    assert passed == {"name": "acme", "destinations": 1, "verdict": "pass"}
    error = json.loads(failed["error"]["message"])  # z.errors.Error's message, code and status
    assert (error["code"], error["status"]) == ("destination_check_failed", 400)
    message = error["message"]
    assert message.startswith("A saved destination fails its check: Gone (webhook): ")
    assert "could not be reached" in message and "Check the URL" in message and "Ops" not in message


def test_export_document_returns_a_pdf_file(relay, zap, callbacks):
    tools.require("soffice")
    task = relay.submit(
        relay.client(), prompt="Quarterly summary", record_key="crm:deal:9", format="word"
    )
    relay.wait_task(relay.client(), task["task_id"])
    exported = zap.results(
        "creates.export_document.operation.perform",
        {"authData": zap.auth, "inputData": {"record_key": "crm:deal:9", "format": "pdf"}},
    )
    assert exported["task_id"] == task["task_id"] and exported["format"] == "pdf"
    pdf = httpx.get(exported["file"], follow_redirects=True)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


def test_export_errors_name_the_field(make_relay):
    relay = make_relay(worker=False)
    with relay.client() as client:
        neither = client.post("/v1/exports", json={"format": "pdf"})
        assert neither.status_code == 400
        assert neither.json()["error"]["message"] == "body needs one of: record_key, task_id"
        unknown = client.post("/v1/exports", json={"record_key": "crm:none", "format": "pdf"})
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "record_key"
        bad_format = client.post("/v1/exports", json={"record_key": "crm:none", "format": "exe"})
        assert bad_format.status_code == 400 and bad_format.json()["error"]["field"] == "format"


def test_generate_documents_for_rows_waits_for_the_batch_and_brings_its_manifest(
    relay, zap, callbacks
):
    action = "creates.generate_documents_for_rows.operation"
    rows = [
        {"record_key": f"crm:deal:{n}", "prompt": f"Renewal memo for Client {n}"} for n in (1, 2, 3)
    ]
    answer = zap.run(
        f"{action}.perform",
        {"authData": zap.auth, "inputData": {"format": "word", "rows": rows, "skip_done": "false"}},
        callbacks.url,
    )
    assert answer["status"] == "CALLBACK", answer  # the Zap waits for the end of the batch
    accepted = answer["results"]
    [delivery] = callbacks.wait_for(1, timeout=90)
    body = json.loads(delivery.body)
    schemas.validate("relay/batch-completed.json", body)
    done = zap.results(
        f"{action}.performResume",
        {"authData": zap.auth, "outputData": accepted, "cleanedRequest": body},
    )
    _assert_matches_output_fields(
        done, _fields(zap, "creates.generate_documents_for_rows"), relay.url
    )
    assert done["batch_id"] == accepted["batch_id"] and (done["total"], done["completed"]) == (3, 3)
    assert "3 of 3 documents made" in done["summary"]
    # a byte-order mark first, for Excel
    manifest = httpx.get(done["manifest"]).content.decode("utf-8-sig").splitlines()
    assert manifest[0].startswith("row,record_key,status") and len(manifest) == 4
    missing = zap.run(
        f"{action}.perform",
        {
            "authData": zap.auth,
            "inputData": {"format": "word", "rows": [{"record_key": "crm:deal:4", "prompt": " "}]},
        },
        callbacks.url,
    )
    assert "(field: rows.0.prompt)" in missing["error"]["message"]


def test_cancel_task_a_spent_budget_and_the_budget_trigger_in_zapiers_runtime(
    relay, zap, receiver, callbacks
):
    auth = zap.auth
    # running until cancelled
    long = relay.submit(relay.client(), prompt="A long model [[hold=long]]")
    cancelled = zap.results(
        "creates.cancel_task.operation.perform",
        {"authData": auth, "inputData": {"task_id": long["task_id"]}},
    )
    _assert_matches_output_fields(cancelled, _fields(zap, "creates.cancel_task"), relay.url)
    assert cancelled["task_id"] == long["task_id"]
    assert relay.wait_task(relay.client(), long["task_id"])["status"] == "cancelled"
    again = zap.run(
        "creates.cancel_task.operation.perform",
        {"authData": auth, "inputData": {"task_id": long["task_id"]}},
    )
    assert (
        "has ended (cancelled)" in again["error"]["message"]
        and "(field: task_id)" in again["error"]["message"]
    )

    trigger = "triggers.budget_threshold.operation"
    subscription = zap.results(
        f"{trigger}.performSubscribe", {"authData": auth, "targetUrl": receiver.url}
    )
    assert relay.client().get("/v1/hooks").json()["items"][0]["event"] == "budget.threshold"
    relay.client().put(
        "/v1/budgets/tenant", json={"monthly_credits": 10, "hard_cap": True}
    ).raise_for_status()
    # 40 of 10
    relay.wait_task(relay.client(), relay.submit(relay.client(), prompt="Memo")["task_id"])
    [listed] = zap.results(f"{trigger}.performList", {"authData": auth})
    assert (listed["scope"], listed["spent"], listed["hard_cap"]) == ("tenant", 40, True)
    events = [json.loads(r.body) for r in receiver.wait_for(3)]  # 70%, 90%, 100% at once
    [alert] = zap.results(f"{trigger}.perform", {"authData": auth, "cleanedRequest": events[0]})
    assert (
        set(alert) == set(_fields(zap, "triggers.budget_threshold"))
        and "monthly credits" in alert["summary"]
    )

    refused = zap.run(
        f"{GENERATE}.perform",
        {"authData": auth, "inputData": {"format": "excel", "prompt": "More"}},
        callbacks.url,
    )
    assert (
        "The monthly budget of 10 credits for this tenant is spent" in refused["error"]["message"]
    )
    assert "(field: budget)" in refused["error"]["message"]
    zap.results(f"{trigger}.performUnsubscribe", {"authData": auth, "subscribeData": subscription})
