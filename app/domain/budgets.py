"""Credit budgets per calendar month (UTC, from a chosen start day), for a tenant and per record.

- **Spent** is read from the daily usage rows (app.stores.usage) from the month's start day to today, so it
  survives task retention. A task's credits count when it ends, on the day it ends: a task already running
  when a budget runs out is never cut off, and what it costs counts in the month it ends.
- **Alerts**: each share of a budget (70%, 90% and 100% by default) reached in a month sends one
  ``budget.threshold`` event, to the hooks subscribed to it and to the budget's alert destinations (Slack,
  email, Teams, webhooks), checked after every task that cost credits.
- **Hard cap**: past a capped budget, a submit (a single one, a batch, a batch's row, a Slack command) is
  refused with BudgetExceeded (402 ``budget_exceeded`` at the API) until the month resets."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from app.core.errors import OverBudget
from app.core.ids import digest, new_id
from app.domain import deliveries
from app.stores.budgets import BudgetStore
from app.stores.events import iso
from app.stores.tasks import Task
from app.stores.usage import number


class Needs(deliveries.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    budgets: BudgetStore


DEFAULT_SHARES = (0.7, 0.9, 1.0)
ALERT_KINDS = ("slack", "email", "teams", "webhook")
"""Where a budget's alerts can go: where people read, and webhooks."""
_ALERT_LIFE = 70 * 86_400  # an alert's once-a-month mark outlives its month

clock: Callable[[], float] = time.time
"""Where budgets read the time, for today's date (the month) and an alert's stamp: a test pins it to see a
month's edge, or the day a task ended, whatever the day it runs on."""


@dataclass(frozen=True)
class Period:
    start: date
    resets: date

    @property
    def resets_at(self) -> str:
        return iso(
            datetime(self.resets.year, self.resets.month, self.resets.day, tzinfo=UTC).timestamp()
        )


class BudgetExceeded(OverBudget):
    """Which budget, what was spent, when it resets: in the message and, for programs, in ``budget``."""

    def __init__(self, budget: dict):
        who = f"record {budget['record_key']}" if budget["record_key"] else "this tenant"
        super().__init__(
            "budget_exceeded",
            f"The monthly budget of {budget['monthly_credits']:g} credits for {who} is spent "
            f"({budget['spent']:g} credits since {budget['period']['from']}); it resets at "
            f"{budget['period']['resets_at']}.",
            field="budget",
            budget={
                "scope": budget["scope"],
                "record_key": budget["record_key"],
                "monthly_credits": budget["monthly_credits"],
                "spent": budget["spent"],
                "resets_at": budget["period"]["resets_at"],
            },
        )


def period(start_day: int, today: date) -> Period:
    """The budget month holding ``today``: from its start day (1-28) to the next month's."""
    start = date(today.year, today.month, start_day)
    if today < start:
        start = _add_month(start, -1)
    return Period(start, _add_month(start, 1))


def _add_month(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def today_utc() -> date:
    return datetime.fromtimestamp(clock(), UTC).date()


def view(ctx: Needs, tenant_id: str, budget: dict, today: date | None = None) -> dict[str, Any]:
    """The budget with where it stands this month: spent, share, what is left, when it resets."""
    today = today or today_utc()
    month = period(int(budget.get("start_day") or 1), today)
    spent = number(ctx.usage.spent(tenant_id, month.start, today, budget["record_key"]))
    limit = float(budget["monthly_credits"])
    return {
        "scope": "record" if budget["record_key"] else "tenant",
        "record_key": budget["record_key"],
        "monthly_credits": number(limit),
        "start_day": int(budget.get("start_day") or 1),
        "alert_shares": list(budget.get("alert_shares") or DEFAULT_SHARES),
        "hard_cap": bool(budget.get("hard_cap")),
        "alert_destinations": budget.get("alert_destinations") or [],
        "period": {"from": month.start.isoformat(), "resets_at": month.resets_at},
        "spent": spent,
        "share_spent": round(spent / limit, 4) if limit else 0.0,
        "remaining": number(max(0.0, limit - spent)),
        "exceeded": spent >= limit,
    }


def check(ctx: Needs, tenant_id: str, record_key: str | None, today: date | None = None) -> None:
    """Raise BudgetExceeded when a capped budget that applies (the tenant's, the record's) is spent."""
    for budget in ctx.budgets.applying(tenant_id, record_key):
        if budget.get("hard_cap"):
            current = view(ctx, tenant_id, budget, today)
            if current["exceeded"]:
                raise BudgetExceeded(current)


def after_task(ctx: Needs, task: Task, today: date | None = None) -> list[dict]:
    """The alerts a task's credits set off (each share once a month per budget): the events sent."""
    if not task.credits_used:
        return []
    sent = []
    for budget in ctx.budgets.applying(task.tenant_id, task.record_key):
        current = view(ctx, task.tenant_id, budget, today)
        reached = [share for share in current["alert_shares"] if current["share_spent"] >= share]
        for share in reached:
            if ctx.budgets.alert_once(
                task.tenant_id,
                budget["record_key"],
                current["period"]["from"],
                share,
                _ALERT_LIFE,
            ):
                sent.append(_alert(ctx, task.tenant_id, current, share))
    return sent


def _alert(ctx: Needs, tenant_id: str, budget: dict, share: float) -> dict:
    who = f"Record {budget['record_key']}" if budget["record_key"] else "This tenant"
    summary = (
        f"{who} has spent {budget['spent']:g} of its {budget['monthly_credits']:g} monthly credits "
        f"({share:.0%} reached) since {budget['period']['from']}; the budget resets at "
        f"{budget['period']['resets_at']}."
        + (" Past 100% new submits are refused." if budget["hard_cap"] else "")
    )
    event = {
        "id": new_id("evt"),
        "type": "budget.threshold",
        "created_at": iso(clock()),
        "data": {**budget, "share": share, "summary": summary},
    }
    owner = deliveries.Owner(
        "bgt_"
        + digest(
            f"{tenant_id}:{budget['record_key']}:{budget['period']['from']}:{share:g}", 26
        ).upper(),
        tenant_id,
    )
    deliveries.plan_event(ctx, owner, event, budget["alert_destinations"])
    return event
