"""Finding and stopping work: GET /v1/tasks and GET /v1/records, newest first with cursors, and
POST /v1/tasks/{id}/cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, jsonify

from app.core.errors import Conflict, NotFound, UpstreamFailed
from app.core.states import TASK_ENDED
from app.domain import listing, tracking
from app.domain.serializers import record_view
from app.stores.audit import Action
from app.web.api import task_answer
from app.web.auditing import audited
from app.web.base import ctx, lenient_day, public, record_path, require_tenant, tenant
from app.web.openapi import ERROR, V1
from app.web.routing import Routes, query_params

bp = Blueprint("listing", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)


@route(
    "GET",
    "/tasks",
    "The tenant's tasks, newest first, filtered, a page at a time",
    {200: "relay/tasks-page.json", 400: ERROR, 401: ERROR},
    query="relay/tasks-query.json",
)
def list_tasks():
    query = query_params()
    wanted = listing.TaskFilter(
        status=query.get("status"),
        record_key=query.get("record_key"),
        format=query.get("format"),
        created_from=_time(query, "from"),
        created_to=_time(query, "to", end_of_day=True),
    )
    found, cursor = listing.tasks(
        ctx(), tenant().tenant_id, wanted, cursor_of(query), query.get("limit", 50)
    )
    return jsonify(
        {"items": [task_answer(task) for task in found], "next_cursor": next_cursor(cursor)}
    )


@route(
    "GET",
    "/records",
    "The tenant's records, the most recently used first",
    {200: "relay/records-page.json", 400: ERROR, 401: ERROR},
    query="relay/records-query.json",
)
def list_records():
    query = query_params()
    found, cursor = listing.records(
        ctx(), tenant().tenant_id, cursor_of(query), query.get("limit", 50)
    )
    items = [
        {**record_view(record, []), "links": {"record": public(record_path(record.record_key))}}
        for record in found
    ]
    for item in items:
        item.pop("tasks")  # GET /v1/records/{key} has them
    return jsonify({"items": items, "next_cursor": next_cursor(cursor)})


@route(
    "POST",
    "/tasks/<task_id>/cancel",
    "Cancel a task at the API",
    {202: "relay/task.json", 401: ERROR, 404: ERROR, 409: ERROR, 502: ERROR},
    description="409 `task_ended` once the task has ended. A task the API has not taken yet is cancelled "
    "here.",
)
@audited(Action.TASK_CANCELLED, "task", "task_id")
def cancel_task(task_id: str):
    task = ctx().tasks.get(task_id, tenant().tenant_id)
    if task is None:
        raise NotFound("task_not_found", "No task with that id.", field="task_id")
    if task.status in TASK_ENDED or not tracking.cancel(ctx(), tenant(), task):
        ended = ctx().tasks.get(task_id) or task
        if ended.status in TASK_ENDED:
            raise Conflict(
                "task_ended",
                f"The task has ended ({ended.status}): there is nothing to cancel.",
                field="task_id",
            )
        raise UpstreamFailed(
            "cancel_failed", "The API did not take the cancel; try again.", field="task_id"
        )
    return jsonify(task_answer(ctx().tasks.get(task_id) or task)), 202


def cursor_of(query: dict) -> float | None:
    return float(query["cursor"]) if query.get("cursor") else None


def next_cursor(cursor: float | None) -> str | None:
    # exact: a rounded cursor could show a task twice
    return repr(cursor) if cursor is not None else None


def _time(query: dict, name: str, end_of_day: bool = False) -> float | None:
    """A day (UTC; ``end_of_day``: up to its end) or an ISO 8601 time, as a Unix time."""
    text = query.get(name)
    if not text:
        return None
    day, rest = lenient_day(text), text[10:].replace(" ", "T").replace("Z", "+00:00")
    # the schema's pattern: hours and minutes in range
    when = datetime.fromisoformat(day.isoformat() + rest)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (when + timedelta(days=1 if end_of_day and not rest else 0)).timestamp()
