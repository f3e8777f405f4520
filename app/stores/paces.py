"""Pace schedules: one per destination (or tenant's polling budget), a GCRA kept in Redis and shared by every
process (app.domain.pacing decides what a slot means for a delivery or a poll)."""

from __future__ import annotations

from redis import Redis

# KEYS: the destination's schedule. ARGV: seconds between slots, how many may go at once, how far ahead
# a slot may be and still be taken ('' for any; 0: only one free now), now ('' for Redis's clock; tests
# pass their own), a slot reserved before ('' for none) and how long past it may be and still be used.
# Returns the slot (seconds; a new one is never before now) and now, to the microsecond. The schedule is
# kept until a whole burst is free again, on Redis's own clock.
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
local horizon = tonumber(ARGV[3])
if horizon and slot > now + horizon then return answer(slot) end
local keep = math.max(1000, math.ceil((slot + spacing * burst - clock) * 1000) + 1000)
redis.call('SET', KEYS[1], string.format('%.6f', slot + spacing), 'PX', keep)
return answer(math.max(slot, now))
"""


class PaceStore:
    def __init__(self, redis: Redis, prefix: str):
        self._prefix = prefix
        self._reserve = redis.register_script(_RESERVE)

    def slot(
        self,
        key: str,
        spacing: float,
        burst: int,
        horizon: float | None,
        now: float | None,
        reserved: float | None,
        reserved_for: float,
    ) -> tuple[float, float]:
        """A slot of schedule ``key`` and when it was given (Redis's clock unless ``now``): ``reserved`` if
        that is no more than ``reserved_for`` seconds past, else the next free one, which is taken (with
        ``horizon``, only if it is at most that many seconds ahead; a later one is answered, not taken)."""
        args = [
            spacing,
            burst,
            "" if horizon is None else repr(horizon),
            "" if now is None else repr(now),
            "" if reserved is None else repr(reserved),
            reserved_for,
        ]
        at, given = self._reserve(keys=[f"{self._prefix}pace:{key}"], args=args)
        return float(at), float(given)
