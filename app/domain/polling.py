"""When the relay asks the API about a running task: rarely, sooner for a reason, and within a budget.

Webhooks are the main path; polling is the safety net for one that was lost. The contract's own advice
(2-5 s, then at most 10 s apart) suits a client that has nothing else: for the relay it came to about 115
calls for a 20-minute task, and 100 long tasks spent the API's whole rate limit on polling. So:

- **Rarely.** After ``RELAY_RECONCILE_QUIET_SECONDS`` of silence the gaps double from
  ``RELAY_POLL_FIRST_SECONDS`` up to ``RELAY_POLL_CAP_SECONDS`` (5 minutes): ~10 calls for 20 minutes.
- **Sooner for a reason.** A task that has run longer than its kind usually takes for this tenant (the
  average of the last ones, kept per format when tasks complete) should have sent its webhook by now: it is
  polled at least every ``RELAY_POLL_OVERDUE_SECONDS``. A task someone watches (its page, the dashboard, a
  Slack progress line) is refreshed as they look, which the reconciler then need not do.
- **Within a budget.** All of a tenant's polls, the reconciler's and the refreshes, share
  ``RELAY_POLL_BUDGET_SHARE`` (10%) of the API's rate limit (``RELAY_UPSTREAM_RATE_LIMIT_PER_MINUTE``):
  a GCRA schedule in Redis (app.domain.pacing). A reconciler's poll past the budget waits for its slot; a
  refresh past it shows what the relay knows."""

from __future__ import annotations

import time
from typing import Protocol

from app.core.config import RelayConfig
from app.domain import pacing
from app.stores.tasks import Task, TaskStore
from app.stores.tenants import TenantStore
from connectors.base import Pace


class Needs(pacing.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig
    tenants: TenantStore
    tasks: TaskStore


OVERDUE_FACTOR = 1.5
"""A task is overdue once it has run this many times its kind's usual duration."""


def budget(ctx: Needs, tenant_id: str) -> Pace:
    config = ctx.config
    per_minute = max(1.0, config.poll_budget_share * config.upstream_rate_limit_per_minute)
    return Pace(
        f"polls:{tenant_id}", per_second=per_minute / 60.0, burst=max(1, int(per_minute // 6))
    )


def next_delay(ctx: Needs, task: Task, polls: int, now: float | None = None) -> float:
    """Seconds until the reconciler asks again about a running task it has polled ``polls`` times."""
    config, now = ctx.config, time.time() if now is None else now
    delay = min(config.poll_first_seconds * 2 ** min(polls, 20), config.poll_cap_seconds)
    usual = usual_seconds(ctx, task)
    if usual is not None and now - task.created_at > usual * OVERDUE_FACTOR:
        delay = min(delay, config.poll_overdue_seconds)
    return delay


def usual_seconds(ctx: Needs, task: Task) -> float | None:
    """How long this tenant's tasks of this format usually take (None before one has completed)."""
    usual_ms = ctx.tenants.usual_ms(task.tenant_id, task.format or "")
    return usual_ms / 1000 if usual_ms is not None else None


def wait_for_budget(ctx: Needs, task: Task, now: float | None = None) -> float:
    """The reconciler's turn in the tenant's budget: 0 to poll now, else seconds until its slot, which is
    kept on the task (``poll_slot``, Redis's clock) and used when it comes due again. ``now``: a test's clock
    (the slots then are on it too)."""
    kept = task.poll_slot
    slot = pacing.reserve(ctx, budget(ctx, task.tenant_id), kept, now=now)
    if slot.wait > 1.0:
        ctx.tasks.set(task.task_id, poll_slot=slot.at)
    elif kept is not None:
        ctx.tasks.set(task.task_id, poll_slot=None)
    return slot.wait if slot.wait > 1.0 else 0.0


def may_refresh(ctx: Needs, task: Task, now: float | None = None) -> bool:
    """A refresh for someone watching polls only when the tenant's budget has a slot free now."""
    return pacing.take_now(ctx, budget(ctx, task.tenant_id), now=now)
