"""Installing the Slack app into a workspace (OAuth v2) and tying the workspace to a relay tenant.

A tenant asks for an install link (signed, a week); following it sends the installer to Slack with a
signed, single-use `state` (10 minutes) naming the tenant; Slack sends them back with a code, which is
exchanged for the workspace's bot token (stored encrypted). What the installer should read is raised as a
RelayError: its message says what to do."""

from __future__ import annotations

import secrets
from typing import Protocol
from urllib.parse import urlencode

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from app.core.config import RelayConfig
from app.core.errors import Conflict, Forbidden, Invalid, NotFound
from app.core.tokens import TokenExpired, TokenInvalid, Tokens
from app.integrations.slack_manifest import BOT_SCOPES
from app.stores.installations import Installation, InstallationStore
from app.stores.tenants import TenantStore


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    config: RelayConfig
    tokens: Tokens
    tenants: TenantStore
    installations: InstallationStore


LINK_LIFE = 7 * 86_400
STATE_LIFE = 600


def install_link(ctx: Needs, tenant_id: str) -> str:
    token = ctx.tokens.signed("slack-install", {"t": tenant_id})
    return f"{ctx.config.public_url.rstrip('/')}/slack/install?{urlencode({'link': token})}"


def redirect_uri(ctx: Needs) -> str:
    return f"{ctx.config.public_url.rstrip('/')}/slack/oauth/callback"


def authorize_url(ctx: Needs, link: str) -> str:
    """Where to send the installer: Slack's consent page, with a state naming the tenant."""
    _require_app_credentials(ctx)
    tenant_id = _open(ctx, "slack-install", link, LINK_LIFE, "install link")["t"]
    if ctx.tenants.get(tenant_id) is None:
        raise NotFound("tenant_not_found", "The tenant behind this install link no longer exists.")
    state = ctx.tokens.signed("slack-oauth-state", {"t": tenant_id, "n": secrets.token_urlsafe(16)})
    query = {
        "client_id": ctx.config.slack_client_id,
        "scope": ",".join(BOT_SCOPES),
        "state": state,
        "redirect_uri": redirect_uri(ctx),
    }
    return f"{ctx.config.slack_authorize_url}?{urlencode(query)}"


def complete(ctx: Needs, code: str, state: str) -> Installation:
    """Slack sent the installer back: check the state, exchange the code, remember the workspace."""
    _require_app_credentials(ctx)
    opened = _open(ctx, "slack-oauth-state", state, STATE_LIFE, "sign-in with Slack")
    if not ctx.installations.claim_state(opened["n"], life=STATE_LIFE * 2):
        raise Conflict(
            "state_used", "This sign-in with Slack was already used. Start the install again."
        )
    client = WebClient(base_url=ctx.config.slack_api_url, timeout=30)
    try:
        answer = client.oauth_v2_access(
            client_id=ctx.config.slack_client_id,
            client_secret=ctx.config.slack_client_secret,
            code=code,
            redirect_uri=redirect_uri(ctx),
        ).data
    except SlackApiError as exc:
        error = exc.response.get("error", "") if exc.response is not None else ""
        raise Invalid(
            "install_refused",
            f"Slack did not accept the installation ({error or 'unknown error'}). "
            "Start the install again.",
        ) from None
    installation = Installation(
        team_id=answer["team"]["id"],
        team_name=answer["team"].get("name", ""),
        tenant_id=opened["t"],
        bot_token=answer["access_token"],
        bot_user_id=answer.get("bot_user_id", ""),
    )
    ctx.installations.save(installation)
    return installation


def _require_app_credentials(ctx: Needs) -> None:
    if not (ctx.config.slack_client_id and ctx.config.slack_client_secret):
        raise NotFound(
            "slack_not_configured",
            "Slack installs are not set up on this relay: set RELAY_SLACK_CLIENT_ID and "
            "RELAY_SLACK_CLIENT_SECRET (from the Slack app's Basic Information page).",
        )


def _open(ctx: Needs, purpose: str, token: str, max_age: float, what: str) -> dict:
    try:
        return ctx.tokens.open_signed(purpose, token, max_age)
    except TokenExpired:
        raise Forbidden(
            "token_expired", f"This {what} has expired. Start the install again."
        ) from None
    except TokenInvalid:
        raise Forbidden(
            "token_invalid", f"This {what} is not valid. Start the install again."
        ) from None
