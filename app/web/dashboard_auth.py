"""Who is signed in to the dashboard, and what a signed-in browser may be made to do.

- A sign-in lives in Redis (app.stores.admin_sessions); the session cookie carries only its id, the CSRF
  token and flash messages. Signing out ends it for every copy of the cookie; a sign-in made with another
  admin token than today's (the token was replaced) is refused.
- Failed sign-ins are counted per client address (flask-limiter, counters in Redis): past
  RELAY_ADMIN_LOGIN_LIMIT the sign-in page answers 429 whatever token it is sent.
- rq-dashboard's own routes change state on POST only, and only with the CSRF token, which its scripts send
  from the ``_csrf_token`` cookie set here (they read that cookie by name)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request, session
from flask.wrappers import Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect, generate_csrf

from app.stores.admin_sessions import AdminSession, AdminSessionStore
from app.web.base import ctx
from app.web.limits import only_on, storage

csrf = CSRFProtect()
RQ_CSRF_COOKIE = "_csrf_token"
"""The cookie rq-dashboard's scripts read and send back as X-CSRFToken (rq_dashboard/.../dashboard.js)."""


def _store() -> AdminSessionStore:
    return current_app.extensions["relay-admin-sessions"]


def fingerprint(admin_token: str) -> str:
    """Which admin token a sign-in was made with, without keeping the token (keyed with the relay's secret)."""
    return hmac.new(
        ctx().secret.encode(), b"admin-token:" + admin_token.encode(), hashlib.sha256
    ).hexdigest()


def current() -> AdminSession | None:
    """This browser's live sign-in, if any."""
    token, session_id = ctx().config.admin_token, session.get("sid")
    if not token or not isinstance(session_id, str):
        return None
    found = _store().get(session_id)
    # made with another token: refused, not deleted (during a rolling restart a process still running with
    # the old token would otherwise end the sessions made on the new ones)
    if found is None or not hmac.compare_digest(found.fingerprint, fingerprint(token)):
        return None
    return found


def sign_in() -> None:
    """A new sign-in with a new id (whatever id the browser came with is not reused)."""
    session.clear()
    session["sid"] = _store().start(
        fingerprint(ctx().config.admin_token), ctx().config.admin_session_seconds
    )


def sign_out() -> None:
    if isinstance(session_id := session.get("sid"), str):
        _store().end(session_id)
    session.clear()


def token_matches(given: str) -> bool:
    return hmac.compare_digest(given.encode(), ctx().config.admin_token.encode())


def install(app: Flask, login_endpoint: str) -> None:
    """The session store, CSRF protection, and the sign-in throttle on the view of ``login_endpoint`` (only
    failed sign-ins, answered 401, count; the limiter's hooks run for the dashboard's requests alone)."""
    relay = app.extensions["relay"]
    app.extensions["relay-admin-sessions"] = AdminSessionStore(relay.redis, relay.config.key_prefix)
    csrf.init_app(app)
    limiter = Limiter(
        get_remote_address,
        **storage(relay.config),
        key_prefix=relay.config.key_prefix + "ratelimit-admin-login",
        strategy="moving-window",
        headers_enabled=True,
    )
    # one limiter per app (each has its Redis), the blueprint is module-level: wrap the app's view
    app.view_functions[login_endpoint] = limiter.limit(
        relay.config.admin_login_limit,
        methods=["POST"],
        deduct_when=lambda response: response.status_code == 401,
    )(app.view_functions[login_endpoint])
    only_on(app, {login_endpoint.partition(".")[0]}, lambda: limiter.init_app(app))


# -- rq-dashboard ---------------------------------------------------------------------------------


def refuse_unsafe_rq_requests() -> None:
    """Before each of rq-dashboard's requests: a route that takes POST changes state (requeue, delete,
    empty, compact) and answers nothing else, not even GET (its "requeue all" took GET: a link on any site
    could requeue every failed job of a signed-in admin); a POST needs the CSRF token and, when the browser
    says where it comes from, this site as its origin."""
    rule = request.url_rule
    if rule is not None and "POST" in (rule.methods or ()) and request.method != "POST":
        abort(405, valid_methods=["POST"])
    if request.method == "POST":
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            abort(403)
        csrf.protect()


def give_rq_its_csrf_token(response: Response) -> Response:
    """After rq-dashboard's pages: the CSRF token its scripts send with each POST."""
    if response.status_code == 200 and response.mimetype == "text/html":  # a page, signed in
        response.set_cookie(
            RQ_CSRF_COOKIE,
            generate_csrf(),
            path="/dashboard/rq",
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=False,  # the page's script reads it
            samesite="Strict",
        )
    return response
