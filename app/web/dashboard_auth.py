"""Who is signed in to Relay's pages, and what a signed-in browser may be made to do.

- One way to be signed in: a sign-in lives in Redis (app.stores.sign_ins); the session cookie carries only
  its id, the CSRF token and flash messages. A person signs in through the identity provider
  (app.web.sign_in); ``RELAY_ADMIN_TOKEN`` signs in as an operator marked break-glass. Signing out ends the
  sign-in for every copy of the cookie; one made with another admin token, or another identity provider or
  client, than today's is refused.
- What a person may do is read at each request from their roles (app.domain.people), so a role given or
  taken applies at once (taking one also ends their sign-ins).
- Failed admin-token sign-ins are counted per client address (flask-limiter, counters in Redis): past
  RELAY_ADMIN_LOGIN_LIMIT the sign-in page answers 429 whatever token it is sent.
- rq-dashboard's own routes change state on POST only, and only with the CSRF token, which its scripts send
  from the ``_csrf_token`` cookie set here (they read that cookie by name)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, request, session
from flask.wrappers import Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect, generate_csrf

from app.domain import people
from app.stores.people import Person
from app.stores.sign_ins import SignIn, SignInMethod
from app.web.base import ctx
from app.web.limits import only_on, storage

csrf = CSRFProtect()
RQ_CSRF_COOKIE = "_csrf_token"
"""The cookie rq-dashboard's scripts read and send back as X-CSRFToken (rq_dashboard/.../dashboard.js)."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The browser's live sign-in, with who it is and what they may do now."""

    sign_in: SignIn
    person: Person | None
    """None: break-glass."""
    roles: people.Roles

    @property
    def break_glass(self) -> bool:
        return self.sign_in.method is SignInMethod.BREAK_GLASS

    @property
    def operator(self) -> bool:
        return self.break_glass or self.roles.operator

    @property
    def label(self) -> str:
        if self.person is None:
            return "break-glass (admin token)"
        return self.person.label


def _fingerprint(credential: str) -> str:
    """Which credential a sign-in was made with, without keeping it (keyed with the relay's secret)."""
    return hmac.new(ctx().secret.encode(), credential.encode(), hashlib.sha256).hexdigest()


def fingerprint(admin_token: str) -> str:
    return _fingerprint("admin-token:" + admin_token)


def provider_fingerprint() -> str:
    """Of the identity provider and Relay's client there: another provider's sign-ins are refused."""
    config = ctx().config
    return _fingerprint(f"oidc:{config.oidc_issuer.rstrip('/')}\0{config.oidc_client_id}")


def enabled() -> bool:
    """The pages exist when something can sign in to them."""
    config = ctx().config
    return bool(config.admin_token or config.oidc_issuer)


def current() -> SignedIn | None:
    """This browser's live sign-in, if any (read once per request: the gate and the page both ask)."""
    if "signed_in" not in g:
        g.signed_in = _read()
    return g.signed_in


def _read() -> SignedIn | None:
    session_id = session.get("sid")
    if not isinstance(session_id, str):
        return None
    found = ctx().sign_ins.get(session_id)
    if found is None:
        return None
    # made with another credential: refused, not deleted (during a rolling restart a process still running
    # with the old one would otherwise end the sign-ins made on the new one)
    if found.method is SignInMethod.BREAK_GLASS:
        token = ctx().config.admin_token
        if not token or not hmac.compare_digest(found.fingerprint, fingerprint(token)):
            return None
        return SignedIn(found, None, people.Roles(()))
    if not ctx().config.oidc_issuer or not hmac.compare_digest(
        found.fingerprint, provider_fingerprint()
    ):
        return None
    person = ctx().people.get(found.person_id)
    if person is None:
        return None
    return SignedIn(found, person, people.roles(ctx(), person.person_id))


def start(session_id: str) -> None:
    """The browser holds a new sign-in, with a new cookie (whatever it came with is not reused, and the
    sign-in it held, if any, ends: a copy of the old cookie signs no one in)."""
    if isinstance(old := session.get("sid"), str):
        ctx().sign_ins.end(old)
    session.clear()
    session["sid"] = session_id
    g.pop("signed_in", None)


def due_for_recheck(found: SignedIn) -> bool:
    """A person's sign-in old enough to be sent through the identity provider again (their groups, and
    whether the provider still knows them, are read anew)."""
    every = ctx().config.oidc_recheck_seconds
    return found.person is not None and every > 0 and time.time() - found.sign_in.created_at > every


def sign_in() -> None:
    """Break-glass: the admin token was given."""
    origin = request.remote_addr or ""
    start(people.break_glass(ctx(), fingerprint(ctx().config.admin_token), origin))


def sign_out() -> None:
    if isinstance(session_id := session.get("sid"), str):
        people.sign_out(ctx(), session_id, request.remote_addr or "")
    session.clear()
    g.pop("signed_in", None)


def token_matches(given: str) -> bool:
    token = ctx().config.admin_token
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def install(app: Flask, login_endpoint: str) -> None:
    """The session store, CSRF protection, and the sign-in throttle on the view of ``login_endpoint`` (only
    failed sign-ins, answered 401, count; the limiter's hooks run for the dashboard's requests alone)."""
    relay = app.extensions["relay"]
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
