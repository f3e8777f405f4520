"""Per-destination pace (app.domain.pacing): deliveries to one Teams workflow keep under its 4 requests a
second across workers, while deliveries to other destinations go on meanwhile. The slots are what the relay
decided (on Redis's clock, or a test's), so they are checked exactly. (The fake workflow, like Teams, answers
429 past 4 requests in any second of arrival; a card goes a little after its slot, by as much as its worker
is slow, so whether it meets a 429 depends on the machine: the tests count what a 429 costs instead.)"""

from __future__ import annotations

import dataclasses

import pytest

from app.domain import deliveries, pacing
from app.work import delivering
from connectors import teams
from connectors.base import Pace, Throttled
from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually


def redis_now(ctx) -> float:
    seconds, micros = ctx.redis.time()
    return seconds + micros / 1_000_000


def test_slots_are_handed_out_a_spacing_apart_and_a_kept_one_is_used_again(make_relay):
    ctx = make_relay(worker=False).ctx
    now = redis_now(ctx)
    pace = Pace("teams:test", per_second=4.0)
    slots = [pacing.reserve(ctx, pace, now=now) for _ in range(5)]
    assert [slot.at - now for slot in slots] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0], abs=1e-6)
    assert [slot.wait for slot in slots] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0], abs=1e-6)
    kept = pacing.reserve(ctx, pace, reserved=now + 0.6, now=now + 0.1)
    assert (kept.at, kept.wait) == pytest.approx((now + 0.6, 0.5), abs=1e-6), (
        "a kept slot, used again"
    )
    just_past = pacing.reserve(ctx, pace, reserved=now - pacing.HOLD_SECONDS + 0.1, now=now)
    assert (just_past.at, just_past.wait) == pytest.approx(
        (now - pacing.HOLD_SECONDS + 0.1, 0.0), abs=1e-6
    ), "one just past: kept, at once"
    assert pacing.reserve(ctx, pace, now=now).at == pytest.approx(now + 1.25, abs=1e-6), (
        "neither took a new one"
    )
    long_past = pacing.reserve(ctx, pace, reserved=now - pacing.HOLD_SECONDS - 0.1, now=now)
    assert long_past.at == pytest.approx(now + 1.5, abs=1e-6), "one long past: the next free slot"
    assert pacing.reserve(ctx, pace, now=now + 10).at == pytest.approx(now + 10, abs=1e-6), (
        "a quiet one: at once"
    )

    burst = Pace("slack:burst", per_second=1.0, burst=3)
    assert [pacing.reserve(ctx, burst, now=now).at - now for _ in range(4)] == pytest.approx(
        [0, 0, 0, 1], abs=1e-6
    )
    assert not pacing.take_now(ctx, burst, now=now + 1.5), "the next is free at now + 2"
    assert pacing.take_now(ctx, burst, now=now + 2.001) and not pacing.take_now(
        ctx, burst, now=now + 2.001
    )
    later = now + 60.001  # the whole burst is free again
    assert [pacing.take_now(ctx, burst, now=later) for _ in range(4)] == [True, True, True, False]


