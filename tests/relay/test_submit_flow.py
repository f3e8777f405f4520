"""The heart of the product over real HTTP: submit -> the API's signed webhook -> a finished task,
records that resume their document, idempotency, outages, duplicates and lost webhooks."""

from __future__ import annotations

import io
from urllib.parse import quote

import httpx
from openpyxl import load_workbook
from rq.registry import ScheduledJobRegistry

from app.stores import queues
from tests.support.servers import eventually

DAY = 86_400


def sheets(task: dict) -> list[str]:
    return load_workbook(io.BytesIO(httpx.get(task["result"]["download_url"]).content)).sheetnames


def test_submit_answers_at_once_and_the_webhook_completes_the_task(relay):
    with relay.client() as client:
        accepted = client.post(
            "/v1/documents",
            json={
                "format": "excel",
                "prompt": "Q3 sales by region",
                "record_key": "hubspot:deal:42",
            },
        )
        assert accepted.status_code == 202
        body = accepted.json()
        assert set(body) == {"task_id", "run_id", "record_key", "status", "run_restarted", "links"}
        assert body["status"] == "queued" and body["run_id"].startswith("run_")
        assert body["links"]["record"].endswith("/v1/records/hubspot%3Adeal%3A42")
        task = relay.wait_task(client, body["task_id"])
    assert task["status"] == "completed" and task["progress"] == 100
    assert task["result"]["summary"].startswith("Built a workbook")
    assert task["deliveries"] == []
    assert sheets(task) == ["Q3 Sales Region"]


def test_same_record_resumes_the_same_document(relay):
    with relay.client() as client:
        first = relay.wait_task(
            client, relay.submit(client, prompt="Q3 sales report", record_key="crm:7")["task_id"]
        )
        second = relay.wait_task(
            client,
            relay.submit(client, prompt="Now add a forecast for FY26", record_key="crm:7")[
                "task_id"
            ],
        )
        record = client.get("/v1/records/crm%3A7").json()
        me = client.get("/v1/me").json()
    assert second["run_id"] == first["run_id"]
    assert sheets(second) == [*sheets(first), "Forecast FY26"]
    assert [t["task_id"] for t in record["tasks"]] == [second["task_id"], first["task_id"]]
    assert record["latest_result"]["task_id"] == second["task_id"]
    assert record["runs"] == {"excel": first["run_id"]}
    total = first["credits_used"] + second["credits_used"]
    assert record["usage"] == {
        "credits_used": total,
        "task_count": 2,
        "duration_ms": first["duration_ms"] + second["duration_ms"],
    }
    assert me["usage"]["credits_used"] == total and me["usage"]["task_count"] == 2


def test_a_record_keeps_one_document_per_format_and_can_be_forgotten(relay):
    with relay.client() as client:
        sheet = relay.wait_task(
            client, relay.submit(client, prompt="Budget", record_key="deal:1")["task_id"]
        )
        memo = relay.wait_task(
            client,
            relay.submit(client, format="word", prompt="Memo", record_key="deal:1")["task_id"],
        )
        assert client.get("/v1/records/deal%3A1").json()["runs"] == {
            "excel": sheet["run_id"],
            "word": memo["run_id"],
        }
        assert client.delete("/v1/records/deal%3A1").status_code == 204
        assert client.get("/v1/records/deal%3A1").status_code == 404
        fresh = relay.wait_task(
            client, relay.submit(client, prompt="Budget again", record_key="deal:1")["task_id"]
        )
        fresh_start = relay.wait_task(
            client,
            relay.submit(client, prompt="Another", record_key="deal:1", resume=False)["task_id"],
        )
    assert fresh["run_id"] != sheet["run_id"] and fresh_start["run_id"] != fresh["run_id"]


def test_record_keys_with_slashes_and_colons_travel_percent_encoded(relay):
    key = "airtable:appX/tblY/recZ"
    with relay.client() as client:
        relay.wait_task(
            client, relay.submit(client, prompt="Row report", record_key=key)["task_id"]
        )
        record = client.get("/v1/records/" + quote(key, safe=""))
    assert record.status_code == 200 and record.json()["record_key"] == key


def test_expired_run_starts_a_new_one_and_remaps_the_record(relay):
    with relay.client() as client:
        first = relay.wait_task(
            client, relay.submit(client, prompt="Sales", record_key="deal:9")["task_id"]
        )
        relay.sandbox.advance(31 * DAY)
        accepted = relay.submit(client, prompt="Add a forecast", record_key="deal:9")
        assert accepted["run_restarted"] is True and accepted["run_id"] != first["run_id"]
        second = relay.wait_task(client, accepted["task_id"])
        record = client.get("/v1/records/deal%3A9").json()
    assert second["run_restarted"] is True and sheets(second) == ["Forecast"]
    assert record["run_id"] == record["runs"]["excel"] == accepted["run_id"]


