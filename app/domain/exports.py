"""Exports of finished documents (PDF, CSV, ...): the API makes the export, the relay hands out a link
that always leads to a fresh copy of it."""

from __future__ import annotations

from typing import Protocol

from app.core.states import TaskStatus
from app.core.upstream import UpstreamClients
from app.domain import links
from app.domain.links import file_link
from app.stores.records import RecordStore
from app.stores.tasks import Task, TaskStore
from app.stores.tenants import Tenant


class Needs(links.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    upstream: UpstreamClients
    records: RecordStore
    tasks: TaskStore


def latest_document(ctx: Needs, tenant_id: str, record_key: str) -> Task | None:
    """The record's newest completed task: its document is the record's current one."""
    tasks = ctx.tasks.many(ctx.records.task_ids(tenant_id, record_key))
    return next((t for t in tasks if t.status == TaskStatus.COMPLETED and t.run_id), None)


def export_link(ctx: Needs, tenant: Tenant, task: Task, fmt: str) -> str:
    """Have the API export the task's document now (so a failure shows here, not when someone clicks),
    then return the link. Raises UpstreamError."""
    with ctx.upstream(tenant) as client:
        client.export(task.run_id, fmt)
    return file_link(ctx, task.task_id, fmt)
