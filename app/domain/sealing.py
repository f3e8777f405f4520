"""What a task or a batch keeps of its request's secrets: inline destinations' configs and callback headers,
sealed (app.core.crypto) before they are stored, and opened only when a delivery is planned. A task's or
batch's hash, Redis' AOF and RDB files, replicas, backups and the retention archive never hold them in
clear."""

from __future__ import annotations

import json
from typing import Protocol

from app.core.crypto import SecretBox
from app.stores.batches import BatchStore
from app.stores.deliveries import DeliveryStore
from app.stores.destinations import DestinationStore, HookStore
from app.stores.installations import InstallationStore
from app.stores.tasks import TaskStore
from app.stores.tenants import TenantStore


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    box: SecretBox
    tenants: TenantStore
    tasks: TaskStore
    destinations: DestinationStore
    hooks: HookStore
    deliveries: DeliveryStore
    batches: BatchStore
    installations: InstallationStore


SEALED = "sealed_config"
"""An inline destination's config, sealed: what its delivery record keeps as it is
(app.domain.deliveries)."""


def seal_destinations(box: SecretBox, refs: list[dict]) -> list[dict]:
    """Inline destinations with their config sealed; saved ones (by id) and sealed ones as they are."""
    return [
        {
            **{k: v for k, v in ref.items() if k != "config"},
            SEALED: box.seal(json.dumps(ref["config"])),
        }
        if "config" in ref
        else ref
        for ref in refs
    ]


def public_destinations(refs: list[dict] | None) -> list[dict] | None:
    """The destinations without their configs, sealed or not: what an archive keeps."""
    if refs is None:
        return None
    return [{k: v for k, v in ref.items() if k not in ("config", SEALED)} for ref in refs]


def seal_headers(box: SecretBox, headers: dict[str, str]) -> str | None:
    """Callback headers (an Authorization, an API key), sealed; None for none."""
    return box.seal(json.dumps(headers)) if headers else None


def open_headers(box: SecretBox, stored: str | None) -> dict[str, str]:
    """The callback headers a task keeps, opened. A task stored before they were sealed holds them as
    JSON: read as they are."""
    if not stored:
        return {}
    return json.loads(stored if stored.lstrip().startswith("{") else box.open(stored))


def rotate(ctx: Needs) -> dict[str, int]:
    """Every stored secret re-encrypted with the first key of RELAY_ENCRYPTION_KEYS (``relay secrets
    rotate``): how many of each kind of record had one."""
    tenant_ids = ctx.tenants.ids()
    reseal = ctx.box.reseal
    return {
        "tenant": ctx.tenants.reseal_all(),
        "destination": ctx.destinations.reseal_all(tenant_ids),
        "hook": ctx.hooks.reseal_all(tenant_ids),
        "slack installation": ctx.installations.reseal_all(),
        "task": ctx.tasks.reseal_all(reseal),
        "batch": ctx.batches.reseal_all(reseal),
        "delivery": ctx.deliveries.reseal_all(reseal),
    }
