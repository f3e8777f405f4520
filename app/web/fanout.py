"""/v1 destinations, hook subscriptions and deliveries."""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.core.errors import Conflict, Invalid, NotFound
from app.domain import checks, deliveries
from app.stores.audit import Action
from app.stores.destinations import Hook, SavedDestination, check_config, merged_config
from app.stores.events import iso
from app.web.auditing import audited
from app.web.base import ctx, require_tenant, tenant
from app.web.listing import cursor_of, next_cursor
from app.web.openapi import ERROR, V1
from app.web.routing import Routes, json_body, query_params
from connectors.registry import RECORD_KINDS

bp = Blueprint("fanout", __name__, url_prefix="/v1")
bp.before_request(require_tenant)
route = Routes(bp, V1)


def _shown(saved: SavedDestination, defaults: dict[str, str]) -> dict:
    """A saved destination as the API shows it, its secret fields hidden; a write-back connection says
    whether it is its platform's default."""
    shown = {
        "id": saved.id,
        "name": saved.name,
        "kind": saved.kind,
        "export": saved.export,
        "created_at": iso(saved.created_at),
        "config": ctx().destinations.config(saved),
    }
    if saved.kind in RECORD_KINDS:
        shown["default"] = defaults.get(saved.kind) == saved.id
    return shown


def _hook_view(hook: Hook) -> dict:
    """A hook subscription as the API shows it: never its secret."""
    return {
        "id": hook.id,
        "target_url": hook.target_url,
        "event": hook.event,
        "created_at": iso(hook.created_at),
    }


def _checked(kind: str, config: dict) -> checks.Report | None:
    """The check of a destination about to be saved (None with ?check=false); a failure saves nothing."""
    if query_params().get("check") == "false":
        return None
    report = checks.run(ctx(), tenant().tenant_id, kind, config)
    if report.failed:
        failure = next(c for c in report.checks if c.verdict is checks.Verdict.FAILURE)
        raise Invalid(
            "destination_check_failed",
            f"Not saved: {failure.message}" + (f" {failure.fix}" if failure.fix else ""),
            field="config",
            checks=report.view()["checks"],
        )
    return report


@route(
    "POST",
    "/destinations",
    "Save a destination, once a check finds what a delivery will need",
    {201: "relay/destination.json", 400: ERROR, 401: ERROR},
    body="relay/destination-create.json",
    query="relay/destination-save-query.json",
)
@audited(Action.DESTINATION_CREATED, "destination")
def create_destination():
    body = json_body()
    config = check_config(body["kind"], body["config"])
    report = _checked(body["kind"], config)
    tenant_id = tenant().tenant_id
    saved = ctx().destinations.create(
        tenant_id, body["name"], body["kind"], config, body.get("export")
    )
    if body.get("default"):
        ctx().destinations.set_default(tenant_id, body["kind"], saved.id)
    shown = _shown(saved, ctx().destinations.defaults(tenant_id))
    return jsonify(shown | ({"checks": report.view()} if report else {})), 201


@route(
    "POST",
    "/destinations/<destination_id>/check",
    "Check a saved destination: what a delivery will need, without delivering",
    {200: "relay/destination-checks.json", 401: ERROR, 404: ERROR},
)
@audited(Action.DESTINATION_CHECKED, "destination", "destination_id")
def check_destination(destination_id: str):
    tenant_id, store = tenant().tenant_id, ctx().destinations
    saved = store.get(tenant_id, destination_id)
    if saved is None:
        raise NotFound("destination_not_found", "No destination with that id.")
    report = checks.run(ctx(), tenant_id, saved.kind, store.config(saved, reveal=True))
    return jsonify(report.view())


@route(
    "POST",
    "/destinations/checks",
    "Check every saved destination (the Zapier and Make apps' connection test)",
    {200: "relay/destinations-checks.json", 401: ERROR},
)
def check_destinations():
    current, store = tenant(), ctx().destinations
    found = checks.run_saved(ctx(), current.tenant_id, store.list(current.tenant_id))
    return jsonify(
        {
            "verdict": str(checks.worst(report.verdict for _, report in found)),
            "tenant": current.name,
            "destinations": [
                {"id": saved.id, "name": saved.name, "kind": saved.kind, **report.view()}
                for saved, report in found
            ],
        }
    )


@route(
    "GET",
    "/destinations",
    "Saved destinations, of some kinds or all",
    {200: "items:relay/destination.json", 400: ERROR, 401: ERROR},
    query="relay/destinations-query.json",
)
def list_destinations():
    kinds = set(filter(None, query_params().get("kind", "").split(",")))
    tenant_id = tenant().tenant_id
    defaults = ctx().destinations.defaults(tenant_id)
    return jsonify(
        {
            "items": [
                _shown(d, defaults)
                for d in ctx().destinations.list(tenant_id)
                if not kinds or d.kind in kinds
            ]
        }
    )


@route(
    "GET",
    "/destinations/<destination_id>",
    "A saved destination",
    {200: "relay/destination.json", 401: ERROR, 404: ERROR},
)
def get_destination(destination_id: str):
    tenant_id = tenant().tenant_id
    saved = ctx().destinations.get(tenant_id, destination_id)
    if saved is None:
        raise NotFound("destination_not_found", "No destination with that id.")
    return jsonify(_shown(saved, ctx().destinations.defaults(tenant_id)))


