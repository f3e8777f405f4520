"""What the operator's dashboard shows, across tenants: tasks with progress, deliveries, the dead-letter
list, records, hook subscriptions and tenants. Plain data; secrets are never part of it."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Protocol

from app.core.states import TASK_ENDED
from app.domain import (
    batch_rows,
    batches,
    budgets,
    deliveries,
    links,
    listing,
    tracking,
    usage_report,
)
from app.domain.serializers import task_view
from app.stores import usage
from app.stores.events import iso
from app.stores.tasks import Task


class Needs(batches.Needs, listing.Needs, usage_report.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""


def tasks(ctx: Needs, limit: int = 50) -> list[dict]:
    """The newest tasks; running ones with progress fresh from the API (at most every 2 s each)."""
    return _shown(ctx, ctx.tasks.recent(limit))


def task_page(
    ctx: Needs,
    tenant_id: str | None,
    wanted: listing.TaskFilter,
    cursor: float | None,
    limit: int = 50,
) -> tuple[list[dict], float | None]:
    """A page of tasks matching ``wanted``, one tenant's or every tenant's (all they keep), newest first."""
    found, next_cursor = listing.tasks(ctx, tenant_id, wanted, cursor, limit)
    return _shown(ctx, found), next_cursor


def _shown(ctx: Needs, found: list[Task]) -> list[dict]:
    names = _tenant_names(ctx)
    fresh = [task if task.status in TASK_ENDED else tracking.refresh(ctx, task) for task in found]
    return [
        {
            **task_view(task, deliveries.for_task(ctx, task)),
            "tenant": names.get(task.tenant_id, "?"),
            "tenant_id": task.tenant_id,
        }
        for task in fresh
    ]


def task(ctx: Needs, task_id: str) -> dict | None:
    found = ctx.tasks.get(task_id)
    if found is None:
        return None
    return {
        **task_view(found, deliveries.for_task(ctx, found)),
        "tenant": _tenant_names(ctx).get(found.tenant_id, "?"),
        "prompt": found.prompt,
    }


_LINK_SECONDS = 3600
"""How long the dashboard's signed links to a batch's manifest and ZIP work."""


def batches_list(ctx: Needs, limit: int = 50) -> list[dict]:
    """The newest batches of every tenant, with their progress."""
    names = _tenant_names(ctx)
    return [
        {
            **batch_rows.view(batch),
            "tenant": names.get(batch.tenant_id, "?"),
            "created": iso(batch.created_at),
        }
        for batch in ctx.batches.recent(limit)
    ]


def batch(
    ctx: Needs, batch_id: str, state: str | None, cursor: int, limit: int = 100
) -> dict | None:
    """One batch: its progress, its end's deliveries, and a page of its rows (in ``state``, after ``cursor``)."""
    found = ctx.batches.get(batch_id)
    if found is None:
        return None
    rows, next_cursor = batches.page(ctx, found, state, cursor, limit)
    return {
        **batch_rows.view(found),
        "tenant": _tenant_names(ctx).get(found.tenant_id, "?"),
        "created": iso(found.created_at),
        "template": found.settings.get("prompt_template") or "",
        "deliveries": deliveries.for_batch(ctx, found),
        "rows": rows,
        "next_cursor": next_cursor,
        "manifest_url": links.files_url(ctx, {"b": batch_id, "l": _LINK_SECONDS}),
        "zip_url": links.files_url(ctx, {"b": batch_id, "l": _LINK_SECONDS, "z": 1}),
    }


def dead_letters(
    ctx: Needs, tenant_id: str | None, cursor: float | None, limit: int = 50
) -> tuple[list[dict], float | None]:
    """A page of the dead letters, one tenant's or every tenant's, the latest to die first; and the next
    page's cursor."""
    names = _tenant_names(ctx)
    found, next_cursor = ctx.deliveries.dead_page(tenant_id, cursor, limit)
    return [
        {**deliveries.view(d), "task_id": d.task_id, "tenant": names.get(d.tenant_id, "?")}
        for d in found
    ], next_cursor


def records(ctx: Needs, limit: int = 200) -> list[dict]:
    """Records seen in recent tasks, newest first; a record's count includes its running tasks among them
    (its own counts only finished ones)."""
    names, seen, found, recent = _tenant_names(ctx), set(), [], ctx.tasks.recent(limit)
    running_of = Counter((t.tenant_id, t.record_key) for t in recent if t.status not in TASK_ENDED)
    for task in recent:
        key = (task.tenant_id, task.record_key)
        if not key[1] or key in seen:
            continue
        seen.add(key)
        record = ctx.records.get(*key)
        if record:
            running = running_of[key]
            found.append(
                {
                    "tenant": names.get(key[0], "?"),
                    "record_key": key[1],
                    "runs": record.runs,
                    "task_count": record.task_count + running,
                    "running": running,
                    "credits_used": usage.number(record.credits_used),
                    "updated_at": iso(record.updated_at),
                }
            )
    return found


