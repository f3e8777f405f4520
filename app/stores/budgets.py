"""Credit budgets per calendar month: one for a tenant, one per record, in one hash per tenant (scope ->
JSON), so a submit reads every budget that applies to it in one call; and which alerts went out, per
budget, month and share, each at most once."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

TENANT = "tenant"


@dataclass(frozen=True)
class BudgetScopes:
    key: str
    """The tenant's budgets hash."""
    fields: tuple[str, ...]
    """The tenant's own budget, and the record's."""


def scope_of(record_key: str | None) -> str:
    """A budget's place in the tenant's hash: the tenant's own, or a record's."""
    return f"record:{record_key}" if record_key else TENANT


class BudgetStore:
    def __init__(self, redis: Redis, prefix: str):
        self._redis, self._prefix = redis, prefix

    def key_for(self, tenant_id: str) -> str:
        return f"{self._prefix}budgets:{tenant_id}"

    def put(self, tenant_id: str, record_key: str | None, settings: dict[str, Any]) -> dict:
        budget = {**settings, "record_key": record_key, "updated_at": time.time()}
        self._redis.hset(self.key_for(tenant_id), scope_of(record_key), json.dumps(budget))
        return budget

    def get(self, tenant_id: str, record_key: str | None) -> dict | None:
        raw = self._redis.hget(self.key_for(tenant_id), scope_of(record_key))
        return json.loads(raw) if raw else None

    def scopes(self, tenant_id: str, record_key: str | None) -> BudgetScopes:
        """Where the budgets that apply to a record are kept: for a script to look at."""
        return BudgetScopes(
            self.key_for(tenant_id), (TENANT, *([scope_of(record_key)] if record_key else []))
        )

    def applying(self, tenant_id: str, record_key: str | None) -> list[dict]:
        """The tenant's budget and the record's, those that exist, in one call."""
        scopes = [TENANT, *([scope_of(record_key)] if record_key else [])]
        return [
            json.loads(raw) for raw in self._redis.hmget(self.key_for(tenant_id), scopes) if raw
        ]

    def all(self, tenant_id: str) -> list[dict]:
        budgets = [json.loads(raw) for raw in self._redis.hvals(self.key_for(tenant_id))]
        return sorted(
            budgets,
            key=lambda budget: (budget["record_key"] is not None, budget["record_key"] or ""),
        )

    def delete(self, tenant_id: str, record_key: str | None) -> bool:
        return bool(self._redis.hdel(self.key_for(tenant_id), scope_of(record_key)))

    def alert_once(
        self, tenant_id: str, record_key: str | None, period: str, share: float, life: int
    ) -> bool:
        """True the first time this budget's ``share`` is reached in the month starting ``period``."""
        key = f"{self._prefix}budget-alert:{tenant_id}:{scope_of(record_key)}:{period}:{share:g}"
        return bool(self._redis.set(key, "1", nx=True, ex=life))
