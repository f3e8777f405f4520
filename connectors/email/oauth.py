"""Access tokens for SMTP's ``XOAUTH2`` sign-in: Microsoft 365 by an Entra app's client credentials (scope
``https://outlook.office365.com/.default``), Gmail by a Google service account acting for the mailbox through
domain-wide delegation, or an OAuth client's refresh token (scope ``https://mail.google.com/``). Each token is
kept per process until shortly before it expires; a token endpoint's answer is never copied into an error,
only its status and error code."""

from __future__ import annotations

import hashlib
import re
import threading
import time

import httpx

from .. import google_auth
from ..base import Environment, Permanent, Retryable

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# the app's credentials were refused: the same request will be refused again
_REFUSED = {
    "invalid_client",
    "unauthorized_client",
    "invalid_request",
    "invalid_scope",
    "invalid_grant",
}
_tokens: dict[str, tuple[str, float]] = {}  # per process: credentials digest -> (token, expiry)
_lock = threading.Lock()


def mailbox(config: dict) -> str:
    """The mailbox the sign-in speaks for: the user name, else the From address."""
    return str(config.get("username") or config["from"])


def token(config: dict, env: Environment, fresh: bool = False) -> str:
    """An access token for ``config``'s way of signing in (``auth``); ``fresh``: not the one kept (the
    server refused it)."""
    if config.get("auth") == "oauth_microsoft":
        return _microsoft(config, env, fresh)
    info = dict(config["google_credentials"])
    if info.get("type") == "service_account":
        info["subject"] = mailbox(
            config
        )  # domain-wide delegation: the service account acts as the user
    return google_auth.access_token(info, [GOOGLE_SCOPE], env, force=fresh)


def xoauth2(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (smtplib encodes it)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def _microsoft(config: dict, env: Environment, fresh: bool) -> str:
    login = str(env.settings["graph_login_url"]).rstrip("/")
    url = f"{login}/{config['tenant_id']}/oauth2/v2.0/token"
    key = hashlib.sha256(
        "\0".join([url, config["client_id"], config["client_secret"]]).encode()
    ).hexdigest()
    with _lock:
        kept = _tokens.get(key)
    if kept and not fresh and kept[1] > time.time() + 60:
        return kept[0]
    form = {
        "grant_type": "client_credentials",
        "client_id": config["client_id"],
        "client_secret": config["client_secret"],
        "scope": MICROSOFT_SCOPE,
    }
    try:
        with env.http(timeout=30) as client:
            answer = client.post(url, data=form)
    except httpx.HTTPError as exc:
        raise Retryable(f"Microsoft Entra could not be reached: {type(exc).__name__}") from None
    body = _json(answer)
    if answer.status_code == 200 and isinstance(body.get("access_token"), str):
        life = float(body.get("expires_in") or 3599)
        with _lock:
            _tokens[key] = (body["access_token"], time.time() + life)
        return body["access_token"]
    error = str(body.get("error") or "")
    error = error if _CODE.fullmatch(error) else "no error code"  # never its description
    if error in _REFUSED or answer.status_code in (400, 401, 403, 404):
        raise Permanent(
            f"Microsoft Entra refused the app's credentials ({error}): check the tenant, the client id "
            "and the client secret's value"
        )
    raise Retryable(f"Microsoft Entra did not sign the app in ({answer.status_code} {error})")


def _json(answer: httpx.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