def test_one_workflow_keeps_its_pace_across_workers_while_webhooks_go_on(
    make_relay, fake_teams, receiver
):
    """Two workers send twelve cards to one workflow, each request in a slot of one shared schedule, taken as
    it is sent (``env.pace``); neither waiting for a slot nor a 429 spends an attempt. Then the workflow's
    schedule is full for an hour: its cards are put off until the next free slot, taking none and holding no
    thread, spending no attempt, while the webhooks of the same task go."""
    relay = make_relay(worker=False)
    relay.start_worker()
    relay.start_worker()  # two workers share the workflow's schedule
    url = fake_teams.url(fake_teams.base)
    cards = [{"kind": "teams", "config": {"url": url, "title": f"Card {n}"}} for n in range(6)]
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Pipeline {n}", destinations=cards) for n in range(2)]
        done = [
            d
            for task in tasks
            for d in delivered(relay, client, task["task_id"], count=6, timeout=120)
        ]
        assert {d["state"] for d in done} == {"accepted"}, [
            d["last_error"] for d in done if d["last_error"]
        ]
        assert len(fake_teams.posted) == 12 and not fake_teams.knobs.throttled
        # whether the workflow met a 429 depends on how late a busy machine sends after the slot; none costs one
        assert sum(d["attempts"] for d in done) == 12, "neither a slot nor a 429 spends an attempt"

        pace = teams.pace_of(url)
        # the next free slot: in an hour
        busy = pacing.reserve(relay.ctx, pace, now=redis_now(relay.ctx) + 3600)
        hooks = [{"kind": "webhook", "config": {"url": receiver.url}} for _ in range(2)]
        task = relay.submit(client, prompt="Pipeline 2", destinations=cards[:2] + hooks)

        def waiting_and_delivered():
            found = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
            waiting = [d for d in found if d["kind"] == "teams" and d["state"] == "retrying"]
            sent = [d for d in found if d["kind"] == "webhook" and d["state"] == "delivered"]
            return (waiting, sent) if len(waiting) == 2 and len(sent) == 2 else None

        waiting, _ = eventually(
            waiting_and_delivered,
            90,
            "the webhooks delivered while the cards wait",
            show=lambda: client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"],
        )
    spacing = 1 / teams.PER_SECOND
    due = [relay.ctx.deliveries.get(d["delivery_id"]).next_attempt_at for d in waiting]
    assert due == pytest.approx([busy.at + spacing] * 2, abs=5.0), (
        "put off until the next free slot"
    )
    free = pacing.take_within(relay.ctx, pace, 0.0, now=redis_now(relay.ctx))
    assert free.at == pytest.approx(busy.at + spacing, abs=1e-6), "the waiting cards took no slot"
    assert [d["attempts"] for d in waiting] == [0, 0], "waiting for a slot spends no attempt"
    assert len(fake_teams.posted) == 12 and len(receiver.requests) == 2, (
        "the webhooks did not wait for Teams"
    )


def test_a_request_paced_as_it_is_sent_takes_only_a_near_slot(make_relay):
    """``env.pace`` takes a slot only within the hold a worker gives a delivery: past it, the delivery is put
    off until the slot (Throttled, holding none), so a busy schedule is not filled with slots nobody uses."""
    ctx = make_relay(worker=False).ctx
    now = redis_now(ctx)
    sheets = Pace("sheets:test", per_second=0.1, what="a test's 6 writes a minute")
    assert pacing.take_within(ctx, sheets, pacing.HOLD_SECONDS, now=now).wait == 0.0
    later = pacing.take_within(ctx, sheets, pacing.HOLD_SECONDS, now=now)
    assert later.at == pytest.approx(now + 10, abs=1e-6), "the next free slot, answered"
    assert pacing.take_within(ctx, sheets, 10.0, now=now).at == pytest.approx(now + 10, abs=1e-6), (
        "it was not taken: within a longer horizon it is still free"
    )
    env = delivering._environment(ctx, "dlv_test")
    fresh = Pace("sheets:fresh", per_second=0.1, what="a test's 6 writes a minute")
    env.pace(fresh)  # free now: no wait
    with pytest.raises(Throttled) as throttled:
        env.pace(fresh)
    assert throttled.value.message == "waiting for a test's 6 writes a minute"
    assert 8.0 < throttled.value.retry_after <= 10.0


def test_a_throttled_delivery_gets_its_attempt_back_until_it_is_old(make_relay, monkeypatch):
    """A throttle (a platform's 429, a pace slot far off) puts the delivery off without spending an attempt,
    as long as it is younger than RELAY_DELIVERY_THROTTLE_SECONDS; after that it costs one as any retry."""
    ctx = make_relay(worker=False).ctx
    owner = deliveries.Owner(task_id="task_throttle", tenant_id="tenant_a")
    event = {"type": "task.completed", "data": {}}
    [delivery_id] = deliveries.plan_event(
        ctx, owner, event, [{"kind": "webhook", "config": {"url": "https://example.com/h"}}]
    )
    record, _, started = deliveries.begin(ctx, delivery_id)
    assert started and record.attempts == 0
    outcome = deliveries.failed(ctx, record, 1, Throttled("429 from the test", retry_after=30))
    after = ctx.deliveries.get(delivery_id)
    assert (outcome, after.state, after.attempts) == ("throttled", "retrying", 0)
    assert after.next_attempt_at - after.updated_at == pytest.approx(30, abs=1.0)

    monkeypatch.setattr(ctx, "config", dataclasses.replace(ctx.config, delivery_throttle_seconds=0))
    outcome = deliveries.failed(ctx, after, 1, Throttled("429 from the test", retry_after=30))
    assert (outcome, ctx.deliveries.get(delivery_id).attempts) == ("retrying", 1)
