"""The safety net's polling (app.domain.polling): rare for a quiet task, sooner once it is overdue, and all
of a tenant's polls, the reconciler's and the refreshes for someone watching, within a share of the
API's rate limit."""

from __future__ import annotations

import itertools

import pytest

from app.core.states import TaskStatus
from app.domain import polling, reconciler, tracking
from app.stores.tasks import Task

TWENTY_MINUTES = 1200.0


def an_excel_task(relay) -> Task:
    return Task("tsk_1", relay.tenant_id, TaskStatus.RUNNING, 0.0, 0.0, format="excel")


def polls_for(relay, task: Task, seconds: float) -> list[float]:
    """When the reconciler would poll a task that stays quiet for ``seconds`` (from its first quiet check)."""
    at, polls, times = relay.config.reconcile_quiet_seconds, 0, []
    while at < seconds:
        times.append(at)
        at += polling.next_delay(relay.ctx, task, polls, now=task.created_at + at)
        polls += 1
    return times


def test_a_quiet_task_is_polled_rarely_and_an_overdue_one_sooner(make_relay):
    relay = make_relay(
        worker=False,
        reconcile_quiet_seconds=120,
        poll_first_seconds=3,
        poll_cap_seconds=300,
        poll_overdue_seconds=30,
    )
    task = an_excel_task(relay)
    quiet = polls_for(relay, task, TWENTY_MINUTES)
    gaps = [later - earlier for earlier, later in itertools.pairwise(quiet)]
    assert gaps[:4] == [3, 6, 12, 24] and max(gaps) == 300 and len(quiet) <= 12, quiet
    # the tenant's excel tasks usually take 5 minutes: past 7.5, a lost webhook is likelier than more work
    relay.ctx.redis.hset(relay.ctx.tenants.key_for(relay.tenant_id), "usual_ms:excel", 300_000)
    overdue = polls_for(relay, task, TWENTY_MINUTES)
    late = [later - earlier for earlier, later in itertools.pairwise(overdue) if earlier > 450]
    assert late and max(late) <= 30 and len(overdue) > len(quiet)


def redis_now(ctx) -> float:
    seconds, micros = ctx.redis.time()
    return seconds + micros / 1_000_000


def test_a_completed_task_teaches_how_long_its_kind_usually_takes(make_relay):
    # the reconciler's look, made here, ends the task: no worker needed
    relay = make_relay(worker=False)
    with relay.client() as client:
        task_id = relay.submit(client, prompt="Sales")["task_id"]
        upstream_id = relay.ctx.tasks.get(task_id).upstream_task_id
        with relay.sandbox.client() as api:
            relay.sandbox.wait_task(api, upstream_id)
        relay.ctx.tasks.watch(task_id, 0)
        assert reconciler.run(relay.ctx)["finished"] == 1
        view = client.get(f"/v1/tasks/{task_id}").json()
    usual = polling.usual_seconds(relay.ctx, an_excel_task(relay))
    assert (
        view["status"] == "completed"
        and usual is not None
        and abs(usual * 1000 - view["duration_ms"]) <= 1
    )


def test_the_reconciler_keeps_a_tenants_polls_within_its_budget(make_relay, make_sandbox):
    # a budget of 10% of 60 calls a minute: 6 polls a minute, one every 10 s; the reconciler runs here, on the
    # test's clock (no worker: the submits hand the tasks to the API themselves)
    relay = make_relay(
        sandbox=make_sandbox(task_seconds=600), worker=False, upstream_rate_limit_per_minute=60
    )
    with relay.client() as client:
        tasks = [relay.submit(client, prompt=f"Long {n}")["task_id"] for n in range(8)]
    assert all(relay.ctx.tasks.get(t).upstream_task_id for t in tasks), "every task is at the API"
    for task_id in tasks:
        relay.ctx.tasks.watch(task_id, 0)
    t0 = redis_now(relay.ctx)
    counts = reconciler.run(relay.ctx, now=t0)
    assert counts["polled"] == 1 and counts["deferred"] == 7, counts
    kept = [relay.ctx.tasks.get(t).poll_slot for t in tasks]
    slots = sorted(slot for slot in kept if slot)
    assert slots == pytest.approx([t0 + 10 * n for n in range(1, 8)], abs=1e-6), (
        "one every 10 s, each kept"
    )
    early = reconciler.run(relay.ctx, now=t0 + 9.9)
    assert early["polled"] == 0, f"a deferred poll waits for its slot: {early}"
    due = reconciler.run(relay.ctx, now=t0 + 10.1)
    assert due["polled"] == 1 and due["deferred"] == 0, f"and takes it when it comes: {due}"


def test_a_refresh_for_someone_watching_stays_within_the_budget(make_relay, make_sandbox):
    relay = make_relay(
        sandbox=make_sandbox(task_seconds=600), worker=False, upstream_rate_limit_per_minute=60
    )
    with relay.client() as client:
        task_id = relay.submit(client, prompt="Long")["task_id"]
    t0 = redis_now(relay.ctx)

    def refreshed_at(now: float) -> float:
        tracking.refresh(relay.ctx, relay.ctx.tasks.get(task_id), min_age_seconds=0, now=now)
        return relay.ctx.tasks.get(task_id).last_polled_at or 0.0

    assert refreshed_at(t0) == t0, "asked"
    assert refreshed_at(t0 + 5) == t0, "the next slot is 10 s away: shown as known, not asked"
    assert refreshed_at(t0 + 10.01) == t0 + 10.01, "asked again once the budget has a slot"
