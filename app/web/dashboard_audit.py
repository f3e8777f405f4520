"""The dashboard's audit page: every tenant's entries (or one tenant's), filtered, a page at a time, with
links to the same selection as CSV and JSON Lines. Behind the dashboard's sign-in, like its other pages."""

from __future__ import annotations

import re

from flask import Blueprint, render_template, request

from app.domain.audit_export import moment
from app.stores.audit import Action, AuditFilter
from app.web.audit import audit_filter, csv_response, jsonl_response
from app.web.base import ctx
from app.web.dashboard import admin_only

bp = Blueprint("dashboard_audit", __name__, url_prefix="/dashboard", template_folder="templates")

_CURSOR = re.compile(r"^[0-9]{1,15}-[0-9]{1,19}$")
_MOMENT = re.compile(r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}([T ][0-9:.]+(Z|[+-][0-9:]+)?)?$")


def _chosen() -> tuple[dict[str, str], str | None, AuditFilter]:
    """The filters of the query string (values that make no sense are left out, as a search form would):
    what was chosen, the tenant whose stream to read (None: the operators' stream, every tenant's), the rest."""
    args = request.args
    tenants = {t.tenant_id for t in ctx().tenants.list()}
    chosen = {
        "tenant": args.get("tenant", "") if args.get("tenant", "") in tenants else "",
        "action": args.get("action", "") if args.get("action", "") in set(Action) else "",
        "actor": args.get("actor", "").strip()[:200],
        "since": args.get("since", "").strip(),
        "until": args.get("until", "").strip(),
    }
    for name in ("since", "until"):
        chosen[name] = chosen[name] if _is_moment(chosen[name]) else ""
    return chosen, chosen["tenant"] or None, audit_filter(chosen)


def _is_moment(text: str) -> bool:
    if not _MOMENT.match(text):
        return False
    try:
        moment(text)
    except ValueError:
        return False
    return True


@bp.get("/audit")
@admin_only
def audit_page():
    chosen, tenant_id, wanted = _chosen()
    cursor = request.args.get("cursor", "")
    cursor = cursor if _CURSOR.match(cursor) else ""
    entries, next_cursor = ctx().audit.page(tenant_id, wanted, cursor or None, 50)
    filters = {name: value for name, value in chosen.items() if value}
    return render_template(
        "dashboard/audit.html",
        entries=entries,
        next_cursor=next_cursor,
        cursor=cursor,
        chosen=chosen,
        filters=filters,
        tenants=ctx().tenants.list(),
        actions=tuple(Action),
        page="audit",
    )


@bp.get("/audit.csv")
@admin_only
def audit_csv():
    _, tenant_id, wanted = _chosen()
    return csv_response(ctx().audit.every(tenant_id, wanted), "audit.csv")


@bp.get("/audit.jsonl")
@admin_only
def audit_jsonl():
    _, tenant_id, wanted = _chosen()
    return jsonl_response(ctx().audit.every(tenant_id, wanted), "audit.jsonl")