def test_wait_answers_with_the_finished_task(relay):
    with relay.client() as client:
        response = client.post(
            "/v1/documents", json={"format": "word", "prompt": "Memo", "wait": 25}
        )
    assert response.status_code == 200, f"not finished within the request's wait: {response.json()}"
    assert response.json()["status"] == "completed" and response.json()["result"]["download_url"]


def test_wait_that_runs_out_answers_202(make_relay):
    relay = make_relay(worker=False)  # the answer comes from the web process alone
    with relay.client() as client:
        response = client.post(
            "/v1/documents", json={"format": "excel", "prompt": "Big [[hold=big]]", "wait": 1}
        )
    relay.sandbox.release("big")
    assert response.status_code == 202 and response.json()["status"] in ("queued", "running")


def test_idempotency_key_returns_the_first_answer_and_starts_nothing(make_relay):
    relay = make_relay(worker=False)  # only the answers and the API's runs are looked at
    body = {"format": "excel", "prompt": "Once only"}
    with relay.client() as client:
        first = client.post("/v1/documents", json=body, headers={"Idempotency-Key": "abc-1"})
        second = client.post("/v1/documents", json=body, headers={"Idempotency-Key": "abc-1"})
        other_body = client.post(
            "/v1/documents", json={**body, "prompt": "Else"}, headers={"Idempotency-Key": "abc-1"}
        )
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"
    assert (
        other_body.status_code == 422 and other_body.json()["error"]["field"] == "Idempotency-Key"
    )
    with relay.sandbox.client() as upstream:
        assert len(upstream.get("/runs").json()["items"]) == 1


def test_an_idempotency_key_replays_a_submit_with_an_inline_webhook(make_relay):
    """An inline webhook without a secret is given one; the key's fingerprint is the body as received, so
    the Zapier or Make retry of the same request gets the first answer, not 422."""
    relay = make_relay(worker=False)
    body = {
        "format": "excel",
        "prompt": "Once only",
        "destinations": [{"kind": "webhook", "config": {"url": "https://example.com/hook"}}],
    }
    with relay.client() as client:
        first = client.post("/v1/documents", json=body, headers={"Idempotency-Key": "zap-1"})
        second = client.post("/v1/documents", json=body, headers={"Idempotency-Key": "zap-1"})
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"


def test_each_webhook_delivered_three_times_makes_one_event(make_sandbox, make_relay):
    relay = make_relay(make_sandbox(webhook_copies=3))
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Report {i}")["task_id"] for i in range(3)]
        for task_id in tasks:
            relay.wait_task(client, task_id)
        webhooks = relay.sandbox.runtime.webhooks
        eventually(
            lambda: all(d["attempts"] == "1" for d in webhooks.deliveries()),
            60,
            "every copy of every webhook answered",
            show=webhooks.deliveries,
        )
        events = client.get("/v1/events").json()["items"]
        me = client.get("/v1/me").json()
    assert sorted(e["data"]["task_id"] for e in events) == sorted(tasks)
    assert me["usage"]["task_count"] == 3


def test_lost_webhooks_are_made_good_by_the_reconciler(make_sandbox, make_relay):
    # every webhook lost for good
    sandbox = make_sandbox(webhook_drop_rate=1.0, webhook_retry_schedule=())
    relay = make_relay(sandbox, reconcile_quiet_seconds=1)
    relay.start_scheduler()
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Report {i}")["task_id"] for i in range(4)]
        finished = [relay.wait_task(client, task_id, timeout=120) for task_id in tasks]
        events = client.get("/v1/events").json()["items"]
    assert all(t["status"] == "completed" for t in finished)
    assert sorted(e["data"]["task_id"] for e in events) == sorted(tasks), (
        "exactly one event per task"
    )
    assert all(d["status"] == "failed" for d in sandbox.runtime.webhooks.deliveries())


def test_api_down_during_submit_completes_after_it_returns(make_sandbox, make_relay):
    sandbox = make_sandbox()
    relay = make_relay(sandbox)
    served = next(s for s in _served(sandbox))
    served.stop()
    with relay.client() as client:
        accepted = relay.submit(client, prompt="While down", record_key="deal:outage")
        assert accepted["status"] == "pending_submit" and accepted["run_id"] is None
        assert client.get(f"/v1/tasks/{accepted['task_id']}").json()["status"] == "pending_submit"
        served.start()
        task = relay.wait_task(client, accepted["task_id"], timeout=120)
        record = client.get("/v1/records/deal%3Aoutage").json()
    assert task["status"] == "completed" and record["run_id"] == task["run_id"]


