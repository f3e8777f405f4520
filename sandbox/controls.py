"""Test controls under /_sandbox/: move the clock, run the sweeper now, inspect webhook deliveries, a task's
phase log, the worker pool and an organisation's load, release the tasks waiting at a ``[[hold=NAME]]``.

Enabled only when SANDBOX_ADMIN_TOKEN is set, and only for requests that carry it.
"""

from __future__ import annotations

import hmac
import re

from flask import Blueprint, jsonify, request

from schemas.http import ApiError

from .agent import HOLD_NAME
from .clock import iso
from .http import json_body, sandbox

bp = Blueprint("controls", __name__, url_prefix="/_sandbox")


@bp.before_request
def admin_only():
    token = sandbox().config.admin_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise ApiError(404, "not_found", "The requested URL was not found on the server.")


@bp.post("/clock")
def advance_clock():
    body = json_body("sandbox/clock-advance.json")
    box = sandbox()
    box.advance(float(body["seconds"]))
    return jsonify({"now": iso(box.store.clock.now())})


@bp.post("/sweep")
def sweep():
    box = sandbox()
    return jsonify(
        {
            "expired_tasks": box.service.expire_stale(),
            "purged_runs": box.service.purge_expired_bytes(),
        }
    )


@bp.get("/webhooks")
def webhook_deliveries():
    return jsonify({"items": sandbox().webhooks.deliveries()})


@bp.get("/tasks/<task_id>/phases")
def task_phases(task_id: str):
    """Every (status, phase, progress) the task went through, in order."""
    store = sandbox().store
    if store.get_task(task_id) is None:
        raise ApiError(404, "task_not_found", "No task with that id.")
    return jsonify({"task_id": task_id, "phases": store.phase_log(task_id)})


@bp.get("/pool")
def pool_state():
    """The worker pool now: size, running, waiting, and idle (every task handed to it dealt with)."""
    return jsonify(sandbox().executor.state())


@bp.get("/orgs/<org_id>/load")
def org_load(org_id: str):
    """The organisation's tasks in the API now (queued or running) and the most there ever were at once."""
    store = sandbox().store
    if store.get_org(org_id) is None:
        raise ApiError(404, "org_not_found", "No organisation with that id.")
    return jsonify({"org_id": org_id, **store.org_load(org_id)})


def _hold_name(name: str) -> str:
    if not re.fullmatch(HOLD_NAME, name):
        raise ApiError(400, "invalid_request", f"A hold's name matches {HOLD_NAME}.", field="name")
    return name


@bp.get("/holds/<name>")
def hold_state(name: str):
    """The tasks waiting at a ``[[hold=NAME]]`` now, and whether it is released."""
    name, store = _hold_name(name), sandbox().store
    return jsonify({"name": name, "held": store.held(name), "released": store.released(name)})


@bp.post("/holds/<name>/release")
def release_hold(name: str):
    """Let every task with ``[[hold=NAME]]`` go on, now and later (a release before the task arrives counts)."""
    name, store = _hold_name(name), sandbox().store
    store.release(name)
    return jsonify({"name": name, "held": store.held(name), "released": True})
