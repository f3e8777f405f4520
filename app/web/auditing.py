"""What the web service writes to the audit log (app.stores.audit): who the caller is, where from, and the
outcome of a handler that changes state. A handler says what it does with ``@audited(...)`` under its
``@route``; the dashboard's handlers, which answer with pages, call ``record`` themselves.

Only callers who got past authentication are recorded: an API handler runs after its API key was
accepted, a dashboard handler after the sign-in (the sign-in itself records its attempts)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from werkzeug.exceptions import HTTPException

from app.core.errors import RelayError
from app.domain import people
from app.stores.audit import OK, Action, Actor, ActorKind, Target
from app.web import dashboard_auth
from app.web.base import ctx
from schemas import SchemaViolation
from schemas.http import ApiError

View = TypeVar("View", bound=Callable[..., Any])


def client_address() -> str:
    """The peer's address as this process sees it: the same one the sign-in throttle counts by. (The relay
    reads no X-Forwarded-For: behind a proxy it is the proxy's address, as docs/operations.md says.)"""
    return request.remote_addr or ""


def api_actor() -> Actor:
    """The API key that authenticated this request: its key id (``rly_<key id>_<secret>``), never the key."""
    tenant = g.tenant
    key = request.headers.get("Authorization", "").partition(" ")[2].strip()
    key_id = key.split("_")[1] if key.count("_") >= 2 else ""
    return Actor(ActorKind.API_KEY, key_id, tenant=tenant.tenant_id, name=tenant.name)


def dashboard_actor() -> Actor:
    """Who is signed in to the dashboard: a person once people sign in as themselves, else the holder of
    the admin token."""
    signed_in = dashboard_auth.current()
    person = signed_in.person if signed_in is not None else None
    return people.actor(person)


def record(
    actor: Actor, action: Action, target: Target, result: str = OK, tenant: str = ""
) -> None:
    ctx().audit.append(actor, action, target, result, client_address(), tenant)


def error_code(exc: BaseException) -> str:
    """The code the caller is answered for ``exc`` (as app.web.errors and schemas.http answer it)."""
    if isinstance(exc, RelayError | ApiError):
        return exc.code
    if isinstance(exc, SchemaViolation):
        return "invalid_request"
    if isinstance(exc, HTTPException):
        return (exc.name or "error").lower().replace(" ", "_")
    return "internal_error"


def audited(
    action: Action | Mapping[str, Action],
    target_type: str,
    id_arg: str = "",
    default_id: str = "",
) -> Callable[[View], View]:
    """Record the API handler's outcome: ``action`` (or, for a handler of several methods, the action of
    this request's method; methods not named are not recorded), on the target whose id is the handler's
    ``id_arg`` argument, else the answer's ``id`` or ``<target_type>_id``, else ``default_id``."""

    def decorate(view: View) -> View:
        @wraps(view)
        def recorded(*args, **kwargs):
            chosen = action if isinstance(action, Action) else action.get(request.method)
            if chosen is None:
                return view(*args, **kwargs)
            target_id = str(kwargs.get(id_arg) or "")
            try:
                answer = view(*args, **kwargs)
            except Exception as exc:
                _record_api(chosen, Target(target_type, target_id or default_id), error_code(exc))
                raise
            shown = _shown(answer)
            found_id = target_id or shown.get("id") or shown.get(f"{target_type}_id") or default_id
            _record_api(
                chosen, Target(target_type, str(found_id), str(shown.get("name") or "")), OK
            )
            return answer

        return recorded  # type: ignore[return-value]

    return decorate


def _record_api(action: Action, target: Target, result: str) -> None:
    actor = api_actor()
    record(actor, action, target, result, tenant=actor.tenant)


def _shown(answer: Any) -> dict:
    """The JSON object a handler answered, if it answered one (``response`` or ``(response, status)``)."""
    response = answer[0] if isinstance(answer, tuple) else answer
    body = response.get_json(silent=True) if hasattr(response, "get_json") else None
    return body if isinstance(body, dict) else {}


def operator_did(action: Action, target: Target, result: str = OK, tenant: str = "") -> None:
    """A dashboard action by whoever is signed in, on ``target`` (its tenant found from the target when
    not given)."""
    record(dashboard_actor(), action, target, result, tenant or _owner(target))


def _owner(target: Target) -> str:
    """The tenant of a task, batch or delivery ("" when it is gone, or for other targets)."""
    stores = ctx()
    found: Any = None
    if target.type == "task":
        found = stores.tasks.get(target.id)
    elif target.type == "batch":
        found = stores.batches.get(target.id)
    elif target.type == "delivery":
        found = stores.deliveries.get(target.id)
    return found.tenant_id if found is not None else ""


def installed(team_id: str, team_name: str, tenant_id: str) -> None:
    """A Slack workspace connected through a tenant's install link: whoever followed the link did it (the
    link, signed for the tenant, is their only credential)."""
    actor = Actor(
        ActorKind.SYSTEM, "slack_install_link", tenant=tenant_id, name="Slack install link"
    )
    record(
        actor, Action.CONNECTION_CREATED, Target("connection", team_id, team_name), OK, tenant_id
    )
