"""Access tokens for Google's APIs (Drive, Sheets) through google-auth: a service account (JWT bearer) or an
OAuth client with a refresh token, each kept per process until shortly before it expires.

The credentials' ``token_uri`` is the tenant's to write: it must be Google's token endpoint, the relay's
configured one, or one the operator allows (``google_token_uris``); the request goes through the outbound
policy's session (no redirect, the connection pinned to the checked address, the relay's CA bundle and the
environment's proxies), with a timeout of its own, and Google's answer is never copied into an error: its
status and error code are, with what the user should do about that code."""

from __future__ import annotations

import hashlib
import json
import re
import time

from google.auth import exceptions as google_errors
from google.auth.transport.requests import Request
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account

from .base import Environment, Permanent, Retryable

GOOGLE_TOKEN_URIS = frozenset(
    {
        "https://oauth2.googleapis.com/token",
        "https://accounts.google.com/o/oauth2/token",
        "https://www.googleapis.com/oauth2/v4/token",
    }
)
"""The token endpoints Google's own key files and client secrets name."""
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# per process: credentials and scopes digest -> (access token, expiry)
_tokens: dict[str, tuple[str, float]] = {}
TOKEN_TIMEOUT = 30.0
"""Seconds for a token request (google-auth's own default is 120)."""


class _Request(Request):
    """google-auth's transport with the relay's timeout: google-auth passes its own 120 s to every call."""

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(url, method, body, headers, timeout=TOKEN_TIMEOUT, **kwargs)


def access_token(info: dict, scopes: list[str], env: Environment, force: bool = False) -> str:
    """``info``: a service account key or an authorized_user's client and refresh token; ``force``: a fresh
    one (the API refused the last)."""
    key = hashlib.sha256(json.dumps([info, scopes], sort_keys=True).encode()).hexdigest()
    cached = _tokens.get(key)
    if cached and not force and cached[1] > time.time() + 60:
        return cached[0]
    token_uri = str(info.get("token_uri") or env.settings["drive_token_url"])
    if token_uri not in allowed_token_uris(env):
        raise Permanent(
            f"the credentials' token_uri {token_uri[:100]!r} is not Google's token endpoint "
            "(https://oauth2.googleapis.com/token); an operator can allow others"
        )
    if info["type"] == "service_account":
        credentials = service_account.Credentials.from_service_account_info(
            {**info, "token_uri": token_uri}, scopes=scopes, subject=info.get("subject")
        )
    else:
        credentials = oauth_credentials.Credentials(
            None,
            refresh_token=info["refresh_token"],
            token_uri=token_uri,
            client_id=info["client_id"],
            client_secret=info["client_secret"],
            scopes=scopes,
        )
    try:
        credentials.refresh(_Request(session=env.settings["session"](timeout=TOKEN_TIMEOUT)))
    except google_errors.RefreshError as exc:
        code = _error_code(exc)
        raise Permanent(
            f"Google refused the credentials ({code}){_advice(code, info, scopes)}"
        ) from None
    except google_errors.TransportError as exc:
        raise Retryable(
            f"Google's token endpoint could not be reached ({type(exc.__cause__ or exc).__name__})"
        ) from None
    _tokens[key] = (credentials.token, time.time() + 3000)
    return str(credentials.token)


def allowed_token_uris(env: Environment) -> set[str]:
    extra = str(env.settings.get("google_token_uris") or "").split(",")
    return {
        *GOOGLE_TOKEN_URIS,
        str(env.settings["drive_token_url"]),
        *filter(None, map(str.strip, extra)),
    }


def _advice(code: str, info: dict, scopes: list[str]) -> str:
    """What to do about a refused sign-in, by Google's error code and the kind of credentials."""
    user = info.get("type") != "service_account"
    if code == "invalid_grant" and user:
        return (
            ": the refresh token has expired or was revoked. An OAuth client whose consent screen is in "
            "Testing gets refresh tokens that expire after 7 days: publish the app (In production), then "
            "sign in again for a new refresh token"
        )
    if code == "invalid_grant":
        return ": the service account's key was deleted or disabled; make a new key"
    if code == "invalid_scope":
        return f": the credentials were not granted {' '.join(scopes)}; " + (
            "sign in again granting it" if user else "the key must allow it"
        )
    if code == "unauthorized_client" and info.get("subject"):
        return (
            ": the service account may not impersonate users. A Google Workspace admin allows it "
            "under Security > API controls > Domain-wide delegation, for the service account's client ID "
            f"and the scope {' '.join(scopes)}; or remove `subject` and use a shared drive"
        )
    return ""


def _error_code(exc: google_errors.RefreshError) -> str:
    """The OAuth error code of Google's answer (``invalid_grant``), never the rest of it: a token endpoint's
    answer is not ours to show."""
    answer = exc.args[1] if len(exc.args) > 1 else None
    code = answer.get("error") if isinstance(answer, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "no error code"
