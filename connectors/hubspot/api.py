"""HubSpot's REST API over the relay's outbound client (``env.http``): the operator's CA file, the outbound
policy's checked addresses, no redirects and a timeout on every call. (hubspot-api-client took none of them:
its urllib3 pool used certifi only, no proxy unless configured per API, no timeout, and retried 429s itself.)

Each call is paced first (``env.pace``): every worker shares one schedule per token, under the account's
burst limit. A 429 is ``Throttled`` (it costs the delivery no attempt); a 401 on an OAuth connection gets one
fresh access token; a 403 ``MISSING_SCOPES`` names the scopes the app lacks."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..base import (
    Delivery,
    DeliveryError,
    Environment,
    Pace,
    Permanent,
    Retryable,
    Throttled,
    digest,
)
from ..retry_after import retry_after

PACE_SHARE = 0.9
"""Of the account's burst limit, what the relay's calls through one token may use."""
_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# per process: OAuth connection digest -> (access token, expiry)
_tokens: dict[str, tuple[str, float]] = {}


class TokenRefused(Permanent):
    """HubSpot does not take the token (401), or the OAuth app's refresh token."""


class MissingScopes(Permanent):
    """HubSpot's 403 MISSING_SCOPES: the app was not granted what this call needs."""

    def __init__(self, scopes: list[str]):
        self.scopes = scopes
        named = " and ".join(scopes) or "a scope this call needs"
        super().__init__(
            f"HubSpot: the app's token lacks {named} (403 MISSING_SCOPES). Add them to the private app "
            "(Settings > Integrations > Private apps > Scopes) or to the OAuth app and install it again, "
            "then replay"
        )


class InvalidValues(Permanent):
    """HubSpot's 400 VALIDATION_ERROR for property values: which property refused what kind of value."""

    def __init__(self, refusals: list[tuple[str, str]]):
        self.refusals = refusals
        said = "; ".join(f"{name} ({code})" for name, code in refusals) or "a value"
        super().__init__(f"HubSpot refused the value of {said} (400 VALIDATION_ERROR)")


@dataclass(frozen=True)
class Connection:
    """Who the relay is to HubSpot for a destination: a private app's token, or an OAuth app's refresh
    token; ``key`` names it without giving it away (its pace, its cached property definitions)."""

    token: str
    oauth: dict[str, str] | None

    @classmethod
    def of(cls, config: dict[str, Any]) -> Connection:
        return cls(str(config.get("token") or ""), config.get("oauth") or None)

    @property
    def key(self) -> str:
        if self.oauth:
            return digest(json.dumps(self.oauth, sort_keys=True))
        return digest(self.token)


