"""Writing a document's status and file back to the record it belongs to (a HubSpot record, an Airtable row,
a Google Sheets row), through a saved connection: a destination of a record kind (connectors.registry
RECORD_KINDS).

A task with a connection has two deliveries: "Generating" planned with the submit, and "Ready" or "Failed"
planned when it ends, both ordinary deliveries (retries, dead letters, replay). They must land in that
order: a start write that begins after the task has ended writes nothing, and the end write waits while
a start write is in flight (a start write waiting for a retry will write nothing when it runs). See
docs/decisions/0015-write-back.md.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol

from app.core.errors import Invalid, NotFound, RelayError
from app.core.ids import new_id
from app.core.states import TASK_ENDED, DeliveryState
from app.domain import deliveries
from app.domain.serializers import task_view
from app.stores.deliveries import DeliveryRecord
from app.stores.events import iso
from app.stores.tasks import Task
from connectors import registry
from connectors.base import Outcome, Throttled


class Needs(deliveries.Needs, Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""


WAIT_FOR_START_SECONDS = 2.0


class WriteBackRefused(RelayError):
    """The write-back a submit asks for cannot be made: raised as one of the two kinds below."""


class ConnectionNotFound(WriteBackRefused, NotFound):
    """The connection it names is not one of the tenant's."""


class WriteBackInvalid(WriteBackRefused, Invalid):
    """A connection that does not write back, or a record key it cannot write to."""


def connection_for(
    ctx: Needs, tenant_id: str, asked: str | Literal[False] | None, record_key: str | None
) -> str | None:
    """The saved connection a submit writes back through: the one it names (``asked``), else the tenant's
    default for the platform its ``record_key`` names (``asked`` False: none). Raises WriteBackRefused naming
    the field."""
    record_key = record_key or ""
    if asked is False:
        return None
    if asked:
        saved = ctx.destinations.get(tenant_id, asked)
        if saved is None:
            raise ConnectionNotFound(
                "destination_not_found", "no saved connection with this id", "write_back.connection"
            )
        if saved.kind not in registry.RECORD_KINDS:
            raise WriteBackInvalid(
                "invalid_request",
                f"this is a {saved.kind} destination; write-back "
                f"needs a connection of kind {', '.join(registry.RECORD_KINDS)}",
                "write_back.connection",
            )
        _check_key(saved.kind, record_key)
        return saved.id
    scheme = record_key.split(":", 1)[0] if ":" in record_key else ""
    default = (
        ctx.destinations.default_for(tenant_id, scheme) if scheme in registry.RECORD_KINDS else None
    )
    if default:
        _check_key(scheme, record_key)
    return default


def _check_key(kind: str, record_key: str) -> None:
    if not record_key:
        raise WriteBackInvalid(
            "invalid_request", "write-back needs a record_key naming the record", "record_key"
        )
    try:
        registry.RECORD_KINDS[kind].parse_record(record_key)
    except ValueError as exc:
        raise WriteBackInvalid("invalid_request", str(exc), "record_key") from None


def plan_start(ctx: Needs, task: Task) -> Task:
    """Queue the "Generating" write of a submitted task that writes back; returns the task as it then
    reads (its delivery listed)."""
    if not task.write_back:
        return task
    event = {
        "id": new_id("evt"),
        "type": "task.started",
        "created_at": iso(time.time()),
        "data": task_view(task),
    }
    pipe = ctx.primary.pipeline()  # one round trip: the record, the task's list, the lane entry
    delivery_id = deliveries.record(
        ctx, task, event, deliveries.WRITE_BACK_START_SLOT, {"id": task.write_back}, pipe=pipe
    )
    # listed with the task's deliveries
    ctx.tasks.set(task.task_id, pipe=pipe, delivery_ids=[delivery_id])
    deliveries.enqueue(ctx, delivery_id, pipe=pipe)
    pipe.execute()
    return task.with_fields(delivery_ids=[delivery_id])


def gate(ctx: Needs, record: DeliveryRecord) -> Outcome | None:
    """Before an attempt at a write-back (begin() has marked it delivering): the start write of a task that
    has ended is done without writing (its Outcome says so); an end write waits while the start write is in
    flight, spending no attempt (Throttled): a start write that waits for its platform's pace is no failure."""
    task = ctx.tasks.get(record.task_id)
    starting = record.delivery_id == deliveries.delivery_id_for(
        record.task_id, deliveries.WRITE_BACK_START_SLOT
    )
    if starting:
        if task is None or task.status in TASK_ENDED:
            return Outcome("not written: the task ended first, and its end is written instead")
        return None
    start = ctx.deliveries.states(
        [deliveries.delivery_id_for(record.task_id, deliveries.WRITE_BACK_START_SLOT)]
    )
    if DeliveryState.DELIVERING in start.values():
        raise Throttled(
            "waiting for the Generating status to be written first",
            retry_after=WAIT_FOR_START_SECONDS,
        )
    return None
