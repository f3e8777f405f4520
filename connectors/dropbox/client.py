"""The Dropbox SDK's client, pointed at the configured hosts through the outbound policy, and its errors as
the relay's (Retryable, Throttled, Permanent with what to fix): shared by deliveries and checks."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

import requests

from ..base import Delivery, Environment, Permanent, Retryable, Throttled
from .sdk import HOST_API, HOST_CONTENT, HOST_NOTIFY, Union, dropbox, exceptions

_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


# -- the SDK's errors --------------------------------------------------------------------------------


def call(request: Any) -> Any:
    """The SDK's answer; its transport, throttling and sign-in errors as the relay's."""
    try:
        return request()
    except exceptions.RateLimitError as exc:
        reason = str(exc.error.reason._tag) if exc.error is not None else "too_many_requests"
        if reason == "too_many_write_operations":
            raise Throttled(
                "Dropbox is busy with other writes to this folder's namespace "
                "(too_many_write_operations)",
                retry_after=exc.backoff,
            ) from None
        raise Throttled(
            f"Dropbox is throttling ({safe(reason)})", retry_after=exc.backoff
        ) from None
    except exceptions.AuthError as exc:
        raise _signed_out(exc) from None
    except exceptions.PathRootError as exc:
        tags, _ = tags_of(exc.error)
        raise Permanent(
            f"Dropbox refused the team space ({safe('/'.join(tags)) or 'path root'}): the account "
            "cannot write into the namespace root_namespace_id names; set it to the team's root "
            "namespace id (root_info of the account), or leave it empty for the member's own folder"
        ) from None
    except _Forbidden as exc:
        raise Permanent(str(exc)) from None
    except exceptions.BadInputError as exc:
        said = _oauth_error(exc.message)
        raise Permanent(f"Dropbox refused the request: {said}") from None
    except (exceptions.InternalServerError, exceptions.HttpError) as exc:
        raise Retryable(f"Dropbox answered {exc.status_code}") from None
    except requests.RequestException as exc:
        raise Retryable(f"Dropbox could not be reached: {type(exc).__name__}") from None


def _signed_out(exc: exceptions.AuthError) -> Permanent:
    tags, value = tags_of(exc.error)
    if tags[:1] == ["missing_scope"]:
        scope = safe(str(getattr(value, "required_scope", "") or "")) or "a scope"
        return Permanent(
            f"Dropbox: the app's token lacks the scope {scope}; tick it in the app's Permissions tab "
            "(dropbox.com/developers/apps) and connect again for a new refresh token"
        )
    return Permanent(
        f"Dropbox refused the credentials ({safe(tags[0]) if tags else 'auth'}): check the app key, "
        "secret and refresh token (was the app's access revoked?)"
    )


class _Forbidden(Exception):
    """Dropbox's 403 (AccessError): read here, since the SDK decodes it against each route's own error type
    and keeps only ``other``. Its user_message is Dropbox's words for the user (the data-transport limit)."""

    @classmethod
    def of(cls, response: Any) -> _Forbidden:
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        summary = str(body.get("error_summary") or "").rstrip("/.")
        user_message = body.get("user_message") or {}
        said = str(user_message.get("text") or "") if isinstance(user_message, dict) else ""
        said = re.sub(r"[\x00-\x1f\x7f]+", " ", said)[:300]
        text = f"Dropbox refused the request ({safe(summary) or '403'})"
        if summary.startswith("invalid_account_type/feature"):
            text += (
                ": the team's monthly data transport calls are spent (a Business plan limit); "
                "replay the dead letters after the 1st of the month, or move to a plan without it"
            )
        return cls(f"{text}. Dropbox says: {said}" if said else text)


def tags_of(error: Any) -> tuple[list[str], Any]:
    """The chain of a stone union's tags (["lookup_failed", "incorrect_offset"]) and the innermost value."""
    tags, value = [], error
    while isinstance(value, Union):
        tags.append(str(value._tag))
        value = value._value
    return tags, value


def refused(exc: exceptions.ApiError) -> Permanent:
    tags, _ = tags_of(exc.error)
    if "insufficient_space" in tags:
        return Permanent("Dropbox: the account is out of space")
    return Permanent(f"Dropbox refused the upload ({'/'.join(tags)[:200] or 'no error code'})")


def safe(code: str) -> str:
    """A Dropbox error code or scope as it may be shown; anything else is dropped."""
    return code if re.fullmatch(r"[A-Za-z0-9_.\-/]{1,100}", code) else ""


def _oauth_error(body: str) -> str:
    """Dropbox's error code (``invalid_grant``), never the rest of its answer."""
    try:
        code = json.loads(body).get("error")
    except (ValueError, AttributeError):
        code = None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "no error code"


# -- the client ----------------------------------------------------------------------------------------


class _Dropbox(dropbox.Dropbox):
    """The SDK pointed at the configured hosts: it reads them from DROPBOX_API_HOST at import otherwise,
    once per process, and signs in at the module's own API host whatever the client's map says."""

    def __init__(self, api_host: str, content_host: str, **kwargs):
        super().__init__(**kwargs)
        self._host_map = {
            HOST_API: api_host,
            HOST_CONTENT: content_host,
            HOST_NOTIFY: self._host_map[HOST_NOTIFY],
        }

    def refresh_access_token(self, host=None, scope=None):
        return super().refresh_access_token(host or self._host_map[HOST_API], scope)

    def raise_dropbox_error_for_resp(self, res):
        if res.status_code == 403:
            raise _Forbidden.of(res)
        return super().raise_dropbox_error_for_resp(res)


def client_for(delivery: Delivery, env: Environment) -> Any:
    """One client per credentials and process: it keeps its access token (4 hours) and connections."""
    config = delivery.config
    key = hashlib.sha256(
        json.dumps(
            {
                k: config.get(k)
                for k in ("app_key", "app_secret", "refresh_token", "root_namespace_id")
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    with _clients_lock:
        if key not in _clients:
            _clients[key] = new_client(config, env)
        return _clients[key]


def new_client(config: dict, env: Environment) -> Any:
    """A client of its own, that has not signed in yet (a check signs in afresh)."""
    root = config.get("root_namespace_id")
    headers = (
        {"Dropbox-API-Path-Root": json.dumps({".tag": "root", "root": str(root)})} if root else None
    )
    return _Dropbox(
        _host(env.settings["dropbox_api_url"]),
        _host(env.settings["dropbox_content_url"]),
        oauth2_refresh_token=config["refresh_token"],
        app_key=config["app_key"],
        app_secret=config.get("app_secret") or None,
        # the outbound policy's: no redirect, each connection to an address it checked
        session=env.settings["session"](),
        max_retries_on_error=0,
        max_retries_on_rate_limit=0,
        timeout=300,
        headers=headers,
        user_agent="overten-relay/0.1",
    )


def _host(url: str) -> str:
    """host[:port] of an https URL: the SDK builds https://{host}/2/... itself."""
    return str(url).split("://", 1)[-1].rstrip("/")
