"""Paces where a platform sets a limit (Slack: 1 message a second per channel; Sheets: 60 writes a minute
per user; the relay's polls of the API per tenant): every process shares one schedule per limit in Redis.

A request takes the next free slot of its schedule (a GCRA: the slot after the last one given out, never
before now), so requests that go together get slots a spacing apart instead of racing. Slots are on
Redis's clock, the one every worker shares. A connector takes its slot as it sends the request
(``take_within``, through ``env.pace``): a slot within 2 s is waited for on the lane's thread; a later
one is not taken, and the delivery is put off until then (``Throttled``), holding no thread and spending
no attempt, while the others go on. A poll may keep a slot it reserved and use it later (``reserve``)."""

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
"""A slot this near is waited for on the lane's thread; a later one puts the delivery off until then."""


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