def test_a_background_submit_a_worker_lost_is_queued_again_by_the_reconciler(
    make_sandbox, make_relay
):
    sandbox = make_sandbox()
    relay = make_relay(sandbox, worker=False, reconcile_quiet_seconds=1)
    served = next(s for s in _served(sandbox))
    served.stop()
    with relay.client() as client:
        accepted = relay.submit(client, prompt="Lost between Redis and a worker")
        assert accepted["status"] == "pending_submit"
        # what a worker that popped the retry (BLPOP) and died before running it leaves: `queued`, in no queue
        job_id = f"submit-{accepted['task_id']}"
        ScheduledJobRegistry(queue=relay.ctx.queues.get(queues.SUBMIT)).remove(job_id)
        relay.ctx.rq_redis.hset(f"rq:job:{job_id}", "status", "queued")
        served.start()
        relay.start_worker()
        relay.start_scheduler()
        task = relay.wait_task(client, accepted["task_id"], timeout=120)
    assert task["status"] == "completed"
    with sandbox.client() as api:
        assert len(api.get("/runs").json()["items"]) == 1, "handed over once"


def test_upstream_refusal_fails_the_task_with_the_apis_reason(make_relay):
    relay = make_relay(worker=False)  # refused within the submit itself
    _, api_key = relay.new_tenant("misconfigured", upstream_key="ovt_test_wrong")
    with relay.client(api_key) as client:
        accepted = client.post("/v1/documents", json={"format": "excel", "prompt": "x"})
        task = client.get(f"/v1/tasks/{accepted.json()['task_id']}").json()
    assert accepted.status_code == 200 and task["status"] == "failed"
    assert task["error"]["code"] == "upstream_rejected" and task["error"]["status"] == 401


def test_failed_generation_is_reported(relay):
    with relay.client() as client:
        task = relay.wait_task(client, relay.submit(client, prompt="Sales [[fail]]")["task_id"])
        failures = client.get("/v1/events", params={"type": "task.failed"}).json()["items"]
        completions = client.get("/v1/events", params={"type": "task.completed"}).json()["items"]
    assert task["status"] == "failed" and task["error"]["code"] == "agent_error"
    assert [e["data"]["task_id"] for e in failures] == [task["task_id"]] and completions == []


def test_events_are_newest_first_with_stable_ids(relay):
    with relay.client() as client:
        tasks = [
            relay.wait_task(client, relay.submit(client, prompt=f"R{i}")["task_id"])
            for i in range(3)
        ]
        first_poll = client.get("/v1/events", params={"limit": 2}).json()["items"]
        second_poll = client.get("/v1/events").json()["items"]
    assert [e["data"]["task_id"] for e in second_poll] == [t["task_id"] for t in reversed(tasks)]
    assert [e["id"] for e in first_poll] == [e["id"] for e in second_poll[:2]]


def _served(sandbox):
    """The ServedApp behind a sandbox handle (to stop and restart it on the same port)."""
    import gc

    from tests.support.servers import ServedApp

    return [o for o in gc.get_objects() if isinstance(o, ServedApp) and o.app is sandbox.app]


def test_a_task_redis_lost_while_the_api_took_it_is_stored_again(relay, monkeypatch):
    """A failover with RELAY_REDIS_MIN_REPLICAS=0 can lose a task created just before the primary died,
    while the API is already running its job: recording the hand-over must not leave a task with no status
    (seen in CI as a 500 on POST /v1/documents), but store the task again."""
    from app.core.upstream import UpstreamClient

    real = UpstreamClient.generate

    def generate_then_lose_the_task(self, *args, **kwargs):
        submitted = real(self, *args, **kwargs)
        for key in relay.ctx.redis.scan_iter(relay.ctx.tasks.key_for("*")):
            relay.ctx.redis.delete(key)  # what the new primary never had
        return submitted

    monkeypatch.setattr(UpstreamClient, "generate", generate_then_lose_the_task)
    with relay.client() as client:
        task = relay.submit(client, prompt="Lost in a failover")
        done = relay.wait_task(client, task["task_id"])
    assert done["status"] == "completed"
    assert relay.ctx.tasks.get(task["task_id"]).prompt == "Lost in a failover", (
        "stored again, whole"
    )


def test_a_key_held_by_a_request_that_died_frees_itself_within_minutes(make_relay):
    relay = make_relay(worker=False)
    from app.stores.idempotency import PENDING_SECONDS, StoredAnswer, fingerprint

    store, print_ = relay.ctx.idempotency, fingerprint({"prompt": "x"})
    # held; its request never ends
    assert store.begin(relay.tenant_id, "died-mid-request", print_) is None
    key = next(relay.ctx.redis.scan_iter(f"{relay.ctx.config.key_prefix}idem:{relay.tenant_id}:*"))
    assert 0 < relay.ctx.redis.ttl(key) <= PENDING_SECONDS, "not the key's 24 hours"
    store.finish(
        relay.tenant_id, "died-mid-request", print_, StoredAnswer(202, {"task_id": "tsk_x"})
    )
    assert relay.ctx.redis.ttl(key) > PENDING_SECONDS, "an answer is kept the key's whole life"
