"""Per-destination pace (app.domain.pacing): deliveries to one Teams workflow keep under its 4 requests a
second across workers, while deliveries to other destinations go on meanwhile."""

from __future__ import annotations

import itertools

from app.domain import pacing
from connectors.base import Pace
from tests.relay.test_deliveries import delivered


def test_slots_are_handed_out_a_spacing_apart_and_a_kept_one_is_used_again(relay):
    pace = Pace("teams:test", per_second=4.0)
    waits = [pacing.reserve(relay.ctx, pace) for _ in range(5)]
    assert waits[0] < 0.05 and all(0.2 < later - earlier < 0.3 for earlier, later in itertools.pairwise(waits))
    assert abs(pacing.reserve(relay.ctx, pace, reserved=1e12 + 1) - pacing.reserve(relay.ctx, pace, 1e12 + 1)) < 0.05
    burst = Pace("slack:burst", per_second=1.0, burst=3)
    assert [round(pacing.reserve(relay.ctx, burst)) for _ in range(4)] == [0, 0, 0, 1]


def test_one_workflow_keeps_its_pace_while_webhooks_go_on(make_relay, fake_teams, receiver):
    relay = make_relay(worker=False)
    relay.start_worker()
    relay.start_worker()  # two workers share the workflow's schedule
    url = fake_teams.url(fake_teams.base)
    cards = [{"kind": "teams", "config": {"url": url, "title": f"Card {n}"}} for n in range(8)]
    hooks = [{"kind": "webhook", "config": {"url": receiver.url}} for _ in range(2)]
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Pipeline {n}", destinations=cards + hooks) for n in range(2)]
        done = [d for task in tasks for d in delivered(relay, client, task["task_id"], count=10, timeout=90)]
    assert {d["state"] for d in done} == {"delivered"}, [d["last_error"] for d in done if d["last_error"]]
    sent = sorted(fake_teams.posted_at)
    assert len(sent) == 16 and (len(sent) - 1) / (sent[-1] - sent[0]) <= 4.4, "4 a second on average, or fewer"
    assert sum(d["attempts"] for d in done if d["kind"] == "teams") < 16 + 4, "waiting for a slot costs no attempt"
    assert max(r.received_at for r in receiver.requests) < sent[-1], "the webhooks did not wait for Teams"
