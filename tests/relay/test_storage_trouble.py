"""A read-only Redis (a replica, as after a failover) and an unreachable one: every endpoint that needs it
answers 503 with Retry-After and a message naming what happened, never a 500; /readyz says why."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import pytest

from app.cli.embedded_redis import EmbeddedRedis
from app.core import storage
from tests.relay.test_intake import TASK, signed


@pytest.fixture
def own_redis():
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-trouble-")))
    server.start()
    yield server
    server.stop()


def read_only(relay, server) -> None:
    relay.ctx.redis.execute_command("REPLICAOF", "127.0.0.1", "9")  # a replica of nothing: read-only


def unreachable(relay, server) -> None:
    server.stop()


@pytest.mark.parametrize(("trouble", "reason", "words"), [(read_only, "read_only", "read-only replica"),
                                                          (unreachable, "unreachable", "cannot reach")])
def test_storage_trouble_is_answered_with_503_naming_it(make_relay, own_redis, trouble, reason, words):
    relay = make_relay(redis_url=own_redis.url, worker=False)
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    hook_url = f"{relay.url}/webhooks/upstream/{relay.ctx.tokens.webhook(relay.tenant_id, task['task_id'])}"
    body = json.dumps({"type": "task.completed", "id": "evt_1", "data": TASK}).encode()
    trouble(relay, own_redis)
    with relay.client() as client:
        answers = [client.post("/v1/documents", json={"format": "excel", "prompt": "Q3 report"}),
                   httpx.post(hook_url, content=body, headers=signed(relay.sandbox.webhook_secret, body))]
        if reason == "unreachable":  # reads need Redis too
            answers.append(client.get(f"/v1/tasks/{task['task_id']}"))
    ready = httpx.get(relay.url + "/readyz")
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        error = answer.json()["error"]
        assert (error["code"], error["reason"]) == ("storage_unavailable", reason) and words in error["message"]
    assert ready.status_code == 503 and ready.json()["redis"] == reason


def test_with_min_replicas_a_write_no_replica_confirmed_is_answered_503(make_relay):
    """RELAY_REDIS_MIN_REPLICAS=1 on a server without replicas: the webhook intake and submit store, wait for
    a replica (Redis WAIT) in vain, and answer 503 naming it, so the sender tries again; the repeated webhook
    is then recognised by its id."""
    relay = make_relay(worker=False, redis_min_replicas=1, redis_replica_wait_ms=50)
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    hook_url = f"{relay.url}/webhooks/upstream/{relay.ctx.tokens.webhook(relay.tenant_id, task['task_id'])}"
    body = json.dumps({"type": "task.completed", "id": "evt_1", "data": TASK}).encode()
    headers = signed(relay.sandbox.webhook_secret, body)
    with relay.client() as client:
        answers = [client.post("/v1/documents", json={"format": "excel", "prompt": "Q3 report"}),
                   httpx.post(hook_url, content=body, headers=headers), httpx.post(hook_url, content=body,
                                                                                  headers=headers)]
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        error = answer.json()["error"]
        assert error["reason"] == "not_replicated" and "RELAY_REDIS_MIN_REPLICAS" in error["message"]


def test_a_retry_of_an_unconfirmed_submit_with_its_key_gets_the_first_task_not_a_second(make_relay):
    """A submit answered 503 not_replicated was done on the primary: its Idempotency-Key keeps that answer, so
    the sender's retry gets the same task instead of making another (had the primary gone, the key would
    have gone with it, and the retry would run the submit)."""
    relay = make_relay(worker=False, redis_min_replicas=1, redis_replica_wait_ms=50)
    body, key = {"format": "excel", "prompt": "Q3 report"}, {"Idempotency-Key": "q3-report-1"}
    with relay.client() as client:
        first = client.post("/v1/documents", json=body, headers=key)
        again = client.post("/v1/documents", json=body, headers=key)
    assert first.status_code == 503 and first.json()["error"]["reason"] == "not_replicated"
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert [t["task_id"] for t in relay.ctx.tasks.recent()] == [again.json()["task_id"]], "one task"


def test_a_fence_on_another_primary_than_the_writes_vouches_for_nothing(make_relay):
    """The writes went to one primary and the fence, after a failover, to another: their WAIT says nothing
    about those writes, so it is not replicated either (a 503), however many replicas the new one has."""
    relay = make_relay(worker=False)
    redis, fence = relay.ctx.redis, relay.ctx.key("replication-fence")
    mark = storage.primary_id(redis)
    storage.wait_for_replicas(redis, fence, 0, 50, mark)  # the same primary: 0 of 0 replicas is enough
    with pytest.raises(storage.NotReplicated, match="primary changed"):
        storage.wait_for_replicas(redis, fence, 0, 50, "0" * 40)
