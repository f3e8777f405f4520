"""The delivery lane (app/work/lane.py) against a real Redis: every entry runs once, an entry a dead worker
held runs after a lease, a running entry keeps its lease, and a lost entry is added again."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from app.stores import lane_stream
from app.work.lane import DeliveryLane
from tests.support.keys import redis_key
from tests.support.servers import eventually


@pytest.fixture()
def ctx(make_relay):
    return make_relay(worker=False).ctx


class FakeClock:
    """A lane's clock that moves only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def idle_for(ctx, ms: int) -> None:
    """Every entry read and not let go looks idle for ``ms``, as if its worker had been quiet that long (the
    lane's own _release does the same): no waiting for real time to pass."""
    stream = ctx.lane.key
    for pending in ctx.redis.xpending_range(stream, lane_stream.GROUP, "-", "+", 100):
        ctx.redis.xclaim(
            stream,
            lane_stream.GROUP,
            pending["consumer"],
            0,
            [pending["message_id"]],
            idle=ms,
            justid=True,
        )


def idle_ms(ctx) -> int:
    [pending] = ctx.redis.xpending_range(ctx.lane.key, lane_stream.GROUP, "-", "+", 10)
    return pending["time_since_delivered"]


def add(ctx, *delivery_ids: str) -> None:
    for delivery_id in delivery_ids:
        ctx.deliveries.to_lane(delivery_id, time.time())


class Attempts:
    """Records each attempt; ``hold`` keeps attempts running until released."""

    def __init__(
        self, hold: bool = False, fail_first: type[Exception] | None = None, seconds: float = 0.0
    ):
        self.seen: list[str] = []
        self._seconds = seconds
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._fail_first = fail_first

    def __call__(self, delivery_id: str, with_delivered=None, entry=None) -> None:
        self.seen.append(delivery_id)
        self.started.set()
        self.release.wait(60)
        time.sleep(self._seconds)
        if self._fail_first is not None:
            failure, self._fail_first = self._fail_first, None
            raise failure("Redis went away mid-attempt")


def test_every_entry_runs_once_and_leaves_the_lane(ctx):
    ids = [f"dlv_{n}" for n in range(40)]
    add(ctx, *ids)
    # all threads busy at times: draining must not stop early then
    attempts = Attempts(seconds=0.01)
    DeliveryLane(ctx, attempts, threads=4).drain()
    assert sorted(attempts.seen) == sorted(ids)
    assert ctx.lane.backlog() == 0
    assert ctx.redis.hget(redis_key(ctx, "delivery", "dlv_0"), "lane_entry"), (
        "the record knows its entry"
    )


def test_an_entry_a_dead_worker_held_runs_elsewhere_after_a_lease(ctx):
    add(ctx, "dlv_a")
    dead = Attempts(fail_first=RedisConnectionError)  # dies before it can let the entry go
    DeliveryLane(ctx, dead, consumer="dead").drain()
    assert dead.seen == ["dlv_a"] and ctx.lane.backlog() == 1
    alive = Attempts()
    DeliveryLane(ctx, alive, consumer="alive", lease_seconds=60).drain()
    assert alive.seen == [], "not while the other worker may still be running it"
    idle_for(ctx, 10**9)  # as a dead worker's entry is once a lease has gone by
    DeliveryLane(ctx, alive, consumer="alive", lease_seconds=60).drain()
    assert alive.seen == ["dlv_a"] and ctx.lane.backlog() == 0


def test_a_long_attempt_keeps_its_lease(ctx):
    """The running lane renews its entry's lease on each tick of its clock: an entry made to look idle for
    ages is fresh again after the tick, so another worker leaves it alone, however long the attempt runs."""
    add(ctx, "dlv_long")
    clock = FakeClock()
    slow = Attempts(hold=True)
    running = DeliveryLane(ctx, slow, threads=1, consumer="running", lease_seconds=60, clock=clock)
    running.start()  # its one thread busy: the reader only waits and renews
    try:
        assert slow.started.wait(60), "the attempt never started"
        other = Attempts()
        for tick in range(3):  # three leases
            idle_for(ctx, 10**9)  # as if the lease had run out
            clock.advance(60)  # past a renewal's tick
            eventually(
                lambda: idle_ms(ctx) < 60_000,
                60,
                f"the running lane's renewal after tick {tick + 1}",
                show=lambda: f"idle {idle_ms(ctx)} ms",
            )
            assert DeliveryLane(ctx, other, consumer="other", lease_seconds=60).run_once() == 0
            assert other.seen == [], "a renewed entry is not taken from its worker"
    finally:
        slow.release.set()
        running.stop()
    assert slow.seen == ["dlv_long"] and ctx.lane.backlog() == 0


