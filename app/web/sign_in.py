"""People sign in through the identity provider (OpenID Connect): /sign-in/oidc sends the browser there with
a new ``state``, ``nonce`` and PKCE verifier; /sign-in/oidc/callback (the redirect URI) finishes it.

The state is random, kept in Redis for one use and a few minutes (app.stores.sign_ins), and bound to the
browser that began the sign-in (a random value in its session cookie must match): a callback with a state
Relay did not make, one already used, or one begun in another browser is refused before the code is sent
anywhere."""

from __future__ import annotations

import secrets

from authlib.common.security import generate_token
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from app.domain import people
from app.stores.sign_ins import PendingSignIn
from app.web import dashboard_auth as auth
from app.web.base import ctx
from app.web.oidc import IdentityProvider, SignInRefused

bp = Blueprint("sign_in", __name__, url_prefix="/sign-in", template_folder="templates")
BROWSER_KEY = "sign-in-browser"


def _provider() -> IdentityProvider:
    return current_app.extensions["relay-identity-provider"]


def install_sign_in(app: Flask) -> None:
    config = app.extensions["relay"].config
    if config.oidc_issuer:
        if not (config.oidc_client_id and config.oidc_client_secret):
            raise ValueError(
                "RELAY_OIDC_ISSUER is set: set RELAY_OIDC_CLIENT_ID and RELAY_OIDC_CLIENT_SECRET too"
            )
        people.mapping(config)  # a mistake in RELAY_OIDC_ROLES stops the start, naming the entry
        app.extensions["relay-identity-provider"] = IdentityProvider(config)
    app.register_blueprint(bp)


def _safe_next(target: str) -> str:
    """Only back to a page of Relay's own (no open redirect through the sign-in)."""
    if target.startswith(("/dashboard", "/portal")) and not target.startswith("//"):
        return target
    return "/dashboard/"


@bp.get("/oidc")
def begin():
    if not ctx().config.oidc_issuer:
        abort(404)
    state, nonce, verifier = (generate_token(32), generate_token(32), generate_token(48))
    browser = session.get(BROWSER_KEY) or secrets.token_urlsafe(24)
    try:
        url = _provider().authorization_url(state, nonce, verifier)
    except SignInRefused as exc:
        return _refused(str(exc), 502)
    ctx().sign_ins.begin(
        state, PendingSignIn(browser, nonce, verifier, _safe_next(request.args.get("next", "")))
    )
    session[BROWSER_KEY] = browser
    return redirect(url)


@bp.get("/oidc/callback")
def callback():
    if not ctx().config.oidc_issuer:
        abort(404)
    pending = ctx().sign_ins.take(request.args.get("state", ""))
    browser = session.get(BROWSER_KEY)
    if (
        pending is None
        or not isinstance(browser, str)
        or not secrets.compare_digest(pending.browser, browser)
    ):
        return _refused(
            "This sign-in was not begun here, was finished already, or took too long: start again.",
            400,
        )
    try:
        claims = _provider().claims(request.args.to_dict(), pending.nonce, pending.code_verifier)
    except SignInRefused as exc:
        return _refused(str(exc), 401)
    _, _, session_id = people.signed_in(
        ctx(), _provider().issuer, claims, auth.provider_fingerprint()
    )
    auth.start(session_id)
    return redirect(pending.next_path)


def _refused(why: str, status: int):
    return render_template(
        "dashboard/login.html",
        error=why,
        oidc=bool(ctx().config.oidc_issuer),
        break_glass=bool(ctx().config.admin_token),
        next_path="/dashboard/",
    ), status


def login_url(next_path: str) -> str:
    return url_for("sign_in.begin", next=next_path)
