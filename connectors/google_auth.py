"""Access tokens for Google's APIs (Drive, Sheets) through google-auth: a service account (JWT bearer) or an
OAuth client with a refresh token, each kept per process until shortly before it expires.

The credentials' ``token_uri`` is the tenant's to write: it must be Google's token endpoint, the relay's
configured one, or one the operator allows (``google_token_uris``); the request goes through the outbound
policy's session (no redirect, the connection pinned to the checked address), and Google's answer is never
copied into an error: its status and error code are."""

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
        credentials.refresh(Request(session=env.settings["session"](timeout=30)))
    except google_errors.RefreshError as exc:
        raise Permanent(f"Google refused the credentials ({_error_code(exc)})") from None
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


def _error_code(exc: google_errors.RefreshError) -> str:
    """The OAuth error code of Google's answer (``invalid_grant``), never the rest of it: a token endpoint's
    answer is not ours to show."""
    answer = exc.args[1] if len(exc.args) > 1 else None
    code = answer.get("error") if isinstance(answer, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "no error code"