def test_stopping_lets_running_attempts_finish(ctx):
    add(ctx, "dlv_stop")
    slow = Attempts(hold=True)
    running = DeliveryLane(ctx, slow)
    running.start()
    assert slow.started.wait(60), "the attempt never started"
    wait_for_fewer_than = running._wait_for_fewer_than

    def released_once_stop_waits(count: int) -> None:
        slow.release.set()  # the attempt ends only once stop() is waiting for it
        wait_for_fewer_than(count)

    running._wait_for_fewer_than = released_once_stop_waits
    running.stop()
    assert slow.seen == ["dlv_stop"] and slow.release.is_set(), (
        "stop() waited for the running attempt"
    )
    assert ctx.lane.backlog() == 0, "the attempt finished and let its entry go before stop returned"


def test_a_delivery_whose_lane_entry_was_lost_is_added_again(make_relay, receiver):
    """A crash between recording a delivery and adding it to the lane (or Redis losing the entry) leaves
    it pending with no entry; the reconciler's look at overdue deliveries adds it again, once."""
    from app.work import delivering, jobs
    from app.work.intake import IntakeLane

    relay = make_relay(worker=False, delivery_recheck_seconds=0)
    ctx = relay.ctx
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        eventually(lambda: IntakeLane(ctx).drain(), 60, "the API's webhook")
        assert ctx.lane.backlog() == 1
        [(entry_id, _)] = ctx.redis.xrange(ctx.lane.key)
        ctx.redis.xdel(ctx.lane.key, entry_id)  # lost
        assert jobs.reconcile()["deliveries_requeued"] == 1 and ctx.lane.backlog() == 1
        assert jobs.reconcile()["deliveries_requeued"] == 0, (
            "an entry waiting in the lane is left alone"
        )
        DeliveryLane(ctx, partial(delivering.attempt, ctx)).drain()
        [done] = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
    assert done["state"] == "delivered" and len(receiver.requests) == 1
    assert jobs.reconcile()["deliveries_requeued"] == 0


def test_follow_ups_planned_again_add_no_second_entry(make_relay, receiver):
    """A finish hook run again (its last write refused while Redis was full, or a poll racing the webhook)
    plans the same deliveries; the lane must not hold a second entry that another worker could run at the
    same time as the first (seen in CI as a webhook delivered twice)."""
    from app.domain import tracking
    from app.work import delivering
    from app.work.intake import IntakeLane

    relay = make_relay(worker=False)
    ctx = relay.ctx
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        eventually(lambda: IntakeLane(ctx).drain(), 60, "the API's webhook")
        tracking.run_follow_ups(ctx, task["task_id"])
        assert ctx.lane.backlog() == 1, "still one entry for the one delivery"
        DeliveryLane(ctx, partial(delivering.attempt, ctx)).drain()
        tracking.run_follow_ups(ctx, task["task_id"])
        assert ctx.lane.backlog() == 0, "a delivered delivery is not queued again"
    assert len(receiver.requests) == 1


def test_a_delivery_whose_every_attempt_ended_its_worker_goes_to_the_dead_letters(ctx):
    """A delivery found `delivering` has lost its worker mid-attempt; after the last allowed attempt it is
    not tried again (it would take down worker after worker), but dead-lettered for a replay."""
    from app.work import delivering

    ctx.redis.hset(
        redis_key(ctx, "delivery", "dlv_poison"),
        mapping={
            "delivery_id": "dlv_poison",
            "tenant_id": "ten_x",
            "task_id": "tsk_x",
            "kind": "webhook",
            "state": "delivering",
            "attempts": ctx.config.delivery_max_attempts,
            "event": "{}",
            "created_at": time.time(),
            "updated_at": time.time(),
        },
    )
    assert delivering.attempt(ctx, "dlv_poison") == "dead"
    record = ctx.deliveries.get("dlv_poison")
    assert record.state == "dead" and "stopped during each of" in record.last_error
    for tenant_id in (None, "ten_x"):
        found, _ = ctx.deliveries.dead_page(tenant_id, None, 10)
        assert [d.delivery_id for d in found] == ["dlv_poison"]


