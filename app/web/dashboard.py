"""The operators' dashboard at /dashboard, over every tenant: server-rendered pages for people with the
``operator`` role, signed in through the identity provider, or break-glass with RELAY_ADMIN_TOKEN
(app.web.dashboard_auth, app.web.sign_in); a person without the role is refused with a page naming theirs.
CSRF-protected forms (Flask-WTF), and one JSON endpoint the task list polls for live progress bars.
rq-dashboard is mounted at /dashboard/rq behind the same sign-in."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

import rq_dashboard
from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import RateLimitExceeded

from app.core import redis_connection
from app.core.formats import document_formats
from app.core.states import TASK_ENDED, BatchStatus, RowState, TaskStatus
from app.domain import admin, batches, checks, deliveries, listing, people, tracking
from app.stores.audit import Action, Target
from app.web import dashboard_auth as auth
from app.web import dashboard_charts as views
from app.web import sign_in
from app.web.auditing import operator_did
from app.web.base import ctx

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")
csrf = auth.csrf


SESSION_PATHS = ("/dashboard", "/sign-in", "/portal")
"""Where the session cookie is opened: the pages people sign in to, and the sign-in itself."""


class DashboardSessions(SecureCookieSessionInterface):
    """The session cookie exists for signing in and the signed-in pages alone: other requests (webhooks,
    Slack commands, the API) skip opening one, a tenth of a millisecond on their hot path."""

    def open_session(self, app: Flask, request):
        if request.path.startswith(SESSION_PATHS):
            return super().open_session(app, request)
        return self.make_null_session(app)


def install_dashboard(app: Flask) -> None:
    config = app.extensions["relay"].config
    app.secret_key = app.extensions["relay"].secret
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # only the dashboard's forms carry a CSRF token
        SESSION_COOKIE_PATH="/",  # the sign-in's callback and the portal share it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # the provider's redirect back is a top-level GET: Lax sends it
        SESSION_COOKIE_SECURE=urlsplit(config.public_url).scheme == "https",
    )
    app.session_interface = DashboardSessions()
    app.register_blueprint(bp)
    sign_in.install_sign_in(app)
    auth.install(app, "dashboard.login")
    _mount_rq_dashboard(app)


@bp.app_context_processor
def _who():
    """Every page says who is signed in (and that a break-glass sign-in is one)."""
    if not request.path.startswith(SESSION_PATHS):
        return {}
    found = auth.current()
    return {"signed_in_as": found.label if found else ""}


def _gate(next_path: str, recheck: bool = True):
    """None for an operator (a person with the role, or break-glass); otherwise the answer: 404 while no one
    can sign in, 401 on the JSON endpoint, the sign-in page (coming back to ``next_path``), or 403 for a
    person without the operator role."""
    if not auth.enabled():
        abort(404)
    found = auth.current()
    api = request.path.startswith("/dashboard/api/")
    if found is None:
        if api:
            return jsonify(
                {"error": {"code": "unauthorized", "message": "Sign in at /dashboard/login."}}
            ), 401
        return redirect(url_for("dashboard.login", next=next_path))
    # a page, not a poll or a form: the person comes back to it after the provider
    if recheck and request.method == "GET" and not api and auth.due_for_recheck(found):
        return redirect(sign_in.login_url(next_path))
    if found.operator:
        return None
    held = people.describe(ctx(), found.roles)
    message = f"The dashboard needs the operator role; you have {held}."
    if api:
        return jsonify({"error": {"code": "forbidden", "message": message}}), 403
    return render_template("dashboard/refused.html", who=found.label, roles=held), 403


def admin_only(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        if (refused := _gate(request.full_path.rstrip("?"))) is not None:
            return refused
        if request.method == "POST":
            csrf.protect()
        return view(*args, **kwargs)

    return guarded


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not auth.enabled():
        abort(404)
    config = ctx().config
    target = request.args.get("next", "")
    target = target if target.startswith("/dashboard") else url_for("dashboard.overview")
    error = ""
    if request.method == "POST":
        if not config.admin_token:
            abort(404)
        csrf.protect()
        if auth.token_matches(request.form.get("token", "")):
            auth.sign_in()
            return redirect(target)
        error = "That admin token is not right."
        operator_did(Action.SIGNED_IN, Target("session"), "invalid_token")
    return _login_page(error, target), 401 if error else 200


def _login_page(error: str, target: str) -> str:
    return render_template(
        "dashboard/login.html",
        error=error,
        oidc=bool(ctx().config.oidc_issuer),
        break_glass=bool(ctx().config.admin_token),
        next_path=target,
    )


@bp.errorhandler(RateLimitExceeded)
def too_many_sign_ins(_exc: RateLimitExceeded):
    error = "Too many failed sign-ins from your address: try again later."
    return _login_page(error, url_for("dashboard.overview")), 429


@bp.post("/logout")
def logout():
    """Any signed-in person may sign out (also one the dashboard refuses)."""
    if auth.current() is None:
        return redirect(url_for("dashboard.login"))
    csrf.protect()
    auth.sign_out()
    return redirect(url_for("dashboard.login"))


@bp.get("/")
@admin_only
def overview():
    tasks, next_cursor, chosen = _task_page()
    return render_template(
        "dashboard/tasks.html",
        tasks=tasks,
        next_cursor=next_cursor,
        chosen=chosen,
        tenants=ctx().tenants.list(),
        statuses=tuple(TaskStatus),
        formats=document_formats(),
        page="tasks",
    )


@bp.get("/api/tasks")
@admin_only
def tasks_json():
    """What the task list polls every 2 seconds: the same page, fresh."""
    tasks, _, _ = _task_page()
    return jsonify(
        {
            "items": [
                {k: t[k] for k in ("task_id", "status", "phase", "progress", "turn_index", "error")}
                | {
                    "deliveries": [
                        {"delivery_id": d["delivery_id"], "state": d["state"]}
                        for d in t["deliveries"]
                    ]
                }
                for t in tasks
            ]
        }
    )


def _task_page() -> tuple[list[dict], float | None, dict]:
    """The task list's page from the query: tenant, status, record, format and the cursor (values that are not
    among the choices are left out, as a search form would)."""
    args = request.args
    chosen = {
        "tenant": args.get("tenant", ""),
        "status": args.get("status", ""),
        "record_key": args.get("record_key", "").strip(),
        "format": args.get("format", ""),
        "cursor": args.get("cursor", ""),
    }
    chosen["status"] = chosen["status"] if chosen["status"] in set(TaskStatus) else ""
    chosen["format"] = (
        chosen["format"] if chosen["format"] in {f["id"] for f in document_formats()} else ""
    )
    wanted = listing.TaskFilter(
        status=chosen["status"] or None,
        record_key=chosen["record_key"] or None,
        format=chosen["format"] or None,
    )
    try:
        cursor = float(chosen["cursor"]) if chosen["cursor"] else None
    except ValueError:
        cursor = None
    tasks, next_cursor = admin.task_page(ctx(), chosen["tenant"] or None, wanted, cursor)
    return tasks, next_cursor, chosen


@bp.post("/tasks/<task_id>/cancel")
@admin_only
def cancel_task(task_id: str):
    task = ctx().tasks.get(task_id)
    tenant = ctx().tenants.get(task.tenant_id) if task else None
    if task is None or tenant is None:
        abort(404)
    cancelled = tracking.cancel(ctx(), tenant, task)
    operator_did(
        Action.TASK_CANCELLED, Target("task", task_id), "ok" if cancelled else "not_cancelled"
    )
    if cancelled:
        flash(f"Task {task_id} is cancelled.")
    else:
        ended = ctx().tasks.get(task_id) or task
        flash(
            f"Task {task_id} has ended ({ended.status}): nothing to cancel."
            if ended.status in TASK_ENDED
            else f"The API did not take the cancel of {task_id}; try again."
        )
    back = request.form.get("back", "")
    return redirect(
        back if back.startswith("/dashboard") else url_for("dashboard.task_detail", task_id=task_id)
    )


@bp.get("/usage")
@admin_only
def usage():
    days = _days()
    data = admin.usage_overview(ctx(), days)
    return render_template(
        "dashboard/usage.html",
        data=data,
        days=days,
        page="usage",
        charts=views.overview_charts(data),
    )


@bp.get("/usage/<tenant_id>")
@admin_only
def tenant_usage(tenant_id: str):
    days = _days()
    data = admin.tenant_usage(ctx(), tenant_id, days)
    if data is None:
        abort(404)
    return render_template(
        "dashboard/tenant_usage.html",
        data=data,
        days=days,
        page="usage",
        chart=views.tenant_chart(data),
    )


def _days() -> int:
    days = request.args.get("days", "30")
    return int(days) if days in ("7", "30", "90") else 30


@bp.get("/tasks/<task_id>")
@admin_only
def task_detail(task_id: str):
    found = admin.task(ctx(), task_id)
    if found is None:
        abort(404)
    return render_template("dashboard/task.html", task=found, page="tasks")


@bp.get("/batches")
@admin_only
def batch_list():
    return render_template(
        "dashboard/batches.html", items=admin.batches_list(ctx()), page="batches"
    )


def _batch_page(batch_id: str) -> tuple[dict, str | None, int]:
    """The batch with the page of rows the query asks for (state, cursor); 404 for an unknown batch."""
    state = request.args.get("state") or None
    state = state if state in set(RowState) else None
    cursor = int(request.args["cursor"]) if request.args.get("cursor", "").isdigit() else 0
    found = admin.batch(ctx(), batch_id, state, cursor)
    if found is None:
        abort(404)
    return found, state, cursor


@bp.get("/batches/<batch_id>")
@admin_only
def batch_detail(batch_id: str):
    found, state, cursor = _batch_page(batch_id)
    return render_template(
        "dashboard/batch.html",
        batch=found,
        state=state,
        cursor=cursor,
        states=tuple(RowState),
        page="batches",
    )


@bp.get("/api/batches/<batch_id>")
@admin_only
def batch_json(batch_id: str):
    """What the batch page polls every 2 seconds: the progress and the page of rows it shows."""
    return jsonify(_batch_page(batch_id)[0])


_BATCH_ACTIONS = {"cancel": Action.BATCH_CANCELLED, "retry": Action.BATCH_RETRIED}


@bp.post("/batches/<batch_id>/<action>")
@admin_only
def batch_action(batch_id: str, action: str):
    found = ctx().batches.get(batch_id)
    if found is None or action not in ("cancel", "retry"):
        abort(404)
    done = "ok" if action == "retry" or found.status == BatchStatus.RUNNING else "batch_ended"
    operator_did(_BATCH_ACTIONS[action], Target("batch", batch_id), done)
    if action == "retry":
        flash(f"Failed rows queued again: {batches.retry(ctx(), found)}.")
    elif found.status != BatchStatus.RUNNING:
        flash(f"The batch has ended ({found.status}): nothing to cancel.")
    else:
        flash(f"Rows cancelled or asked to cancel: {batches.cancel(ctx(), found)}.")
    return redirect(url_for("dashboard.batch_detail", batch_id=batch_id))


@bp.get("/dead-letters")
@admin_only
def dead_letters():
    tenants = ctx().tenants.list()
    chosen = request.args.get("tenant", "")
    chosen = chosen if chosen in {t.tenant_id for t in tenants} else ""
    try:
        cursor = float(request.args["cursor"]) if request.args.get("cursor") else None
    except ValueError:
        cursor = None
    items, next_cursor = admin.dead_letters(ctx(), chosen or None, cursor)
    return render_template(
        "dashboard/dead_letters.html",
        items=items,
        next_cursor=next_cursor,
        total=ctx().deliveries.dead_count(chosen or None),
        tenants=tenants,
        chosen={"tenant": chosen, "cursor": cursor},
        page="dead",
    )


@bp.post("/deliveries/<delivery_id>/replay")
@admin_only
def replay(delivery_id: str):
    replayed = deliveries.replay(ctx(), delivery_id)
    operator_did(
        Action.DELIVERY_REPLAYED,
        Target("delivery", delivery_id),
        "ok" if replayed else "already_delivered",
    )
    if replayed:
        flash(f"Delivery {delivery_id} is queued again.")
    else:
        flash(f"Delivery {delivery_id} was already delivered or does not exist.")
    return redirect(
        request.form.get("back")
        if request.form.get("back", "").startswith("/dashboard")
        else url_for("dashboard.dead_letters")
    )


@bp.get("/records")
@admin_only
def records():
    return render_template("dashboard/records.html", items=admin.records(ctx()), page="records")


@bp.get("/hooks")
@admin_only
def hooks():
    return render_template("dashboard/hooks.html", items=admin.hooks(ctx()), page="hooks")


@bp.get("/destinations")
@admin_only
def destinations():
    return render_template(
        "dashboard/destinations.html", items=admin.destinations(ctx()), page="destinations"
    )


@bp.post("/destinations/<tenant_id>/<destination_id>/check")
@admin_only
def check_destination(tenant_id: str, destination_id: str):
    """The destination checked now; the page shows what each check found."""
    store = ctx().destinations
    saved = store.get(tenant_id, destination_id)
    operator_did(
        Action.DESTINATION_CHECKED,
        Target("destination", destination_id, saved.name if saved else ""),
        "ok" if saved else "destination_not_found",
        tenant_id,
    )
    if saved is None:
        flash(f"Destination {destination_id} does not exist.")
        return redirect(url_for("dashboard.destinations"))
    report = checks.run(ctx(), tenant_id, saved.kind, store.config(saved, reveal=True))
    return render_template(
        "dashboard/destinations.html",
        items=admin.destinations(ctx()),
        page="destinations",
        checked=saved,
        report=report.view(),
    )


@bp.get("/tenants")
@admin_only
def tenants():
    return render_template("dashboard/tenants.html", items=admin.tenants(ctx()), page="tenants")


def _mount_rq_dashboard(app: Flask) -> None:
    """rq-dashboard's blueprint at /dashboard/rq, on the relay's Redis, behind the admin sign-in."""
    config = app.extensions["relay"].config
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", [redis_connection.url_for_libraries(config)])
    app.config.setdefault(
        "RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD", config.redis_sentinel_password or None
    )
    app.config.setdefault("RQ_DASHBOARD_REDIS_PASSWORD", config.redis_password or None)
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/dashboard/rq")
    # its actions (requeue, delete...) use the connection this makes; its pages make their own
    rq_dashboard.web.setup_rq_connection(app)


def _rq_guard():
    """rq-dashboard's own pages and actions: operators only, state changes by POST with the CSRF
    token (app.web.dashboard_auth)."""
    # its scripts poll JSON with GET: a sign-in due for a recheck is rechecked at the next dashboard page
    if (refused := _gate("/dashboard/rq/", recheck=False)) is not None:
        return refused
    auth.refuse_unsafe_rq_requests()
    return None


# the blueprint is module-level: guard it once
rq_dashboard.blueprint.before_request(_rq_guard)
rq_dashboard.blueprint.after_request(auth.give_rq_its_csrf_token)
