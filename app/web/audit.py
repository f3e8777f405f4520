"""GET /v1/audit: the caller's tenant's audit log, newest first, a page at a time; and the whole of it (as
filtered) as CSV or JSON Lines, streamed. The reading of filters and the export formats are shared with the
dashboard's audit page."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, jsonify

from app.domain import audit_export
from app.stores.audit import AuditEntry, AuditFilter
from app.web.base import ctx, require_tenant, tenant
from app.web.openapi import CSV, ERROR, V1
from app.web.routing import Routes, query_params

bp = Blueprint("audit", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)

JSONL = "application/jsonl"


@route(
    "GET",
    "/audit",
    "The tenant's audit log: who changed what, when, from where; newest first, a page at a time",
    {200: "relay/audit-page.json", 400: ERROR, 401: ERROR},
    query="relay/audit-query.json",
)
def list_audit():
    query = query_params()
    found, cursor = ctx().audit.page(
        tenant().tenant_id, audit_filter(query), query.get("cursor"), query.get("limit", 50)
    )
    return jsonify({"items": [entry.view() for entry in found], "next_cursor": cursor})


@route(
    "GET",
    "/audit.csv",
    "The tenant's audit log as CSV (the same filters; every entry, newest first)",
    {200: None, 400: ERROR, 401: ERROR},
    query="relay/audit-query.json",
    response_type={200: CSV},
)
def export_csv():
    entries = ctx().audit.every(tenant().tenant_id, audit_filter(query_params()))
    return csv_response(entries, "audit.csv")


@route(
    "GET",
    "/audit.jsonl",
    "The tenant's audit log as JSON Lines (the same filters; every entry, newest first)",
    {200: None, 400: ERROR, 401: ERROR},
    query="relay/audit-query.json",
    response_type={200: JSONL},
)
def export_jsonl():
    entries = ctx().audit.every(tenant().tenant_id, audit_filter(query_params()))
    return jsonl_response(entries, "audit.jsonl")


def audit_filter(query: dict) -> AuditFilter:
    return AuditFilter(
        action=query.get("action") or None,
        actor=query.get("actor") or None,
        since=audit_export.moment(query.get("since")),
        until=audit_export.moment(query.get("until"), end_of_day=True),
    )


def csv_response(entries: Iterator[AuditEntry], filename: str) -> Response:
    return Response(
        audit_export.csv_lines(entries), mimetype="text/csv", headers=_attachment(filename)
    )


def jsonl_response(entries: Iterator[AuditEntry], filename: str) -> Response:
    return Response(
        audit_export.jsonl_lines(entries), mimetype=JSONL, headers=_attachment(filename)
    )


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
