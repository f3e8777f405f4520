"""Retry-After, read one way everywhere (connectors.retry_after): delta-seconds or an HTTP-date, held to a
ceiling, so a receiver cannot park a delivery for a year (or overflow RQ's schedule). The tests look at
the time the relay decided on, never at time passing."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from rq.registry import ScheduledJobRegistry

from app.stores.queues import DELIVER
from connectors.retry_after import CEILING_SECONDS, retry_after
from tests.support.servers import eventually

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("31536000", CEILING_SECONDS),  # a year
        ("9" * 400, CEILING_SECONDS),  # past what a float holds
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),  # a date gone by: now
        ("Sun, 06 Nov 1994 08:49:37 -0000", 0.0),
        (formatdate(NOW + 10 * 365 * 86400, usegmt=True), CEILING_SECONDS),
        ("inf", None),
        ("nan", None),
        ("1e999", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_a_retry_after_is_read_one_way(value, seconds):
    assert retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("kind", ["a year", "an HTTP-date"])
def test_a_receivers_retry_after_sets_the_next_attempt_within_the_ceiling(
    make_relay, receiver, kind
):
    # an hour of backoff at most, as by default: the test config's 2 s would hide the ceiling
    relay = make_relay(delivery_backoff_cap_seconds=3600)
    date_target = int(time.time()) + 600
    receiver.script = [503]
    receiver.headers = {
        "Retry-After": "31536000" if kind == "a year" else formatdate(date_target, usegmt=True)
    }
    submitted = time.time()
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )

        def retrying():
            found = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
            return found[0] if found and found[0]["state"] == "retrying" else None

        delivery = eventually(retrying, 60, "the delivery to be retrying", every=0.1)
    seen = time.time()
    record = relay.ctx.deliveries.get(delivery["delivery_id"])
    assert record is not None and record.next_attempt_at is not None and record.retry_job
    registry = ScheduledJobRegistry(DELIVER, connection=relay.ctx.rq_redis)
    scheduled = registry.get_scheduled_time(record.retry_job).timestamp()
    if kind == "a year":
        # decided between the submit and now: an hour from then, not a year
        assert submitted + CEILING_SECONDS <= record.next_attempt_at <= seen + CEILING_SECONDS
    else:
        assert abs(record.next_attempt_at - date_target) < 1, "the date the receiver gave"
    # RQ keeps whole seconds and the relay adds one, so the job never runs before the Retry-After
    assert record.next_attempt_at <= scheduled <= record.next_attempt_at + 1
