"""The hand-over lease (app.core.leases) against a real Redis: a live holder keeps it past its expiry; a
holder SIGKILLed in the middle frees it within one lease, where a plain lock would hold it for its whole
expiry (the 1,000-row chaos test once waited five minutes on one)."""

from __future__ import annotations

import subprocess
import sys
import threading

import redis

from app.core.leases import lease
from tests.support.servers import eventually

KEY = "relay:handover:tsk_1"
LEASE = 4.0
RENEW_EVERY = (
    0.2  # often, against a long lease: a holder starved for seconds on a busy machine keeps it
)
HOLDER = """
import sys, time, redis
from app.core.leases import lease
with lease(redis.Redis.from_url(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])) as held:
    print("held" if held else "taken", flush=True)
    time.sleep(600)
"""


def first_line(process: subprocess.Popen, timeout: float = 60.0) -> str:
    """The process's first line of output, or a failure saying it never came."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"the holder printed nothing in {timeout:g} s (exit code {process.poll()})"
    return lines[0].strip()


def renewals(client: redis.Redis, count: int) -> None:
    """Wait until the key's time to live has gone back up ``count`` times: each rise is one renewal."""
    seen = {"rises": 0, "last": client.pttl(KEY)}

    def renewed() -> bool:
        ttl = client.pttl(KEY)
        assert ttl > 0, f"the lease ended (PTTL {ttl}) while its holder was alive"
        seen["rises"] += ttl > seen["last"]
        seen["last"] = ttl
        return seen["rises"] >= count

    eventually(
        renewed, 60, f"{count} renewals of the holder's lease", every=0.05, show=lambda: seen
    )


def test_a_lease_lives_as_long_as_its_holder(fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, fresh_redis_url, KEY, str(LEASE), str(RENEW_EVERY)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first_line(holder) == "held"
        assert 0 < client.pttl(KEY) <= LEASE * 1000, (
            "a lease expires by itself: no longer than its seconds"
        )
        renewals(client, 3)  # the holder's renewals push the expiry on: it lives past it
        with lease(client, KEY, LEASE) as held:
            assert not held, "a live holder's lease is not taken from it"
        holder.kill()
        holder.wait()
        eventually(
            lambda: not client.exists(KEY),
            60,
            "the dead holder's lease to end",
            show=lambda: f"PTTL {client.pttl(KEY)} ms",
        )
        with lease(client, KEY, LEASE) as held:
            assert held
            assert client.exists(KEY)
        assert not client.exists(KEY), "given back when the block ends"
    finally:
        holder.kill()
        holder.wait()
