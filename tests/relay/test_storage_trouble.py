"""A read-only Redis (a replica, as after a failover) and an unreachable one: every endpoint that needs it
answers 503 with Retry-After and a message naming what happened, never a 500; /readyz says why."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from app.cli.embedded_redis import EmbeddedRedis
from app.core import storage
from app.stores import primary
from tests.relay.test_intake import TASK, signed
from tests.support.keys import redis_key
from tests.support.servers import eventually


@pytest.fixture
def own_redis():
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-trouble-")))
    server.start()
    yield server
    server.stop()


def read_only(relay, server) -> None:
    # a replica of nothing: read-only
    relay.ctx.redis.execute_command("REPLICAOF", "127.0.0.1", "9")


def unreachable(relay, server) -> None:
    server.stop()


@pytest.mark.parametrize(
    ("trouble", "reason", "words"),
    [(read_only, "read_only", "read-only replica"), (unreachable, "unreachable", "cannot reach")],
)
def test_storage_trouble_is_answered_with_503_naming_it(
    make_relay, own_redis, trouble, reason, words
):
    relay = make_relay(redis_url=own_redis.url, worker=False)
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    hook_url = (
        f"{relay.url}/webhooks/upstream/{relay.ctx.tokens.webhook(relay.tenant_id, task.task_id)}"
    )
    body = json.dumps({"type": "task.completed", "id": "evt_1", "data": TASK}).encode()
    trouble(relay, own_redis)
    with relay.client() as client:
        answers = [
            client.post("/v1/documents", json={"format": "excel", "prompt": "Q3 report"}),
            httpx.post(hook_url, content=body, headers=signed(relay.sandbox.webhook_secret, body)),
        ]
        if reason == "unreachable":  # reads need Redis too
            answers.append(client.get(f"/v1/tasks/{task.task_id}"))
    ready = httpx.get(relay.url + "/readyz")
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        error = answer.json()["error"]
        assert (error["code"], error["reason"]) == (
            "storage_unavailable",
            reason,
        ) and words in error["message"]
    assert ready.status_code == 503 and ready.json()["redis"] == reason


def test_with_min_replicas_a_write_no_replica_confirmed_is_answered_503(make_relay):
    """RELAY_REDIS_MIN_REPLICAS=1 on a server without replicas: the webhook intake and submit store, wait for
    a replica (Redis WAIT) in vain, and answer 503 naming it, so the sender tries again; the repeated webhook
    is then recognised by its id."""
    relay = make_relay(worker=False, redis_min_replicas=1, redis_replica_wait_ms=50)
    task = relay.ctx.tasks.create(relay.tenant_id, format="excel", prompt="p")
    hook_url = (
        f"{relay.url}/webhooks/upstream/{relay.ctx.tokens.webhook(relay.tenant_id, task.task_id)}"
    )
    body = json.dumps({"type": "task.completed", "id": "evt_1", "data": TASK}).encode()
    headers = signed(relay.sandbox.webhook_secret, body)
    with relay.client() as client:
        answers = [
            client.post("/v1/documents", json={"format": "excel", "prompt": "Q3 report"}),
            httpx.post(hook_url, content=body, headers=headers),
            httpx.post(hook_url, content=body, headers=headers),
        ]
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["Retry-After"], answer.text
        error = answer.json()["error"]
        assert (
            error["reason"] == "not_replicated" and "RELAY_REDIS_MIN_REPLICAS" in error["message"]
        )


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
    assert [t.task_id for t in relay.ctx.tasks.recent()] == [again.json()["task_id"]], "one task"


def test_a_fence_on_another_primary_than_the_writes_vouches_for_nothing(make_relay):
    """The writes went to one primary and the fence, after a failover, to another: their WAIT says nothing
    about those writes, so it is not replicated either (a 503), however many replicas the new one has."""
    relay = make_relay(worker=False)
    redis, fence = relay.ctx.redis, redis_key(relay.ctx, "replication-fence")
    mark = primary.primary_id(redis)
    # the same primary: 0 of 0 replicas is enough
    primary.wait_for_replicas(redis, fence, 0, 50, mark)
    with pytest.raises(storage.NotReplicated, match="primary changed"):
        primary.wait_for_replicas(redis, fence, 0, 50, "0" * 40)


def _lose_the_end(relay, monkeypatch) -> None:
    """Each task end the relay writes goes to a primary that dies before passing it on: the task store's
    finish script answers, then every key it wrote is as it was (what the promoted replica has)."""
    ctx, finish = relay.ctx, relay.ctx.tasks._finish

    def losing(keys, args):
        before = {key: ctx.redis.dump(key) for key in keys if key}
        answer = finish(keys=keys, args=args)
        for key, dumped in before.items():
            if dumped:
                ctx.redis.restore(key, 0, dumped, replace=True)
            else:
                ctx.redis.delete(key)
        return answer

    monkeypatch.setattr(ctx.tasks, "_finish", losing)


def test_a_task_end_lost_in_a_failover_plans_nothing_until_it_comes_again(
    make_relay, monkeypatch, caplog
):
    """A worker ends a task on the primary, which fails over before passing it on: the worker reads it back
    and plans no delivery of a document the new primary never heard of; the end, polled again, plans them."""
    from app.domain import tracking

    relay = make_relay(worker=False)
    task = relay.ctx.tasks.create(
        relay.tenant_id,
        format="excel",
        prompt="p",
        watch_at=time.time() + 60,
        destinations=[{"kind": "folder", "config": {"path": "out"}}],
    )
    ended = {**TASK, "task_id": "task_" + task.task_id.removeprefix("tsk_")}
    _lose_the_end(relay, monkeypatch)
    tracking.apply(relay.ctx, task.task_id, ended, source="webhook")
    lost = relay.ctx.tasks.get(task.task_id)
    assert lost.status == task.status and not lost.delivery_ids
    assert "lost with a failed-over Redis primary" in caplog.text
    assert relay.ctx.redis.zscore(relay.ctx.tasks.watch_key, task.task_id) is not None, (
        "still polled"
    )

    monkeypatch.undo()
    assert tracking.apply(relay.ctx, task.task_id, ended, source="reconciler") == "finished"
    assert len(relay.ctx.tasks.get(task.task_id).delivery_ids) == 1


def test_follow_ups_lost_after_the_end_was_stored_are_run_by_the_reconciler(
    make_relay, monkeypatch
):
    """Found by the Sentinel storm: the end reached a replica, the primary died before the deliveries' plan did,
    and nothing was left to run them (the end had taken the task off the watch list, and the webhook's entry was
    gone). The end now leaves the task watched until its follow-ups have run."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from app.domain import deliveries, reconciler, tracking

    relay = make_relay(worker=False)
    ctx = relay.ctx
    task = ctx.tasks.create(
        relay.tenant_id,
        format="excel",
        prompt="p",
        watch_at=time.time() + 60,
        destinations=[{"kind": "folder", "config": {"path": "out"}}],
    )
    ended = {**TASK, "task_id": "task_" + task.task_id.removeprefix("tsk_")}

    def primary_gone(*args, **kwargs):
        raise RedisConnectionError("the primary went")

    monkeypatch.setattr(deliveries, "plan", primary_gone)
    with pytest.raises(RedisConnectionError):
        tracking.apply(ctx, task.task_id, ended, source="webhook")
    monkeypatch.undo()
    stuck = ctx.tasks.get(task.task_id)
    assert stuck.status == "completed" and stuck.fanout == "pending" and not stuck.delivery_ids
    watched_until = ctx.redis.zscore(ctx.tasks.watch_key, task.task_id)
    assert watched_until == pytest.approx(
        stuck.finished_at + ctx.config.reconcile_quiet_seconds, abs=1e-3
    )

    assert reconciler.run(ctx, now=watched_until - 1)["repaired"] == 0, "not before the quiet time"
    assert reconciler.run(ctx, now=watched_until)["repaired"] == 1
    repaired = ctx.tasks.get(task.task_id)
    assert repaired.fanout == "done" and len(repaired.delivery_ids) == 1
    assert ctx.redis.zscore(ctx.tasks.watch_key, task.task_id) is None, "no longer watched"


