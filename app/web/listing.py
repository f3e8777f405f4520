"""Finding and stopping work: GET /v1/tasks and GET /v1/records, newest first with cursors, and
POST /v1/tasks/{id}/cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, jsonify

from app.core.states import TASK_ENDED
from app.domain import listing, tracking
from app.domain.serializers import record_view
from app.web.api import task_answer
from app.web.base import ctx, lenient_day, public, record_path, require_tenant, tenant
from schemas.http import ApiError, query_params

bp = Blueprint("listing", __name__, url_prefix="/v1")
bp.before_request(require_tenant)


@bp.get("/tasks")
def list_tasks():
    query = query_params("relay/tasks-query.json")
    wanted = listing.TaskFilter(
        status=query.get("status"),
        record_key=query.get("record_key"),
        format=query.get("format"),
        created_from=_time(query, "from"),
        created_to=_time(query, "to", end_of_day=True),
    )
    found, cursor = listing.tasks(
        ctx(), tenant().tenant_id, wanted, _cursor(query), query.get("limit", 50)
    )
    return jsonify({"items": [task_answer(task) for task in found], "next_cursor": _next(cursor)})


@bp.get("/records")
def list_records():
    query = query_params("relay/records-query.json")
    found, cursor = listing.records(
        ctx(), tenant().tenant_id, _cursor(query), query.get("limit", 50)
    )
    items = [
        {**record_view(record, []), "links": {"record": public(record_path(record["record_key"]))}}
        for record in found
    ]
    for item in items:
        item.pop("tasks")  # GET /v1/records/{key} has them
    return jsonify({"items": items, "next_cursor": _next(cursor)})


@bp.post("/tasks/<task_id>/cancel")
def cancel_task(task_id: str):
    task = ctx().tasks.get(task_id, tenant().tenant_id)
    if task is None:
        raise ApiError(404, "task_not_found", "No task with that id.", field="task_id")
    if task.status in TASK_ENDED or not tracking.cancel(ctx(), tenant(), task):
        ended = ctx().tasks.get(task_id) or task
        if ended.status in TASK_ENDED:
            raise ApiError(
                409,
                "task_ended",
                f"The task has ended ({ended.status}): there is nothing to cancel.",
                field="task_id",
            )
        raise ApiError(
            502, "cancel_failed", "The API did not take the cancel; try again.", field="task_id"
        )
    return jsonify(task_answer(ctx().tasks.get(task_id) or task)), 202


def _cursor(query: dict) -> float | None:
    return float(query["cursor"]) if query.get("cursor") else None


def _next(cursor: float | None) -> str | None:
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
