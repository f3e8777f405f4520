"""The safety net's polling (app.domain.polling): rare for a quiet task, sooner once it is overdue, and all
of a tenant's polls, the reconciler's and the refreshes for someone watching, within a share of the
API's rate limit."""

from __future__ import annotations

import itertools
import signal

from app.domain import polling, tracking
from app.work import jobs
from tests.support.servers import eventually

TWENTY_MINUTES = 1200.0


def polls_for(relay, task: dict, seconds: float) -> list[float]:
    """When the reconciler would poll a task that stays quiet for ``seconds`` (from its first quiet check)."""
    at, polls, times = relay.config.reconcile_quiet_seconds, 0, []
    while at < seconds:
        times.append(at)
        at += polling.next_delay(relay.ctx, task, polls, now=float(task["created_at"]) + at)
        polls += 1
    return times


def test_a_quiet_task_is_polled_rarely_and_an_overdue_one_sooner(make_relay):
    relay = make_relay(worker=False, reconcile_quiet_seconds=120, poll_first_seconds=3, poll_cap_seconds=300,
                       poll_overdue_seconds=30)
    task = {"task_id": "tsk_1", "tenant_id": relay.tenant_id, "format": "excel", "created_at": 0.0}
    quiet = polls_for(relay, task, TWENTY_MINUTES)
    gaps = [later - earlier for earlier, later in itertools.pairwise(quiet)]
    assert gaps[:4] == [3, 6, 12, 24] and max(gaps) == 300 and len(quiet) <= 12, quiet
    # the tenant's excel tasks usually take 5 minutes: past 7.5, a lost webhook is likelier than more work
    relay.ctx.redis.hset(relay.ctx.tenants.key_for(relay.tenant_id), "usual_ms:excel", 300_000)
    overdue = polls_for(relay, task, TWENTY_MINUTES)
    late = [later - earlier for earlier, later in itertools.pairwise(overdue) if earlier > 450]
    assert late and max(late) <= 30 and len(overdue) > len(quiet)


def test_a_completed_task_teaches_how_long_its_kind_usually_takes(relay):
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales")
        eventually(lambda: client.get(f"/v1/tasks/{task['task_id']}").json()["status"] == "completed", 30,
                   "the task to complete")
        view = client.get(f"/v1/tasks/{task['task_id']}").json()
    usual = polling.usual_seconds(relay.ctx, {"tenant_id": relay.tenant_id, "format": "excel"})
    assert usual is not None and abs(usual * 1000 - view["duration_ms"]) <= 1


def test_the_reconciler_keeps_a_tenants_polls_within_its_budget(make_relay, make_sandbox):
    # a budget of 10% of 60 calls a minute: 6 polls a minute, one every 10 s
    relay = make_relay(sandbox=make_sandbox(task_seconds=600), worker=False, upstream_rate_limit_per_minute=60)
    worker = relay.start_worker()
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Long {n}")["task_id"] for n in range(8)]
        eventually(lambda: all(relay.ctx.tasks.get(t).get("upstream_task_id") for t in tasks), 60,
                   "every task to reach the API")
    worker.send_signal(signal.SIGTERM)  # from here on, only this test runs the reconciler
    worker.wait(timeout=30)
    for task_id in tasks:
        relay.ctx.tasks.watch(task_id, 0)
    counts = jobs._reconcile(relay.ctx)
    assert counts["polled"] == 1 and counts["deferred"] == 7, counts
    kept = [relay.ctx.tasks.get(t).get("poll_slot") for t in tasks]
    slots = sorted(float(slot) for slot in kept if slot)
    assert len(slots) == 7 and all(9.5 < b - a < 10.5 for a, b in itertools.pairwise(slots)), slots
    assert jobs._reconcile(relay.ctx)["polled"] == 0, "a deferred poll waits for its slot"


def test_a_refresh_for_someone_watching_stays_within_the_budget(make_relay, make_sandbox):
    relay = make_relay(sandbox=make_sandbox(task_seconds=600), upstream_rate_limit_per_minute=60)
    with relay.client() as client:
        task_id = relay.submit(client, prompt="Long")["task_id"]
    eventually(lambda: relay.ctx.tasks.get(task_id).get("upstream_task_id"), 60, "the task to reach the API")
    tracking.refresh(relay.ctx, relay.ctx.tasks.get(task_id), min_age_seconds=0)
    first = relay.ctx.tasks.get(task_id).get("last_polled_at")
    tracking.refresh(relay.ctx, relay.ctx.tasks.get(task_id), min_age_seconds=0)  # the next slot is 10 s away
    assert first and relay.ctx.tasks.get(task_id).get("last_polled_at") == first, "shown as known, not asked"
