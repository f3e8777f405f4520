"""The hand-over lease (app.core.leases) against a real Redis: a live holder keeps it past its expiry; a
holder SIGKILLed in the middle frees it within one lease, where a plain lock would hold it for its whole
expiry (the 1,000-row chaos test once waited five minutes on one)."""

from __future__ import annotations

import subprocess
import sys
import time

import redis

from app.core.leases import lease
from tests.support.servers import eventually

LEASE = 1.5
HOLDER = """
import sys, time, redis
from app.core.leases import lease
with lease(redis.Redis.from_url(sys.argv[1]), "relay:handover:tsk_1", float(sys.argv[2])) as held:
    print("held" if held else "taken", flush=True)
    time.sleep(120)
"""


def test_a_lease_lives_as_long_as_its_holder(fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, fresh_redis_url, str(LEASE)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(LEASE * 2)  # two expiries: only the holder's renewals keep it
        with lease(client, "relay:handover:tsk_1", LEASE) as held:
            assert not held, "a live holder's lease is not taken from it"
        holder.kill()
        holder.wait()
        eventually(lambda: not client.exists("relay:handover:tsk_1"), 10 * LEASE, "the dead holder's lease to end")
        with lease(client, "relay:handover:tsk_1", LEASE) as held:
            assert held
            assert client.exists("relay:handover:tsk_1")
        assert not client.exists("relay:handover:tsk_1"), "given back when the block ends"
    finally:
        holder.kill()
        holder.wait()
