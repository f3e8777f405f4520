"""Saved destinations and REST-hook subscriptions. Secret fields (``writeOnly`` in the kind's schema) are
encrypted at rest and never returned."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from redis import Redis

import schemas
from app.core.crypto import SecretBox
from app.core.ids import new_id

HIDDEN = "********"


def secret_fields(kind: str) -> set[str]:
    properties = schemas.load(f"destinations/{kind}.json").get("properties", {})
    return {name for name, spec in properties.items() if spec.get("writeOnly")}


def check_config(kind: str, config: dict) -> dict:
    """Validate a destination config, naming fields as ``config.<field>``; fills in generated secrets."""
    try:
        schemas.validate(f"destinations/{kind}.json", config)
    except schemas.SchemaViolation as exc:
        raise schemas.SchemaViolation(
            [
                schemas.FieldError(f"config.{e.field}".replace(".body", ""), e.message)
                for e in exc.errors
            ]
        ) from None
    if kind == "webhook" and not config.get("secret"):
        config = {**config, "secret": new_webhook_secret()}
    return config


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def merged_config(kind: str, saved: dict, changes: dict) -> dict:
    """A saved config with ``changes`` over it; a secret field sent back as shown (HIDDEN) keeps its value."""
    hidden = secret_fields(kind)
    return {**saved, **{k: v for k, v in changes.items() if not (k in hidden and v == HIDDEN)}}


def public_config(kind: str, config: dict) -> dict:
    hidden = secret_fields(kind)
    return {k: (HIDDEN if k in hidden else v) for k, v in config.items()}


class DestinationStore:
    def __init__(self, redis: Redis, prefix: str, box: SecretBox):
        self._redis, self._prefix, self._box = redis, prefix, box

    def key_for(self, tenant_id: str) -> str:
        return f"{self._prefix}destinations:{tenant_id}"

    def create(
        self, tenant_id: str, name: str, kind: str, config: dict, export: str | None
    ) -> dict:
        destination = {
            "id": new_id("dst"),
            "name": name,
            "kind": kind,
            "export": export,
            "created_at": time.time(),
        }
        stored = {**destination, "config": self._box.seal(json.dumps(config))}
        self._redis.hset(self.key_for(tenant_id), destination["id"], json.dumps(stored))
        return {**destination, "config": public_config(kind, config)}

    def get(self, tenant_id: str, destination_id: str, reveal: bool = False) -> dict | None:
        raw = self._redis.hget(self.key_for(tenant_id), destination_id)
        return None if raw is None else self.from_stored(raw, reveal)

    def from_stored(self, raw: str, reveal: bool = False) -> dict:
        stored = json.loads(raw)
        config = json.loads(self._box.open(stored["config"]))
        return {**stored, "config": config if reveal else public_config(stored["kind"], config)}

    def list(self, tenant_id: str) -> list[dict]:
        saved = self._redis.hgetall(self.key_for(tenant_id))
        return [self.from_stored(saved[i]) for i in sorted(saved)]

    def update(self, tenant_id: str, destination_id: str, **changes: Any) -> dict | None:
        """Change a saved destination's ``name``, ``config`` (whole, already checked) or ``export``; None when
        there is no such destination."""
        raw = self._redis.hget(self.key_for(tenant_id), destination_id)
        if raw is None:
            return None
        stored = {
            **json.loads(raw),
            **{k: v for k, v in changes.items() if k in ("name", "export")},
        }
        if "config" in changes:
            stored["config"] = self._box.seal(json.dumps(changes["config"]))
        self._redis.hset(self.key_for(tenant_id), destination_id, json.dumps(stored))
        return self.from_stored(json.dumps(stored))

    def delete(self, tenant_id: str, destination_id: str) -> bool:
        saved = self.get(tenant_id, destination_id)
        if saved is None:
            return False
        self.clear_default(tenant_id, saved["kind"], destination_id)
        return bool(self._redis.hdel(self.key_for(tenant_id), destination_id))

    # -- a tenant's default write-back connection per platform ----------------------------------------

    def _defaults_key(self, tenant_id: str) -> str:
        return f"{self._prefix}write-back-defaults:{tenant_id}"

    def set_default(self, tenant_id: str, kind: str, destination_id: str) -> None:
        self._redis.hset(self._defaults_key(tenant_id), kind, destination_id)

    def clear_default(self, tenant_id: str, kind: str, destination_id: str) -> None:
        if self.default_for(tenant_id, kind) == destination_id:
            self._redis.hdel(self._defaults_key(tenant_id), kind)

    def default_for(self, tenant_id: str, kind: str) -> str | None:
        return self._redis.hget(self._defaults_key(tenant_id), kind)

    def defaults(self, tenant_id: str) -> dict[str, str]:
        return self._redis.hgetall(self._defaults_key(tenant_id))


class HookStore:
    def __init__(self, redis: Redis, prefix: str, box: SecretBox):
        self._redis, self._prefix, self._box = redis, prefix, box

    def key_for(self, tenant_id: str) -> str:
        return f"{self._prefix}hooks:{tenant_id}"

    def create(self, tenant_id: str, target_url: str, event: str) -> dict:
        """Subscribe; the answer carries the signing secret, once."""
        secret = new_webhook_secret()
        hook = {
            "id": new_id("hook"),
            "target_url": target_url,
            "event": event,
            "created_at": time.time(),
        }
        self._redis.hset(
            self.key_for(tenant_id),
            hook["id"],
            json.dumps({**hook, "secret": self._box.seal(secret)}),
        )
        return {**hook, "secret": secret}

    def get(self, tenant_id: str, hook_id: str, reveal: bool = False) -> dict | None:
        raw = self._redis.hget(self.key_for(tenant_id), hook_id)
        return None if raw is None else self.from_stored(raw, reveal)

    def from_stored(self, raw: str, reveal: bool = False) -> dict:
        hook: dict[str, Any] = json.loads(raw)
        if reveal:
            hook["secret"] = self._box.open(hook["secret"])
        else:
            hook.pop("secret")
        return hook

    def list(self, tenant_id: str, event: str | None = None) -> list[dict]:
        saved = self._redis.hgetall(self.key_for(tenant_id))
        hooks = [self.from_stored(saved[i]) for i in sorted(saved)]
        return [h for h in hooks if event is None or h["event"] == event]

    def delete(self, tenant_id: str, hook_id: str) -> bool:
        return bool(self._redis.hdel(self.key_for(tenant_id), hook_id))
