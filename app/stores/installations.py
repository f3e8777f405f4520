"""Which relay tenant a Slack workspace belongs to, and its bot token (encrypted at rest). Filled by the
OAuth install flow; a single workspace can instead be configured with RELAY_SLACK_BOT_TOKEN and
RELAY_SLACK_TENANT_ID."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.stores.context import Context
from app.stores.resealing import Swapper


@dataclass(frozen=True)
class Installation:
    team_id: str
    team_name: str
    tenant_id: str
    bot_token: str
    bot_user_id: str = ""


def _key(ctx: Context, team_id: str) -> str:
    return ctx.key("slack", "install", team_id)


def reseal_all(ctx: Context) -> int:
    """Every workspace's bot token re-encrypted with the newest key; returns how many."""
    swapper = Swapper(ctx.redis)
    return sum(
        swapper.swap(key, "bot_token", ctx.box.reseal)
        for key in ctx.redis.scan_iter(match=_key(ctx, "*"), count=1000, _type="HASH")
    )


def save(ctx: Context, installation: Installation) -> None:
    _TENANTS.pop((ctx.config.redis_url, ctx.config.key_prefix, installation.team_id), None)
    ctx.redis.hset(
        _key(ctx, installation.team_id),
        mapping={
            "team_id": installation.team_id,
            "team_name": installation.team_name,
            "tenant_id": installation.tenant_id,
            "bot_token": ctx.box.seal(installation.bot_token),
            "bot_user_id": installation.bot_user_id,
            "installed_at": time.time(),
        },
    )


_TENANTS: dict[tuple[str, str, str], tuple[float, str | None]] = {}
CACHE_SECONDS = 30.0  # a workspace changes tenant only by installing again


def tenant_for(ctx: Context, team_id: str) -> str | None:
    """The workspace's tenant id, without decrypting its token (the command acknowledgement's path, which
    has 3 seconds in all: kept in the process for a while)."""
    cache_key = (ctx.config.redis_url, ctx.config.key_prefix, team_id)
    cached = _TENANTS.get(cache_key)
    if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    tenant_id = ctx.redis.hget(_key(ctx, team_id), "tenant_id") or (
        ctx.config.slack_tenant_id
        if ctx.config.slack_bot_token and ctx.config.slack_tenant_id
        else None
    )
    if tenant_id:  # an unknown workspace is asked again next time: it may be installing right now
        _TENANTS[cache_key] = (time.monotonic(), tenant_id)
    return tenant_id


def find(ctx: Context, team_id: str) -> Installation | None:
    raw = ctx.redis.hgetall(_key(ctx, team_id))
    if raw:
        return Installation(
            raw["team_id"],
            raw["team_name"],
            raw["tenant_id"],
            ctx.box.open(raw["bot_token"]),
            raw.get("bot_user_id", ""),
        )
    config = ctx.config
    if config.slack_bot_token and config.slack_tenant_id:
        return Installation(team_id, "", config.slack_tenant_id, config.slack_bot_token)
    return None


def claim_state(ctx: Context, nonce: str, life: int) -> bool:
    """True the first time an install's OAuth state comes back: a state works once."""
    return bool(ctx.redis.set(ctx.key("slack", "state-used", nonce), "1", nx=True, ex=life))
