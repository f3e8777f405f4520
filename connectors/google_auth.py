"""Access tokens for Google's APIs (Drive, Sheets) through google-auth: a service account (JWT bearer) or an
OAuth client with a refresh token, each kept per process until shortly before it expires."""

from __future__ import annotations

import hashlib
import json
import time

from google.auth import exceptions as google_errors
from google.auth.transport.requests import Request
from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account

from .base import Environment, Permanent, Retryable

# per process: credentials and scopes digest -> (access token, expiry)
_tokens: dict[str, tuple[str, float]] = {}


def access_token(info: dict, scopes: list[str], env: Environment, force: bool = False) -> str:
    """``info``: a service account key or an authorized_user's client and refresh token; ``force``: a fresh
    one (the API refused the last)."""
    key = hashlib.sha256(json.dumps([info, scopes], sort_keys=True).encode()).hexdigest()
    cached = _tokens.get(key)
    if cached and not force and cached[1] > time.time() + 60:
        return cached[0]
    token_uri = info.get("token_uri") or env.settings["drive_token_url"]
    if token_uri != env.settings["drive_token_url"]:
        env.settings["check_url"](token_uri)  # a user-supplied URL like any other
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
        credentials.refresh(Request())
    except google_errors.RefreshError as exc:
        raise Permanent(f"Google refused the credentials: {exc}") from None
    except google_errors.TransportError as exc:
        raise Retryable(f"Google's token endpoint could not be reached: {exc}") from None
    _tokens[key] = (credentials.token, time.time() + 3000)
    return str(credentials.token)
