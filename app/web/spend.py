"""Spend: GET /v1/usage (by day, record or format; JSON or CSV) and the credit budgets, /v1/budgets."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, jsonify, request

from app.core.errors import Invalid, NotFound
from app.domain import budgets, usage_report
from app.stores.audit import Action
from app.stores.usage import days_of
from app.web.auditing import audited
from app.web.base import ctx, lenient_day, require_tenant, tenant
from app.web.openapi import ERROR, V1
from app.web.routing import Routes, json_body, query_params

bp = Blueprint("spend", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)

USAGE_DAYS_MAX = 400  # the rows are kept 13 months: a longer range would only add empty days
_BUDGET_CHANGES = {"PUT": Action.BUDGET_SET, "DELETE": Action.BUDGET_REMOVED}
_CAPPED = (
    "Alerts at each share once a month (budget.threshold); with hard_cap, submits past the "
    "budget answer 402 budget_exceeded until the month resets."
)


@route(
    "GET",
    "/usage",
    "Usage by day, record or format: credits, tasks and agent time",
    {200: "relay/usage-report.json", 400: ERROR, 401: ERROR},
    query="relay/usage-query.json",
    description="Daily rows outlive the tasks they count (kept 13 months by default), so reports add up "
    "after the tasks are gone. `Accept: text/csv` answers the items as CSV.",
)
def usage():
    """Daily usage rows (app/stores/usage.py): they outlive the tasks they count. Liberal in the range: a day past
    the end of its month means the month's last day, a range longer than USAGE_DAYS_MAX is cut to its last
    days, and one that ends before it starts has no days. ``Accept: text/csv`` answers the items as CSV."""
    query = query_params()
    last = lenient_day(query["to"]) if "to" in query else budgets.today_utc()
    first = lenient_day(query["from"]) if "from" in query else last - timedelta(days=30)
    first = max(first, last - timedelta(days=USAGE_DAYS_MAX - 1))
    record_key, group_by = query.get("record_key"), query.get("group_by", "day")
    rows = ctx().usage.raw(tenant().tenant_id, first, last) if first <= last else []
    answer = usage_report.report(ctx(), tenant().tenant_id, first, last, group_by, record_key, rows)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        name = f"usage-{answer['from']}-{answer['to']}-by-{group_by}.csv"
        return Response(
            usage_report.as_csv(answer),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    if group_by == "day":  # what this answer had before it grouped: each day with its records
        answer["days"] = days_of(rows, record_key)
    return jsonify(answer)


@route(
    "GET",
    "/budgets",
    "Credit budgets, with where each stands this month",
    {200: "items:relay/budget.json", 401: ERROR},
)
def list_budgets():
    tenant_id = tenant().tenant_id
    return jsonify(
        {
            "items": [
                budgets.view(ctx(), tenant_id, budget) for budget in ctx().budgets.all(tenant_id)
            ]
        }
    )


@route(
    "PUT",
    "/budgets/tenant",
    "Set the tenant's monthly credit budget",
    {200: "relay/budget.json", 400: ERROR, 401: ERROR, 404: ERROR},
    body="relay/budget-put.json",
    description=_CAPPED,
)
@route(
    "GET",
    "/budgets/tenant",
    "The tenant's budget and this month's spend",
    {200: "relay/budget.json", 401: ERROR, 404: ERROR},
)
@route(
    "DELETE", "/budgets/tenant", "Remove the tenant's budget", {204: None, 401: ERROR, 404: ERROR}
)
@audited(_BUDGET_CHANGES, "budget", default_id="tenant")
def tenant_budget():
    return _budget(None)


@route(
    "PUT",
    "/budgets/records/<path:record_key>",
    "Set a record's monthly credit budget",
    {200: "relay/budget.json", 400: ERROR, 401: ERROR, 404: ERROR},
    body="relay/budget-put.json",
    description=_CAPPED,
)
@route(
    "GET",
    "/budgets/records/<path:record_key>",
    "A record's budget and this month's spend",
    {200: "relay/budget.json", 401: ERROR, 404: ERROR},
)
@route(
    "DELETE",
    "/budgets/records/<path:record_key>",
    "Remove a record's budget",
    {204: None, 401: ERROR, 404: ERROR},
)
@audited(_BUDGET_CHANGES, "budget", "record_key")
def record_budget(record_key: str):
    return _budget(record_key)


def _budget(record_key: str | None):
    tenant_id = tenant().tenant_id
    if request.method == "PUT":
        settings = json_body()
        _check_alert_destinations(settings.get("alert_destinations") or [])
        budget = ctx().budgets.put(tenant_id, record_key, settings)
        return jsonify(budgets.view(ctx(), tenant_id, budget))
    budget = ctx().budgets.get(tenant_id, record_key)
    if budget is None:
        raise NotFound(
            "budget_not_found",
            "No budget here: PUT one first.",
            field="record_key" if record_key else None,
        )
    if request.method == "DELETE":
        ctx().budgets.delete(tenant_id, record_key)
        return "", 204
    return jsonify(budgets.view(ctx(), tenant_id, budget))


def _check_alert_destinations(refs: list[dict]) -> None:
    for n, ref in enumerate(refs):
        saved = ctx().destinations.get(tenant().tenant_id, ref["id"])
        if saved is None:
            raise NotFound(
                "destination_not_found",
                "no saved destination with this id",
                field=f"alert_destinations.{n}.id",
            )
        if saved.kind not in budgets.ALERT_KINDS:
            raise Invalid(
                "invalid_request",
                f"alerts go where people read ({', '.join(budgets.ALERT_KINDS)}), "
                f"not to a {saved.kind} destination",
                field=f"alert_destinations.{n}.id",
            )
