"""Helpers the relay's blueprints share: the context, the caller's tenant, public URLs."""

from __future__ import annotations

import calendar
from datetime import date
from urllib.parse import quote

from flask import current_app, g, request
from redis.exceptions import RedisError

from app.core import logs, storage
from app.core.errors import Unauthorized, Unavailable
from app.stores.context import Context
from app.stores.tenants import Tenant


def storage_error(exc: RedisError) -> Unavailable | None:
    """Redis full, read-only or gone: 503 with Retry-After, so Zapier, Make and the API try again later
    (a 500 would say the relay is broken). Other Redis errors are bugs (None: answer 500)."""
    kind = storage.trouble(exc)
    if kind is None:
        return None
    storage.count(kind, "web", exc)
    return Unavailable(
        "storage_unavailable",
        storage.MESSAGES[kind],
        reason=kind,
        headers={"Retry-After": str(storage.RETRY_AFTER_SECONDS)},
    )


def ctx() -> Context:
    return current_app.extensions["relay"]


def require_tenant() -> None:
    """before_request hook: every route of the blueprint needs a valid relay API key."""
    authenticate()


def authenticate() -> Tenant:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "unauthorized",
            "Send your relay API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = ctx().tenants.authenticate(key.strip())
    if tenant is None:
        raise Unauthorized(
            "invalid_api_key",
            "That API key is not valid (revoked or mistyped).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    g.tenant = tenant
    logs.bind(tenant=tenant.tenant_id)
    return tenant


def tenant() -> Tenant:
    return g.tenant


def public(path: str) -> str:
    return ctx().config.public_url.rstrip("/") + path


def record_path(record_key: str) -> str:
    """Record keys travel percent-encoded in one path segment (':' and '/' included)."""
    return "/v1/records/" + quote(record_key, safe="")


def lenient_day(text: str) -> date:
    """YYYY-MM-DD (as the schemas' patterns take it), a day past its month's end read as the month's last."""
    year, month, day = (int(part) for part in text[:10].split("-"))
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))