class HubSpotApi:
    """HubSpot for one attempt (or one check) of a destination."""

    def __init__(self, delivery: Delivery, env: Environment):
        self.connection = Connection.of(delivery.config)
        self._env = env
        self._host = str(env.settings["hubspot_api_url"]).rstrip("/")
        self._timeout = float(env.settings.get("hubspot_timeout_seconds", 30.0))
        window = float(env.settings.get("hubspot_window_seconds", 10.0))
        calls = int(env.settings.get("hubspot_calls_per_window", 100))
        self._pace = Pace(
            f"hubspot:{self.connection.key}",
            per_second=calls * PACE_SHARE / window,
            what=f"HubSpot's {calls} calls per {window:g} s for an account",
        )
        self._access: str | None = None

    # -- calls ------------------------------------------------------------------------------------------

    def call(self, method: str, path: str, *, upload: bool = False, **kwargs: Any) -> dict:
        """One call; its JSON answer ({} when none). ``kwargs`` as httpx takes them (json, params, files,
        data); ``upload``: a file goes up, so the call may take ten times as long."""
        for refresh in (False, True):
            token = self.access_token(refresh)
            for _, (_, file, *_) in (kwargs.get("files") or {}).items():
                file.seek(0)  # a call made again sends the whole file again
            self._env.pace(self._pace)
            try:
                with self._env.http(timeout=self._timeout * (10 if upload else 1)) as client:
                    response = client.request(
                        method,
                        self._host + path,
                        headers={"Authorization": f"Bearer {token}", "User-Agent": "overten-relay"},
                        **kwargs,
                    )
            except httpx.HTTPError as exc:
                raise Retryable(f"HubSpot could not be reached: {type(exc).__name__}") from None
            if response.status_code == 401 and self.connection.oauth and not refresh:
                continue
            if response.status_code >= 400:
                raise classify(response)
            return response.json() if response.content else {}
        raise AssertionError("unreachable")

    def access_token(self, refresh: bool = False) -> str:
        if not self.connection.oauth:
            return self.connection.token
        if self._access is None or refresh:
            self._access = self._oauth_token(refresh)
        return self._access

    def token_scopes(self) -> set[str]:
        """The scopes HubSpot granted this connection's token (private apps' and OAuth's token-info
        endpoints; neither needs a scope)."""
        if self.connection.oauth:
            info = self.call("GET", f"/oauth/v1/access-tokens/{self.access_token()}")
        else:
            info = self.call(
                "POST",
                "/oauth/v2/private-apps/get/access-token-info",
                json={"tokenKey": self.connection.token},
            )
        return {str(scope) for scope in info.get("scopes") or []}

    def _oauth_token(self, refresh: bool) -> str:
        oauth = self.connection.oauth or {}
        key = hashlib.sha256(json.dumps(oauth, sort_keys=True).encode()).hexdigest()
        cached = _tokens.get(key)
        if cached and not refresh and cached[1] > time.time() + 60:
            return cached[0]
        self._env.pace(self._pace)
        try:
            with self._env.http(timeout=self._timeout) as client:
                response = client.post(
                    self._host + "/oauth/v1/token",
                    data={
                        "grant_type": "refresh_token",
                        "client_id": oauth.get("client_id", ""),
                        "client_secret": oauth.get("client_secret", ""),
                        "refresh_token": oauth.get("refresh_token", ""),
                    },
                )
        except httpx.HTTPError as exc:
            raise Retryable(
                f"HubSpot's token endpoint could not be reached: {type(exc).__name__}"
            ) from None
        if response.status_code in (400, 401, 403):
            raise TokenRefused(f"HubSpot refused the OAuth refresh token ({_category(response)})")
        if response.status_code >= 400:
            raise classify(response)
        answer = response.json()
        _tokens[key] = (
            str(answer["access_token"]),
            time.time() + int(answer.get("expires_in") or 1800),
        )
        return _tokens[key][0]


# -- answers --------------------------------------------------------------------------------------------


def classify(response: httpx.Response) -> DeliveryError:
    """What a refusal means for the delivery, in HubSpot's structured words only (its category, codes,
    scope and property names): no answer's free text goes to the tenant."""
    status, headers, body = response.status_code, response.headers, _body(response)
    category = _category(response)
    if status == 429:
        policy = str(body.get("policyName") or "")
        policy = policy if _CODE.fullmatch(policy) else ""
        wait = retry_after(headers.get("retry-after"))
        if wait is None:
            interval = _number(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
            wait = 3600.0 if policy == "DAILY" else (interval or 10_000) / 1000
        return Throttled(f"HubSpot is throttling ({policy or 'rate limit'})", retry_after=wait)
    if status == 401:
        return TokenRefused(f"HubSpot refused the token (401): {category}")
    if status == 403 and category == "MISSING_SCOPES":
        return MissingScopes(_required_scopes(body))
    if status == 403:
        return Permanent(f"HubSpot: the token may not do this (403): {category}")
    if status == 404:
        return Permanent(
            f"HubSpot: the record does not exist, or the token cannot see it (404): {category}"
        )
    if status == 400 and category == "VALIDATION_ERROR" and _refusals(body):
        return InvalidValues(_refusals(body))
    if status in (408, 409, 423) or status >= 500:
        return Retryable(
            f"HubSpot answered {status}: {category}",
            retry_after=retry_after(headers.get("retry-after")),
        )
    return Permanent(f"HubSpot refused the write ({status}): {category}")


def _required_scopes(body: dict) -> list[str]:
    found = []
    for error in body.get("errors") or []:
        context = (error or {}).get("context") or {}
        for key in ("requiredGranularScopes", "requiredScopes"):
            found += [str(s) for s in context.get(key) or [] if _CODE.fullmatch(str(s))]
    return sorted(set(found))


def _refusals(body: dict) -> list[tuple[str, str]]:
    """(property, HubSpot's code) of each value refused."""
    found = []
    for error in body.get("errors") or []:
        code = str((error or {}).get("code") or "")
        for name in ((error or {}).get("context") or {}).get("propertyName") or []:
            if _CODE.fullmatch(str(name)) and _CODE.fullmatch(code):
                found.append((str(name), code))
    return found


def _body(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _category(response: httpx.Response) -> str:
    body = _body(response)
    category = str(body.get("category") or body.get("status") or "")
    return category if _CODE.fullmatch(category) else f"{response.status_code} status"


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
