"""The audit log: who changed what, when, from where, and whether it was done. Append-only: a Redis stream per
tenant, and one over all tenants for operators; an entry has the same id in both. There is no update or
delete here; only the retention sweep trims entries older than RELAY_AUDIT_RETENTION_SECONDS (docs/decisions/
0028-audit-log.md).

An entry holds ids and names, never a config, a key or a secret: callers hand in typed records, not bodies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from enum import StrEnum

from redis import Redis
from redis.exceptions import RedisError

from app.core import metrics
from app.stores.consumer_group import trim_before
from app.stores.events import iso

log = logging.getLogger(__name__)


class Action(StrEnum):
    """Every change of state the log records, defined once (the API's schema and the docs list the same)."""

    DESTINATION_CREATED = "destination.created"
    DESTINATION_CHANGED = "destination.changed"
    DESTINATION_DELETED = "destination.deleted"
    DESTINATION_CHECKED = "destination.checked"
    CONNECTION_CREATED = "connection.created"
    CONNECTION_CHANGED = "connection.changed"
    CONNECTION_DELETED = "connection.deleted"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    KEY_ROTATED = "key.rotated"
    BUDGET_SET = "budget.set"
    BUDGET_REMOVED = "budget.removed"
    RECORD_FORGOTTEN = "record.forgotten"
    DELIVERY_REPLAYED = "delivery.replayed"
    TASK_CANCELLED = "task.cancelled"
    TASK_RETRIED = "task.retried"
    BATCH_CANCELLED = "batch.cancelled"
    BATCH_RETRIED = "batch.retried"
    HOOK_SUBSCRIBED = "hook.subscribed"
    HOOK_UNSUBSCRIBED = "hook.unsubscribed"
    TENANT_CREATED = "tenant.created"
    SECRETS_ROTATED = "secrets.rotated"
    SIGNED_IN = "session.signed_in"
    SIGNED_OUT = "session.signed_out"
    MEMBER_ADDED = "member.added"
    MEMBER_REMOVED = "member.removed"
    ROLE_CHANGED = "member.role_changed"
    """People and roles (OpenID Connect sign-in): defined here so that the enum stays the one list."""


class ActorKind(StrEnum):
    API_KEY = "api_key"
    """A tenant's relay API key: ``id`` is its key id (the part of the key that is not secret)."""
    PERSON = "person"
    """Someone signed in through OpenID Connect: ``id`` is their subject."""
    OPERATOR_TOKEN = "operator_token"
    """Whoever signed in to the dashboard with RELAY_ADMIN_TOKEN (break-glass)."""
    SYSTEM = "system"
    """The relay itself, or its `relay` command run on a host (``id`` says which)."""


OK = "ok"
"""An entry's result when the change was made; otherwise the error code the caller was answered."""


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str
    tenant: str = ""
    """The tenant the actor belongs to (empty for operators and the system)."""
    name: str = ""
    """What to show: a tenant's name, a person's name or email, the operator's."""


@dataclass(frozen=True, slots=True)
class Target:
    type: str
    """destination, connection, hook, key, budget, record, delivery, task, batch, tenant, secrets, session."""
    id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    """The stream entry's id (its time in ms, a sequence): also the cursor of a page."""
    at: str
    action: str
    result: str
    tenant: str
    """Whose the target is ("" for the relay as a whole: secrets, operators' sign-ins)."""
    actor_kind: str
    actor_id: str
    actor_tenant: str
    actor_name: str
    target_type: str
    target_id: str
    target_name: str
    source: str
    """Where from: the client address as the relay's web service sees it, or ``cli@host``."""

    def view(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_stream(cls, entry_id: str, stored: dict[str, str]) -> AuditEntry:
        seconds = int(entry_id.partition("-")[0]) / 1000
        values = {name: stored.get(name, "") for name in _STORED}
        return cls(id=entry_id, at=iso(seconds), **values)


_STORED = tuple(f.name for f in fields(AuditEntry) if f.name not in ("id", "at"))
COLUMNS = tuple(f.name for f in fields(AuditEntry))
"""An export's columns, in order."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    """An actor's id (a key id, a person's subject, ``admin``)."""
    since: float | None = None
    until: float | None = None

    def admits(self, entry: AuditEntry) -> bool:
        return (self.action is None or entry.action == self.action) and (
            self.actor is None or entry.actor_id == self.actor
        )


def _ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


# XADD to the all-tenants stream, then the same id to the tenant's (always newer there: every entry of a
# tenant's stream went to the all-tenants stream first)
_APPEND = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
if KEYS[2] then redis.call('XADD', KEYS[2], id, unpack(ARGV)) end
return id
"""

SCAN_LIMIT = 5000
"""Entries one page looks at, at most: a filter that matches little ends a page short, with a cursor."""


class AuditLog:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix
        self._append = redis.register_script(_APPEND)

    def key_for(self, tenant_id: str | None) -> str:
        """A tenant's stream, or (None) the all-tenants stream."""
        return f"{self._prefix}audit:{tenant_id}" if tenant_id else f"{self._prefix}audit:all"

    def append(
        self, actor: Actor, action: Action, target: Target, result: str, source: str, tenant: str
    ) -> str | None:
        """Append one entry; its id, or None when Redis refused (logged: the change itself was made or
        refused already, and its answer is not turned into a failure by its record)."""
        stored = {
            "action": str(action),
            "result": result or OK,
            "tenant": tenant,
            "actor_kind": str(actor.kind),
            "actor_id": actor.id,
            "actor_tenant": actor.tenant,
            "actor_name": actor.name,
            "target_type": target.type,
            "target_id": target.id,
            "target_name": target.name,
            "source": source,
        }
        keys = [self.key_for(None)] + ([self.key_for(tenant)] if tenant else [])
        args = [part for pair in stored.items() for part in pair]
        try:
            entry_id = str(self._append(keys=keys, args=args))
        except RedisError:
            log.exception("audit entry not written: %s", stored)
            metrics.AUDIT_UNWRITTEN.inc()
            return None
        metrics.AUDIT_ENTRIES.labels(str(action), "ok" if result == OK else "refused").inc()
        return entry_id

    def page(
        self, tenant_id: str | None, wanted: AuditFilter, cursor: str | None, limit: int
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first: up to ``limit`` entries before ``cursor`` (an entry id) that ``wanted`` admits, and
        the cursor of the next page (None: no more)."""
        found: list[AuditEntry] = []
        last: str | None = None
        for looked, entry in enumerate(self._scan(tenant_id, wanted, cursor), start=1):
            last = entry.id
            if wanted.admits(entry):
                found.append(entry)
                if len(found) == limit:
                    break
            if looked >= SCAN_LIMIT:
                break
        else:
            return found, None  # the stream's end
        return found, last

    def every(self, tenant_id: str | None, wanted: AuditFilter) -> Iterator[AuditEntry]:
        """Every entry ``wanted`` admits, newest first (an export)."""
        return (e for e in self._scan(tenant_id, wanted, None) if wanted.admits(e))

    def _scan(
        self, tenant_id: str | None, wanted: AuditFilter, cursor: str | None
    ) -> Iterator[AuditEntry]:
        key = self.key_for(tenant_id)
        if cursor and _ms(cursor) == 0 and cursor.endswith("-0"):
            return  # nothing comes before the first possible id
        high = f"({cursor}" if cursor else "+"
        if wanted.until is not None and (cursor is None or _ms(cursor) > wanted.until * 1000):
            high = str(max(0, int(wanted.until * 1000)))  # the whole millisecond, all sequences
        low = str(max(0, int(wanted.since * 1000))) if wanted.since is not None else "-"
        while True:
            batch = self._redis.xrevrange(key, max=high, min=low, count=200)
            for entry_id, stored in batch:
                yield AuditEntry.from_stream(entry_id, stored)
            if len(batch) < 200:
                return
            high = f"({batch[-1][0]}"

    def trim_before(self, tenant_id: str | None, before: float) -> int:
        """Entries older than ``before`` removed (the retention sweep's, and nothing else's)."""
        return trim_before(self._redis, self.key_for(tenant_id), before)
