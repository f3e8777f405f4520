"""Tenants: who may use the relay, with which upstream account. Keys are stored hashed; upstream keys
and webhook secrets are encrypted at rest."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from redis import Redis

from app.core.crypto import SecretBox
from app.core.ids import new_id
from app.stores.usage import number

_CACHE_SECONDS = 5.0  # decrypted tenants are cached briefly: webhook intake reads one per request


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    upstream_url: str
    upstream_key: str
    webhook_secret: str
    created_at: float

    def __repr__(self) -> str:  # never print secrets, even by accident
        return f"Tenant({self.tenant_id!r}, {self.name!r})"


def _check_webhook_secret(secret: str) -> None:
    """Standard Webhooks secrets are ``whsec_`` + base64; standardwebhooks itself accepts almost anything."""
    body = secret.removeprefix("whsec_")
    try:
        valid = secret.startswith("whsec_") and bool(
            base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        )
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise ValueError("the webhook secret must be a whsec_ secret (base64 after the prefix)")


def _hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantStore:
    def __init__(self, redis: Redis, prefix: str, box: SecretBox):
        self._redis, self._prefix, self._box = redis, prefix, box
        self._cache: dict[str, tuple[float, Tenant]] = {}

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def key_for(self, tenant_id: str) -> str:
        return self._key("tenant", tenant_id)

    def usual_ms(self, tenant_id: str, document_format: str) -> float | None:
        """How long the tenant's tasks of this format usually take, in ms (kept by each task's end)."""
        value = self._redis.hget(self.key_for(tenant_id), f"usual_ms:{document_format}")
        return float(value) if value else None

    def create(
        self, name: str, upstream_url: str, upstream_key: str, webhook_secret: str
    ) -> tuple[Tenant, str]:
        """Create a tenant; returns it and its first relay API key (shown once)."""
        if not name.strip():
            raise ValueError("the tenant name must not be empty")
        if not upstream_url.startswith(("http://", "https://")):
            raise ValueError("the upstream URL must start with http:// or https://")
        _check_webhook_secret(webhook_secret)
        tenant_id = new_id("ten")
        record = {
            "tenant_id": tenant_id,
            "name": name.strip(),
            "upstream_url": upstream_url.rstrip("/"),
            "upstream_key": self._box.seal(upstream_key),
            "webhook_secret": self._box.seal(webhook_secret),
            "created_at": time.time(),
            "credits_used": 0,
            "duration_ms": 0,
            "task_count": 0,
        }
        pipe = self._redis.pipeline()
        pipe.hset(self._key("tenant", tenant_id), mapping=record)
        pipe.sadd(self._key("tenants"), tenant_id)
        pipe.execute()
        tenant = self.get(tenant_id)
        assert tenant is not None
        return tenant, self.issue_key(tenant_id)

    def get(self, tenant_id: str) -> Tenant | None:
        cached = self._cache.get(tenant_id)
        if cached and time.monotonic() - cached[0] < _CACHE_SECONDS:
            return cached[1]
        raw = self._redis.hgetall(self._key("tenant", tenant_id))
        if not raw:
            return None
        tenant = Tenant(
            tenant_id=raw["tenant_id"],
            name=raw["name"],
            upstream_url=raw["upstream_url"],
            upstream_key=self._box.open(raw["upstream_key"]),
            webhook_secret=self._box.open(raw["webhook_secret"]),
            created_at=float(raw["created_at"]),
        )
        self._cache[tenant_id] = (time.monotonic(), tenant)
        return tenant

    def find(self, name_or_id: str) -> Tenant | None:
        if name_or_id.startswith("ten_"):
            return self.get(name_or_id)
        return next((t for t in self.list() if t.name == name_or_id), None)

    def ids(self) -> list[str]:
        return sorted(self._redis.smembers(self._key("tenants")))

    def list(self) -> list[Tenant]:
        return [t for tid in self.ids() if (t := self.get(tid))]

    def update_upstream(
        self, tenant_id: str, upstream_key: str | None = None, webhook_secret: str | None = None
    ):
        fields = {}
        if upstream_key:
            fields["upstream_key"] = self._box.seal(upstream_key)
        if webhook_secret:
            _check_webhook_secret(webhook_secret)
            fields["webhook_secret"] = self._box.seal(webhook_secret)
        if fields:
            self._redis.hset(self._key("tenant", tenant_id), mapping=fields)
            self._cache.pop(tenant_id, None)

    # -- relay API keys -----------------------------------------------------------------------------

    def issue_key(self, tenant_id: str) -> str:
        key_id = secrets.token_hex(4)
        api_key = f"rly_{key_id}_{secrets.token_urlsafe(24)}"
        meta = {"key_id": key_id, "hash": _hash(api_key), "created_at": time.time()}
        pipe = self._redis.pipeline()
        pipe.set(self._key("apikey", _hash(api_key)), tenant_id)
        pipe.hset(self._key("tenant", tenant_id, "keys"), key_id, json.dumps(meta))
        pipe.execute()
        return api_key

    def keys(self, tenant_id: str) -> list[dict]:
        metas = [
            json.loads(v)
            for v in self._redis.hgetall(self._key("tenant", tenant_id, "keys")).values()
        ]
        return sorted(
            ({"key_id": m["key_id"], "created_at": m["created_at"]} for m in metas),
            key=lambda m: m["created_at"],
        )

    def revoke_key(self, tenant_id: str, key_id: str) -> bool:
        raw = self._redis.hget(self._key("tenant", tenant_id, "keys"), key_id)
        if raw is None:
            return False
        pipe = self._redis.pipeline()
        pipe.delete(self._key("apikey", json.loads(raw)["hash"]))
        pipe.hdel(self._key("tenant", tenant_id, "keys"), key_id)
        pipe.execute()
        return True

    def rotate_key(self, tenant_id: str, keep_old: bool = False) -> str:
        """Issue a new key; unless ``keep_old``, revoke every other key of the tenant."""
        old = [k["key_id"] for k in self.keys(tenant_id)]
        new_key = self.issue_key(tenant_id)
        if not keep_old:
            for key_id in old:
                self.revoke_key(tenant_id, key_id)
        return new_key

    def authenticate(self, api_key: str) -> Tenant | None:
        if not api_key.startswith("rly_"):
            return None
        # Looked up by the SHA-256 of the key: timing reveals nothing about the key itself.
        tenant_id = self._redis.get(self._key("apikey", _hash(api_key)))
        return self.get(tenant_id) if tenant_id else None

    # -- usage and maintenance ----------------------------------------------------------------------

    def usage(self, tenant_id: str) -> dict:
        credits, ms, tasks = self._redis.hmget(
            self._key("tenant", tenant_id), "credits_used", "duration_ms", "task_count"
        )
        return {
            "credits_used": number(credits),
            "duration_ms": int(ms or 0),
            "task_count": int(tasks or 0),
        }

    def reseal_all(self) -> int:
        """Re-encrypt every stored secret with the newest encryption key."""
        count = 0
        for tenant_id in self._redis.smembers(self._key("tenants")):
            key = self._key("tenant", tenant_id)
            sealed = self._redis.hmget(key, "upstream_key", "webhook_secret")
            self._redis.hset(
                key,
                mapping={
                    "upstream_key": self._box.reseal(sealed[0]),
                    "webhook_secret": self._box.reseal(sealed[1]),
                },
            )
            count += 1
        return count