def test_a_hook_delivery_reads_its_subscription_with_its_record_and_a_removed_one_is_dead(
    make_relay, receiver
):
    """A lane entry names the hook it goes to, so the attempt reads the subscription with the record; an RQ
    retry (no entry) reads it apart. Either way, a subscription removed after the delivery was planned
    ends it in the dead letters with the reason."""
    from app.work import delivering
    from app.work.intake import IntakeLane

    relay = make_relay(worker=False)
    ctx = relay.ctx
    with relay.client() as client:
        kept = client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
        ).json()
        removed = client.post(
            "/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"}
        ).json()
        task = relay.submit(client, prompt="x")
        eventually(lambda: IntakeLane(ctx).drain(), 60, "the API's webhook")
        entries = [fields for _, fields in ctx.redis.xrange(ctx.lane.key)]
        assert sorted(e["hook_id"] for e in entries) == sorted([kept["id"], removed["id"]])
        assert all(e["tenant_id"] == relay.tenant_id for e in entries)
        assert client.delete(f"/v1/hooks/{removed['id']}").status_code == 204
        DeliveryLane(ctx, partial(delivering.attempt, ctx)).drain()
        states = {
            d["delivery_id"]: d
            for d in client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
        }
    by_hook = {ctx.deliveries.get(i).hook_id: d for i, d in states.items()}
    assert by_hook[kept["id"]]["state"] == "delivered" and len(receiver.requests) == 1
    assert by_hook[removed["id"]]["state"] == "dead"
    assert by_hook[removed["id"]]["last_error"] == "the hook subscription was removed"
    retry = next(i for i, d in states.items() if d["state"] == "delivered")
    ctx.deliveries.update(retry, state="retrying")  # as an RQ retry finds it: no lane entry
    assert delivering.attempt(ctx, retry) == "delivered" and len(receiver.requests) == 2


def test_a_retry_whose_job_a_dead_worker_popped_or_redis_never_got_is_planned_again(
    make_relay, fake_teams
):
    """Found by the SIGKILL chaos test: a delivery waiting for its destination's pace is an RQ job named for its
    slot (or, paced as its request is sent, for its throttle). A worker killed right after popping it left
    the job 'queued' in no queue; the reconciler looked for
    the job by another name, and then could not put the delivery back in the lane (the lane takes only a
    delivery never attempted), so it waited for ever. The job's name is kept on the delivery now."""
    from rq.job import Job

    from app.domain import pacing
    from app.stores import queues
    from app.work import delivering, jobs
    from app.work.intake import IntakeLane
    from connectors import teams

    relay = make_relay(worker=False, delivery_recheck_seconds=0)
    ctx, url = relay.ctx, fake_teams.url(fake_teams.base)
    seconds, micros = ctx.redis.time()
    pace = teams.pace_of(url)
    # the workflow's next free slot: in an hour
    pacing.reserve(ctx, pace, now=seconds + micros / 1e6 + 3600)
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="x",
            destinations=[{"kind": "teams", "config": {"url": url, "title": "Pipeline"}}],
        )
        eventually(lambda: IntakeLane(ctx).drain(), 60, "the API's webhook")
        DeliveryLane(ctx, partial(delivering.attempt, ctx)).drain()
        [waiting] = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
    delivery_id, queue = waiting["delivery_id"], ctx.queues.get(queues.DELIVER)
    record = ctx.deliveries.get(delivery_id)
    assert record.state == "retrying" and "-throttled-" in record.retry_job, record
    assert record.attempts == 0, "waiting for its pace spends no attempt"
    job = Job.fetch(record.retry_job, connection=ctx.rq_redis)
    # as the reconciler finds it, overdue
    ctx.redis.zadd(ctx.deliveries.open_key, {delivery_id: 0})

    # released by RQ's scheduler, popped by a worker that died
    queue.scheduled_job_registry.remove(job)
    job.set_status("queued")
    assert jobs.reconcile()["deliveries_requeued"] == 1 and queue.job_ids == [job.id]
    assert jobs.reconcile()["deliveries_requeued"] == 0, "a job waiting in its queue is left alone"

    # the retry's job never reached Redis (a crash between naming it and enqueueing it)
    queue.remove(job.id)
    job.delete()
    assert jobs.reconcile()["deliveries_requeued"] == 1
    planned = ctx.deliveries.get(delivery_id).retry_job
    assert planned.endswith("-recovered") and planned in queue.scheduled_job_registry.get_job_ids()
    assert ctx.deliveries.get(delivery_id).state == "retrying" and fake_teams.posted == []
