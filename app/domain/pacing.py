"""Pace per destination, where the platform sets one (Slack: 1 message a second per channel; Teams: 4
requests a second per workflow): every worker shares one schedule per destination in Redis.

Each delivery reserves the next free slot of its destination (a GCRA: the slot after the last one given
out, never before now), so deliveries that arrive together get slots a spacing apart instead of racing.
Slots are on Redis's clock, the one every worker shares. A slot within 2 s is waited for on the lane's
thread; a later one is waited for as a scheduled RQ job released shortly before it, which hands the delivery
back to the lane, so a throttled destination holds no thread for long while the others go on. The
reservation is kept on the delivery (``paced_at``) and used when it runs again, which costs no attempt; the
slot an attempt went in stays on the delivery (``paced_slot``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.stores.paces import PaceStore
from connectors.base import Pace


class Needs(Protocol):
    """What this module's functions use of the process's parts: its own, and those of the modules it
    hands them to (app.stores.context.Context has them all; tests/test_dependencies.py checks)."""

    paces: PaceStore


HOLD_SECONDS = 2.0
"""A new slot this near is waited for on the lane's thread; a later one is handed to RQ's scheduler."""
RELEASED_EARLY_SECONDS = HOLD_SECONDS + 1.0
"""How early RQ's scheduler may hand back a delivery for its slot (whole seconds, and its polling): the lane
waits for the rest of a slot already reserved, up to this long."""


@dataclass(frozen=True)
class Slot:
    """A slot of a schedule, and when it was given: both on Redis's clock (or the ``now`` a test passed). A kept
    slot may be a little past."""

    at: float
    now: float

    @property
    def wait(self) -> float:
        """Seconds from when it was given until the slot (0: at once)."""
        return max(0.0, self.at - self.now)


def reserve(
    ctx: Needs, pace: Pace, reserved: float | None = None, now: float | None = None
) -> Slot:
    """This delivery's slot: the one it ``reserved`` before if that is still ahead or just past, else the
    next free one, which is taken."""
    return _slot(ctx, pace, horizon=None, reserved=reserved, now=now)


def take_now(ctx: Needs, pace: Pace, now: float | None = None) -> bool:
    """Take a slot if one is free now; reserve nothing otherwise."""
    return take_within(ctx, pace, 0.0, now=now).wait == 0.0


def take_within(ctx: Needs, pace: Pace, horizon: float, now: float | None = None) -> Slot:
    """The next free slot, taken only if it is at most ``horizon`` seconds ahead: a request paced as it is
    sent waits for a near slot and is put off, holding none, when the next is further."""
    return _slot(ctx, pace, horizon=horizon, now=now)


def _slot(
    ctx: Needs,
    pace: Pace,
    horizon: float | None,
    reserved: float | None = None,
    now: float | None = None,
) -> Slot:
    at, given = ctx.paces.slot(
        pace.key,
        spacing=1.0 / pace.per_second,
        burst=pace.burst,
        horizon=horizon,
        now=now,
        reserved=reserved,
        reserved_for=HOLD_SECONDS,
    )
    return Slot(at, given)
