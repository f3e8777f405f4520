"""Saved destinations and REST-hook subscriptions. Secret fields (``writeOnly`` in the kind's schema) are
encrypted at rest and never returned: the records the stores read keep them sealed, and only the store's
``config(..., reveal=True)`` and ``secret`` open them."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

import schemas
from app.core.crypto import SecretBox
from app.core.ids import new_id
from app.stores.resealing import Swapper

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
    """A saved config with ``changes`` over it; a secret field sent back as shown (HIDDEN) keeps its value.
    A saved field the kind no longer has (an email's ``ca_file``) is dropped, so the change can be made."""
    hidden = secret_fields(kind)
    known = schemas.load(f"destinations/{kind}.json").get("properties", {})
    kept = {k: v for k, v in saved.items() if k in known}
    return {**kept, **{k: v for k, v in changes.items() if not (k in hidden and v == HIDDEN)}}


def public_config(kind: str, config: dict) -> dict:
    hidden = secret_fields(kind)
    return {k: (HIDDEN if k in hidden else v) for k, v in config.items()}


@dataclass(frozen=True, slots=True)
class SavedDestination:
    """A saved destination as stored (JSON in the tenant's hash), typed; ``connectors.base.Delivery`` is
    what a connector is given."""

    id: str
    name: str
    kind: str
    created_at: float
    config: str
    """Sealed: ``DestinationStore.config`` opens it."""
    export: str | None = None

    @classmethod
    def from_json(cls, raw: str) -> SavedDestination:
        """The one place a stored destination becomes values; keys this code does not know (written by a
        newer Relay during a rolling deploy) are left out rather than refused."""
        stored = json.loads(raw)
        return cls(
            id=stored["id"],
            name=stored["name"],
            kind=stored["kind"],
            created_at=float(stored["created_at"]),
            config=stored["config"],
            export=stored.get("export") or None,
        )


@dataclass(frozen=True, slots=True)
class Hook:
    """A hook subscription as stored (JSON in the tenant's hash), typed."""

    id: str
    target_url: str
    event: str
    created_at: float
    secret: str
    """Sealed: ``HookStore.secret`` opens it."""

    @classmethod
    def from_json(cls, raw: str) -> Hook:
        """The one place a stored hook becomes values; keys this code does not know are left out."""
        stored = json.loads(raw)
        return cls(
            id=stored["id"],
            target_url=stored["target_url"],
            event=stored["event"],
            created_at=float(stored["created_at"]),
            secret=stored["secret"],
        )


class DestinationStore:
    def __init__(self, redis: Redis, prefix: str, box: SecretBox):
        self._redis, self._prefix, self._box = redis, prefix, box

    def key_for(self, tenant_id: str) -> str:
        return f"{self._prefix}destinations:{tenant_id}"

    def create(
        self, tenant_id: str, name: str, kind: str, config: dict, export: str | None
    ) -> SavedDestination:
        stored = {
            "id": new_id("dst"),
            "name": name,
            "kind": kind,
            "export": export,
            "created_at": time.time(),
            "config": self._box.seal(json.dumps(config)),
        }
        raw = json.dumps(stored)
        self._redis.hset(self.key_for(tenant_id), stored["id"], raw)
        return SavedDestination.from_json(raw)

    def get(self, tenant_id: str, destination_id: str) -> SavedDestination | None:
        raw = self._redis.hget(self.key_for(tenant_id), destination_id)
        return None if raw is None else SavedDestination.from_json(raw)

    def config(self, saved: SavedDestination, reveal: bool = False) -> dict:
        """Its config, opened: the secret fields read HIDDEN unless ``reveal`` (to deliver, or to merge a
        change into)."""
        config = json.loads(self._box.open(saved.config))
        return config if reveal else public_config(saved.kind, config)

    def list(self, tenant_id: str) -> list[SavedDestination]:
        saved = self._redis.hgetall(self.key_for(tenant_id))
        return [SavedDestination.from_json(saved[i]) for i in sorted(saved)]

    def update(
        self, tenant_id: str, destination_id: str, **changes: Any
    ) -> SavedDestination | None:
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
        updated = json.dumps(stored)
        self._redis.hset(self.key_for(tenant_id), destination_id, updated)
        return SavedDestination.from_json(updated)

    def reseal_all(self, tenant_ids: list[str]) -> int:
        """These tenants' saved configs re-encrypted with the newest key; returns how many."""
        return _reseal_json_fields(self._redis, self._box, map(self.key_for, tenant_ids), "config")

    def delete(self, tenant_id: str, destination_id: str) -> bool:
        saved = self.get(tenant_id, destination_id)
        if saved is None:
            return False
        self.clear_default(tenant_id, saved.kind, destination_id)
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

    def create(self, tenant_id: str, target_url: str, event: str) -> tuple[Hook, str]:
        """Subscribe; returns the hook and its signing secret, for the answer to show once."""
        secret = new_webhook_secret()
        stored = {
            "id": new_id("hook"),
            "target_url": target_url,
            "event": event,
            "created_at": time.time(),
            "secret": self._box.seal(secret),
        }
        raw = json.dumps(stored)
        self._redis.hset(self.key_for(tenant_id), stored["id"], raw)
        return Hook.from_json(raw), secret

    def secret(self, hook: Hook) -> str:
        """Its signing secret, opened (to sign a delivery)."""
        return self._box.open(hook.secret)

    def list(self, tenant_id: str, event: str | None = None) -> list[Hook]:
        saved = self._redis.hgetall(self.key_for(tenant_id))
        hooks = [Hook.from_json(saved[i]) for i in sorted(saved)]
        return [h for h in hooks if event is None or h.event == event]

    def delete(self, tenant_id: str, hook_id: str) -> bool:
        return bool(self._redis.hdel(self.key_for(tenant_id), hook_id))

    def reseal_all(self, tenant_ids: list[str]) -> int:
        """These tenants' hooks' secrets re-encrypted with the newest key; returns how many."""
        return _reseal_json_fields(self._redis, self._box, map(self.key_for, tenant_ids), "secret")


def _reseal_json_fields(redis: Redis, box: SecretBox, keys, name: str) -> int:
    """In each hash of ``keys``, every field's JSON with its sealed ``name`` re-encrypted."""
    swapper, count = Swapper(redis), 0

    def change(raw: str) -> str:
        stored = json.loads(raw)
        return json.dumps({**stored, name: box.reseal(stored[name])})

    for key in keys:
        for field in redis.hkeys(key):
            count += swapper.swap(key, field, change)
    return count
