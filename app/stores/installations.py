"""Which relay tenant a Slack workspace belongs to, and its bot token (encrypted at rest). Filled by the
OAuth install flow; a single workspace can instead be configured with RELAY_SLACK_BOT_TOKEN and
RELAY_SLACK_TENANT_ID."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from app.core.config import RelayConfig
from app.core.crypto import SecretBox
from app.stores.resealing import Swapper


@dataclass(frozen=True)
class Installation:
    team_id: str
    team_name: str
    tenant_id: str
    bot_token: str
    bot_user_id: str = ""


CACHE_SECONDS = 30.0  # a workspace changes tenant only by installing again


class InstallationStore:
    def __init__(self, redis: Redis, prefix: str, box: SecretBox, config: RelayConfig):
        self._redis, self._prefix, self._box = redis, prefix, box
        # a single workspace configured by RELAY_SLACK_BOT_TOKEN and RELAY_SLACK_TENANT_ID
        configured = config.slack_bot_token and config.slack_tenant_id
        self._configured = (config.slack_tenant_id, config.slack_bot_token) if configured else None
        self._tenants: dict[str, tuple[float, str]] = {}

    def _key(self, team_id: str) -> str:
        return f"{self._prefix}slack:install:{team_id}"

    def save(self, installation: Installation) -> None:
        self._tenants.pop(installation.team_id, None)
        fields = {
            "team_id": installation.team_id,
            "team_name": installation.team_name,
            "tenant_id": installation.tenant_id,
            "bot_token": self._box.seal(installation.bot_token),
            "bot_user_id": installation.bot_user_id,
            "installed_at": time.time(),
        }
        self._redis.hset(self._key(installation.team_id), mapping=fields)

    def tenant_for(self, team_id: str) -> str | None:
        """The workspace's tenant id, without decrypting its token (the command acknowledgement's
        path, which has 3 seconds in all: kept in the process for a while)."""
        cached = self._tenants.get(team_id)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        tenant_id = self._redis.hget(self._key(team_id), "tenant_id") or (
            self._configured[0] if self._configured else None
        )
        if tenant_id:  # an unknown workspace is asked again next time: it may be installing now
            self._tenants[team_id] = (time.monotonic(), tenant_id)
        return tenant_id

    def find(self, team_id: str) -> Installation | None:
        raw = self._redis.hgetall(self._key(team_id))
        if raw:
            return Installation(
                raw["team_id"],
                raw["team_name"],
                raw["tenant_id"],
                self._box.open(raw["bot_token"]),
                raw.get("bot_user_id", ""),
            )
        if self._configured:
            tenant_id, bot_token = self._configured
            return Installation(team_id, "", tenant_id, bot_token)
        return None

    def reseal_all(self) -> int:
        """Every workspace's bot token re-encrypted with the newest key; returns how many."""
        swapper = Swapper(self._redis)
        return sum(
            swapper.swap(key, "bot_token", self._box.reseal)
            for key in self._redis.scan_iter(match=self._key("*"), count=1000, _type="HASH")
        )

    def claim_state(self, nonce: str, life: int) -> bool:
        """True the first time an install's OAuth state comes back: a state works once."""
        key = f"{self._prefix}slack:state-used:{nonce}"
        return bool(self._redis.set(key, "1", nx=True, ex=life))