def test_a_delivery_of_an_end_not_stored_waits_for_it_instead_of_dying(make_relay):
    """The same failover between a task's end and its deliveries' plan: the deliveries exist, the end does not.
    A delivery that needs the document waits (a retry), and lands once the end is stored again."""
    from app.core.states import TaskStatus
    from app.domain import deliveries
    from app.domain.serializers import task_view

    # it retries until the test lets the task end, however long
    relay = make_relay(delivery_max_attempts=50)
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Quarterly [[hold=quarterly]]",
            destinations=[{"kind": "folder", "config": {"path": "out"}}],
        )
        running = relay.ctx.tasks.get(task["task_id"])
        as_it_ended = replace(running, status=TaskStatus.COMPLETED)
        deliveries.plan(
            relay.ctx, as_it_ended, {"type": "task.completed", "data": task_view(as_it_ended)}
        )
        [delivery_id] = relay.ctx.tasks.get(task["task_id"]).delivery_ids

        def record() -> dict:
            return client.get(f"/v1/deliveries/{delivery_id}").json()

        waiting = eventually(
            lambda: record()["state"] == "retrying" and record(),
            60,
            "the delivery to wait",
            every=0.1,
            show=record,
        )
        assert "not stored yet" in waiting["last_error"]
        relay.sandbox.release("quarterly")  # the task ends, and its end is stored
        done = eventually(
            lambda: record()["state"] in ("delivered", "dead") and record(),
            120,
            "it to land",
            every=0.1,
            show=record,
        )
        assert (
            done["state"] == "delivered"
            and relay.wait_task(client, task["task_id"])["status"] == "completed"
        )