def hooks(ctx: Needs) -> list[dict]:
    return [
        {
            "id": hook.id,
            "target_url": hook.target_url,
            "event": hook.event,
            "created_at": iso(hook.created_at),
            "tenant": tenant.name,
        }
        for tenant in ctx.tenants.list()
        for hook in ctx.hooks.list(tenant.tenant_id)
    ]


def destinations(ctx: Needs) -> list[dict]:
    """Every tenant's saved destinations and write-back connections, for the dashboard (no config: it may
    hold secrets, and a check shows what matters of it)."""
    return [
        {
            "id": saved.id,
            "name": saved.name,
            "kind": saved.kind,
            "created_at": iso(saved.created_at),
            "tenant": tenant.name,
            "tenant_id": tenant.tenant_id,
        }
        for tenant in ctx.tenants.list()
        for saved in ctx.destinations.list(tenant.tenant_id)
    ]


def tenants(ctx: Needs) -> list[dict]:
    return [
        {
            "tenant_id": t.tenant_id,
            "name": t.name,
            "upstream_url": t.upstream_url,
            "created_at": iso(t.created_at),
            **ctx.tenants.usage(t.tenant_id),
        }
        for t in ctx.tenants.list()
    ]


def _tenant_names(ctx: Needs) -> dict[str, str]:
    return {t.tenant_id: t.name for t in ctx.tenants.list()}


# -- spend ------------------------------------------------------------------------------------------------


def usage_overview(ctx: Needs, days: int = 30, today: date | None = None) -> dict:
    """Every tenant's last ``days`` days, for the charts: credits per tenant, tasks by outcome, generation time
    p50 and p95, deliveries per kind; and each tenant's month against its budget."""
    last = today or budgets.today_utc()
    first = last - timedelta(days=days - 1)
    dates = [(first + timedelta(days=n)).isoformat() for n in range(days)]
    credits: dict[str, list] = {}
    outcomes: dict[str, list[int]] = {}
    kinds: dict[str, dict[str, int]] = {}
    histograms = [[0] * (len(usage.SECONDS_BOUNDS) + 1) for _ in dates]
    tenants_rows = []
    for tenant in ctx.tenants.list():
        series = usage_report.daily_series(ctx, tenant.tenant_id, first, last)
        credits[tenant.name] = [day["credits_used"] for day in series]
        for n, day in enumerate(series):
            for outcome, count in day["outcomes"].items():
                outcomes.setdefault(outcome, [0] * days)[n] += count
            histograms[n] = [a + b for a, b in zip(histograms[n], day["histogram"], strict=True)]
            for kind, counted in day["deliveries"].items():
                totals = kinds.setdefault(kind, {"delivered": 0, "dead": 0})
                totals["delivered"] += counted["delivered"]
                totals["dead"] += counted["dead"]
        budget = ctx.budgets.get(tenant.tenant_id, None)
        tenants_rows.append(
            {
                "tenant_id": tenant.tenant_id,
                "name": tenant.name,
                "credits": usage.number(sum(credits[tenant.name])),
                "budget": budgets.view(ctx, tenant.tenant_id, budget, last) if budget else None,
            }
        )
    return {
        "dates": dates,
        "credits": credits,
        "outcomes": outcomes,
        "p50": [usage_report.percentile(h, 0.5) for h in histograms],
        "p95": [usage_report.percentile(h, 0.95) for h in histograms],
        "deliveries": dict(sorted(kinds.items())),
        "tenants": tenants_rows,
    }


def tenant_usage(
    ctx: Needs, tenant_id: str, days: int = 30, today: date | None = None
) -> dict | None:
    """One tenant's last ``days`` days: credits per day and format, its records by credits, and each budget."""
    tenant = ctx.tenants.get(tenant_id)
    if tenant is None:
        return None
    last = today or budgets.today_utc()
    first = last - timedelta(days=days - 1)
    rows = ctx.usage.raw(tenant_id, first, last)
    by_record = usage_report.report(ctx, tenant_id, first, last, "record", rows=rows)
    by_format: dict[str, list[float]] = {}
    for n, (_, row) in enumerate(rows):
        for fmt, counted in usage_report.format_parts(row):
            by_format.setdefault(fmt, [0.0] * days)[n] = counted["credits_used"]
    record_budgets = {b["record_key"]: b for b in ctx.budgets.all(tenant_id) if b["record_key"]}
    records = [
        {
            **item,
            "budget": budgets.view(ctx, tenant_id, record_budgets[item["record"]], last)
            if item["record"] in record_budgets
            else None,
        }
        for item in by_record["items"]
    ]
    seen = {item["record"] for item in records}
    records += [
        {
            "record": key,
            "credits_used": 0,
            "task_count": 0,
            "duration_ms": 0,
            "budget": budgets.view(ctx, tenant_id, budget, last),
        }
        for key, budget in record_budgets.items()
        if key not in seen
    ]
    tenant_budget = ctx.budgets.get(tenant_id, None)
    return {
        "tenant_id": tenant_id,
        "name": tenant.name,
        "totals": by_record["totals"],
        "dates": [(first + timedelta(days=n)).isoformat() for n in range(days)],
        "by_format": by_format,
        "records": records,
        "budget": budgets.view(ctx, tenant_id, tenant_budget, last) if tenant_budget else None,
    }