@route(
    "PATCH",
    "/destinations/<destination_id>",
    "Change a saved destination (name, config, export)",
    {200: "relay/destination.json", 400: ERROR, 401: ERROR, 404: ERROR},
    body="relay/destination-update.json",
    query="relay/destination-save-query.json",
)
@audited(Action.DESTINATION_CHANGED, "destination", "destination_id")
def update_destination(destination_id: str):
    body = json_body()
    tenant_id, store = tenant().tenant_id, ctx().destinations
    saved = store.get(tenant_id, destination_id)
    if saved is None:
        raise NotFound("destination_not_found", "No destination with that id.")
    if "default" in body and saved.kind not in RECORD_KINDS:
        raise Invalid(
            "invalid_request",
            "Only a write-back connection (hubspot, airtable, sheets) can be a default.",
            field="default",
        )
    changes = {name: body[name] for name in ("name", "export") if name in body}
    report = None
    if "config" in body:
        revealed = store.config(saved, reveal=True)  # a secret sent back as shown keeps its value
        changes["config"] = check_config(
            saved.kind, merged_config(saved.kind, revealed, body["config"])
        )
        report = _checked(saved.kind, changes["config"])
    updated = store.update(tenant_id, destination_id, **changes)
    if body.get("default"):
        store.set_default(tenant_id, saved.kind, destination_id)
    elif body.get("default") is False:
        store.clear_default(tenant_id, saved.kind, destination_id)
    shown = _shown(updated or saved, store.defaults(tenant_id))
    return jsonify(shown | ({"checks": report.view()} if report else {}))


@route(
    "DELETE",
    "/destinations/<destination_id>",
    "Delete a saved destination",
    {204: None, 401: ERROR, 404: ERROR},
)
@audited(Action.DESTINATION_DELETED, "destination", "destination_id")
def delete_destination(destination_id: str):
    if not ctx().destinations.delete(tenant().tenant_id, destination_id):
        raise NotFound("destination_not_found", "No destination with that id.")
    return "", 204


@route(
    "POST",
    "/hooks",
    "Subscribe a URL to task events (REST hooks)",
    {201: "relay/hook.json", 400: ERROR, 401: ERROR},
    body="relay/hook-create.json",
)
@audited(Action.HOOK_SUBSCRIBED, "hook")
def subscribe():
    body = json_body()
    hook, secret = ctx().hooks.create(tenant().tenant_id, body["target_url"], body["event"])
    return jsonify({**_hook_view(hook), "secret": secret}), 201


@route("GET", "/hooks", "Hook subscriptions", {200: "items:relay/hook.json", 401: ERROR})
def list_hooks():
    return jsonify({"items": [_hook_view(h) for h in ctx().hooks.list(tenant().tenant_id)]})


@route("DELETE", "/hooks/<hook_id>", "Unsubscribe", {204: None, 401: ERROR, 404: ERROR})
@audited(Action.HOOK_UNSUBSCRIBED, "hook", "hook_id")
def unsubscribe(hook_id: str):
    if not ctx().hooks.delete(tenant().tenant_id, hook_id):
        raise NotFound("hook_not_found", "No hook subscription with that id.")
    return "", 204


@route(
    "GET",
    "/deliveries",
    "The dead-letter list, the latest to die first, a page at a time",
    {200: "relay/deliveries-page.json", 400: ERROR, 401: ERROR},
    query="relay/deliveries-query.json",
)
def list_dead_letters():
    """The dead-letter list: deliveries that failed for good, the latest to die first."""
    query = query_params()
    found, cursor = ctx().deliveries.dead_page(
        tenant().tenant_id, cursor_of(query), query.get("limit", 50)
    )
    return jsonify(
        {"items": [deliveries.view(d) for d in found], "next_cursor": next_cursor(cursor)}
    )


@route(
    "GET",
    "/deliveries/<delivery_id>",
    "A delivery",
    {200: "relay/delivery.json", 401: ERROR, 404: ERROR},
)
def get_delivery(delivery_id: str):
    record = ctx().deliveries.get(delivery_id, tenant().tenant_id)
    if record is None:
        raise NotFound("delivery_not_found", "No delivery with that id.")
    return jsonify(deliveries.view(record))


@route(
    "POST",
    "/deliveries/<delivery_id>/replay",
    "Run a failed delivery again",
    {202: "relay/delivery.json", 401: ERROR, 404: ERROR, 409: ERROR},
)
@audited(Action.DELIVERY_REPLAYED, "delivery", "delivery_id")
def replay(delivery_id: str):
    if ctx().deliveries.get(delivery_id, tenant().tenant_id) is None:
        raise NotFound("delivery_not_found", "No delivery with that id.")
    if not deliveries.replay(ctx(), delivery_id):
        raise Conflict("already_delivered", "This delivery already succeeded; nothing to replay.")
    # removed meanwhile (delivered at once, then swept with its task)
    if (record := ctx().deliveries.get(delivery_id)) is None:
        raise NotFound("delivery_not_found", "No delivery with that id.")
    return jsonify(deliveries.view(record)), 202
