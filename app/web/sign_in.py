"""People sign in through the identity provider (OpenID Connect): /sign-in/oidc sends the browser there with
a new ``state``, ``nonce`` and PKCE verifier; /sign-in/oidc/callback (the redirect URI) finishes it.

The state, nonce and verifier are kept in the browser's signed session cookie (the sign-in is bound to the
browser that began it, and an anonymous visitor writes nothing to Redis), for one use and ten minutes: a
callback with a state Relay did not make, one already used, or one begun in another browser is refused
before the code is sent anywhere. The cookie is signed, not encrypted: it shows its own browser the PKCE
verifier, which is that browser's to know."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

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
from app.web import dashboard_auth as auth
from app.web.base import ctx
from app.web.oidc import IdentityProvider, SignInRefused

bp = Blueprint("sign_in", __name__, url_prefix="/sign-in", template_folder="templates")
PENDING_KEY = "oidc-pending"
PENDING_SECONDS = 600
"""How long a person has at the identity provider's pages before the sign-in must start again."""
PENDING_AT_ONCE = 3
"""Sign-ins one browser may have under way at once (tabs)."""


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What the callback must find, under its ``state``, to finish a sign-in begun at the provider."""

    nonce: str
    code_verifier: str
    next_path: str
    begun_at: float


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


def _pending() -> dict[str, dict]:
    found = session.get(PENDING_KEY)
    return found if isinstance(found, dict) else {}


@bp.get("/oidc")
def begin():
    if not ctx().config.oidc_issuer:
        abort(404)
    state, nonce, verifier = (generate_token(32), generate_token(32), generate_token(48))
    try:
        url = _provider().authorization_url(state, nonce, verifier)
    except SignInRefused as exc:
        return _refused(str(exc), 502)
    pending = PendingSignIn(nonce, verifier, _safe_next(request.args.get("next", "")), time.time())
    # the newest few (sign-ins begun in other tabs of this browser), in this browser's cookie alone
    kept = list(_pending().items())[-(PENDING_AT_ONCE - 1) :]
    session[PENDING_KEY] = {**dict(kept), state: asdict(pending)}
    return redirect(url)


@bp.get("/oidc/callback")
def callback():
    if not ctx().config.oidc_issuer:
        abort(404)
    waiting = _pending()
    raw = waiting.pop(request.args.get("state", ""), None)  # once: the cookie is written without it
    session[PENDING_KEY] = waiting
    pending = PendingSignIn(**raw) if isinstance(raw, dict) else None
    if pending is None or time.time() - pending.begun_at > PENDING_SECONDS:
        return _refused(
            "This sign-in was not begun in this browser, was finished already, or took too long: "
            "start again.",
            400,
        )
    try:
        claims = _provider().claims(request.args.to_dict(), pending.nonce, pending.code_verifier)
    except SignInRefused as exc:
        return _refused(str(exc), 401)
    _, _, session_id = people.signed_in(
        ctx(), _provider().issuer, claims, auth.provider_fingerprint(), request.remote_addr or ""
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
