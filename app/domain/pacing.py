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

from app.stores.context import Context
from connectors.base import Pace

HOLD_SECONDS = 2.0
"""A new slot this near is waited for on the lane's thread; a later one is handed to RQ's scheduler."""
RELEASED_EARLY_SECONDS = HOLD_SECONDS + 1.0
"""How early RQ's scheduler may hand back a delivery for its slot (whole seconds, and its polling): the lane
waits for the rest of a slot already reserved, up to this long."""

# KEYS: the destination's schedule. ARGV: seconds between slots, how many may go at once, 1 to take a slot
# only if it is free now, now ('' for Redis's clock; tests pass their own), a slot reserved before ('' for
# none) and how long past it may be and still be used. Returns the slot (seconds; a new one is never before now)
# and now, to the microsecond. The schedule is kept until a whole burst is free again, on Redis's own clock.
_RESERVE = """
local clock = redis.call('TIME')
clock = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function micros(seconds) return tonumber(string.format('%.6f', seconds)) end
local now = micros(tonumber(ARGV[4]) or clock)  -- what is compared here is what is answered and kept
local function answer(slot) return {string.format('%.6f', slot), string.format('%.6f', now)} end
local kept = tonumber(ARGV[5]) and micros(tonumber(ARGV[5]))
if kept and kept >= now - tonumber(ARGV[6]) then return answer(kept) end
local spacing, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = micros(math.max(next_free, now - spacing * (burst - 1)))
if ARGV[3] == '1' and slot > now then return answer(slot) end
local keep = math.max(1000, math.ceil((slot + spacing * burst - clock) * 1000) + 1000)
redis.call('SET', KEYS[1], string.format('%.6f', slot + spacing), 'PX', keep)
return answer(math.max(slot, now))
"""


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
    ctx: Context, pace: Pace, reserved: float | None = None, now: float | None = None
) -> Slot:
    """This delivery's slot: the one it ``reserved`` before if that is still ahead or just past, else the
    next free one, which is taken."""
    return _slot(ctx, pace, only_now=False, reserved=reserved, now=now)


def take_now(ctx: Context, pace: Pace, now: float | None = None) -> bool:
    """Take a slot if one is free now; reserve nothing otherwise."""
    return _slot(ctx, pace, only_now=True, now=now).wait == 0.0


def _slot(
    ctx: Context,
    pace: Pace,
    only_now: bool,
    reserved: float | None = None,
    now: float | None = None,
) -> Slot:
    args = [
        1.0 / pace.per_second,
        pace.burst,
        int(only_now),
        "" if now is None else repr(now),
        "" if reserved is None else repr(reserved),
        HOLD_SECONDS,
    ]
    at, given = ctx.script("pace-reserve", _RESERVE)(keys=[ctx.key("pace", pace.key)], args=args)
    return Slot(float(at), float(given))
