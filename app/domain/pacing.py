"""Pace per destination, where the platform sets one (Slack: 1 message a second per channel; Teams: 4
requests a second per workflow): every worker shares one schedule per destination in Redis.

Each delivery reserves the next free slot of its destination (a GCRA: the slot after the last one given
out, never before now), so deliveries that arrive together get slots a spacing apart instead of racing.
A slot within 2 s is waited for on the lane's thread; a later one is waited for as a scheduled RQ job
released shortly before it, which hands the delivery back to the lane, so a throttled destination holds no
thread for long while the others go on. The reservation is kept on the delivery (``paced_at``) and used
when it runs again, which costs no attempt."""

from __future__ import annotations

import time

from app.stores.context import Context
from connectors.base import Pace

HOLD_SECONDS = 2.0
"""A new slot this near is waited for on the lane's thread; a later one is handed to RQ's scheduler."""
RELEASED_EARLY_SECONDS = HOLD_SECONDS + 1.0
"""How early RQ's scheduler may hand back a delivery for its slot (whole seconds, and its polling): the lane
waits for the rest of a slot already reserved, up to this long."""

# KEYS: the destination's schedule. ARGV: seconds between slots, how many may go at once, 1 to take a slot
# only if it is free now. Returns the slot (Redis's clock, in seconds) reserved, and now.
_RESERVE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local spacing, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(next_free, now - spacing * (burst - 1))
if ARGV[3] == '1' and slot > now then return {tostring(slot), tostring(now)} end
local keep = math.max(1000, math.ceil((slot + spacing - now) * 1000) + 1000)
redis.call('SET', KEYS[1], tostring(slot + spacing), 'PX', keep)
return {tostring(math.max(slot, now)), tostring(now)}
"""


def reserve(ctx: Context, pace: Pace, reserved: float | None = None) -> float:
    """Seconds to wait until this delivery's slot: the one it ``reserved`` before if that is still ahead
    or just past, else a new one."""
    now = time.time()
    if reserved is not None and reserved >= now - HOLD_SECONDS:
        return max(0.0, reserved - now)
    return _slot(ctx, pace, only_now=False)


def take_now(ctx: Context, pace: Pace) -> bool:
    """Take a slot if one is free now; reserve nothing otherwise."""
    return _slot(ctx, pace, only_now=True) == 0.0


def _slot(ctx: Context, pace: Pace, only_now: bool) -> float:
    slot, redis_now = ctx.script("pace-reserve", _RESERVE)(keys=[ctx.key("pace", pace.key)],
                                                            args=[1.0 / pace.per_second, pace.burst, int(only_now)])
    return max(0.0, float(slot) - float(redis_now))
