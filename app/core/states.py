"""The statuses Relay stores for tasks, batches, batch rows and deliveries, each defined once.

The Lua scripts that guard a transition take their sets from here (``lua_set``), so a new status is added
in one place. Each enum is a ``StrEnum``: a member is the string stored in Redis and sent in JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class TaskStatus(StrEnum):
    """A task's status; the API's own task statuses, with ``pending_submit`` before the hand-over."""

    PENDING_SUBMIT = "pending_submit"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TASK_ENDED = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
)


class BatchStatus(StrEnum):
    """A batch's own status: running until every row has ended (completed), or until it is cancelled, or
    stopped at its first failed row (``on_error: stop``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"


class RowState(StrEnum):
    """A batch row's state; the batch counts its rows in each."""

    PENDING = "pending"
    SUBMITTING = "submitting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


ROW_ENDED = frozenset({RowState.COMPLETED, RowState.FAILED, RowState.SKIPPED, RowState.CANCELLED})


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    """The destination took it and delivers it later, unseen (a Teams workflow's 202): settled, as a
    success, but not known to have arrived; a replay sends it again."""
    DEAD = "dead"


DELIVERY_SETTLED = frozenset({DeliveryState.DELIVERED, DeliveryState.ACCEPTED, DeliveryState.DEAD})
"""A delivery in one of these has no attempt left to make (a replay starts it again)."""


def lua_set(name: str, members: Iterable[str]) -> str:
    """A Lua local holding a set, for a script's ``if NAME[value] then``."""
    entries = ", ".join(f"{member} = true" for member in sorted(members))
    return f"local {name} = {{{entries}}}\n"
