"""What the operator's dashboard shows, across tenants: tasks with progress, deliveries, the dead-letter
list, records, hook subscriptions and tenants. Plain data; secrets are never part of it."""

from __future__ import annotations

from app.domain import batch_rows, batches, deliveries, tracking
from app.domain.serializers import task_view
from app.stores.context import Context
from app.stores.events import iso
from app.stores.tasks import TERMINAL


def tasks(ctx: Context, limit: int = 50) -> list[dict]:
    """The newest tasks; running ones with progress fresh from the API (at most every 2 s each)."""
    names = _tenant_names(ctx)
    found = [task if task["status"] in TERMINAL else tracking.refresh(ctx, task) for task in ctx.tasks.recent(limit)]
    return [{**task_view(task, deliveries.for_task(ctx, task)), "tenant": names.get(task["tenant_id"], "?")}
            for task in found]


def task(ctx: Context, task_id: str) -> dict | None:
    found = ctx.tasks.get(task_id)
    if found is None:
        return None
    return {**task_view(found, deliveries.for_task(ctx, found)),
            "tenant": _tenant_names(ctx).get(found["tenant_id"], "?"), "prompt": found.get("prompt", "")}


_LINK_SECONDS = 3600
"""How long the dashboard's signed links to a batch's manifest and ZIP work."""


def batches_list(ctx: Context, limit: int = 50) -> list[dict]:
    """The newest batches of every tenant, with their progress."""
    names = _tenant_names(ctx)
    return [{**batch_rows.view(batch), "tenant": names.get(batch["tenant_id"], "?"),
             "created": iso(batch["created_at"])} for batch in ctx.batches.recent(limit)]


def batch(ctx: Context, batch_id: str, state: str | None, cursor: int, limit: int = 100) -> dict | None:
    """One batch: its progress, its end's deliveries, and a page of its rows (in ``state``, after ``cursor``)."""
    found = ctx.batches.get(batch_id)
    if found is None:
        return None
    rows, next_cursor = batches.page(ctx, found, state, cursor, limit)
    return {**batch_rows.view(found), "tenant": _tenant_names(ctx).get(found["tenant_id"], "?"),
            "created": iso(found["created_at"]), "template": found["settings"].get("prompt_template") or "",
            "deliveries": deliveries.for_task(ctx, found), "rows": rows, "next_cursor": next_cursor,
            "manifest_url": deliveries.files_url(ctx, {"b": batch_id, "l": _LINK_SECONDS}),
            "zip_url": deliveries.files_url(ctx, {"b": batch_id, "l": _LINK_SECONDS, "z": 1})}


def dead_letters(ctx: Context) -> list[dict]:
    names = _tenant_names(ctx)
    return [{**deliveries.view(d), "task_id": d["task_id"], "tenant": names.get(d["tenant_id"], "?")}
            for d in deliveries.dead_letters(ctx)]


def records(ctx: Context, limit: int = 200) -> list[dict]:
    """Records seen in recent tasks, newest first."""
    names, seen, found = _tenant_names(ctx), set(), []
    for recent in ctx.tasks.recent(limit):
        key = (recent["tenant_id"], recent.get("record_key"))
        if not key[1] or key in seen:
            continue
        seen.add(key)
        record = ctx.records.get(*key)
        if record:
            found.append({"tenant": names.get(key[0], "?"), "record_key": key[1], "runs": record["runs"],
                          "task_count": record["task_count"], "credits_used": record["credits_used"],
                          "updated_at": iso(record["updated_at"])})
    return found


def hooks(ctx: Context) -> list[dict]:
    return [{**hook, "created_at": iso(float(hook["created_at"])), "tenant": tenant.name}
            for tenant in ctx.tenants.list() for hook in ctx.hooks.list(tenant.tenant_id)]


def tenants(ctx: Context) -> list[dict]:
    return [{"tenant_id": t.tenant_id, "name": t.name, "upstream_url": t.upstream_url,
             "created_at": iso(t.created_at), **ctx.tenants.usage(t.tenant_id)} for t in ctx.tenants.list()]


def _tenant_names(ctx: Context) -> dict[str, str]:
    return {t.tenant_id: t.name for t in ctx.tenants.list()}
