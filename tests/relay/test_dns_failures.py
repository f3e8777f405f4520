"""A DNS failure that passes (EAI_AGAIN, "Temporary failure in name resolution") in the middle of a delivery:
the delivery is retried and delivered, while a name that does not exist (EAI_NONAME) is a dead letter at once.
The attempts run in the test's process (app.work.delivering, as a worker runs them), so the resolver the test
controls is the one the relay's outbound policy asks."""

from __future__ import annotations

import socket
from functools import partial

from app.work import delivering
from app.work.intake import IntakeLane
from app.work.lane import DeliveryLane
from tests.support.servers import eventually


def test_a_passing_dns_failure_is_retried_and_an_unknown_name_is_dead(
    make_relay, receiver, monkeypatch
):
    relay = make_relay(worker=False)
    ctx = relay.ctx
    real = socket.getaddrinfo
    failing = {"once": False}

    def resolve(host, port, *args, **kwargs):
        if host == "gone.relay.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "hooks.relay.test":
            if failing["once"]:
                failing["once"] = False
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    named = receiver.url.replace("127.0.0.1", "hooks.relay.test")
    gone = receiver.url.replace("127.0.0.1", "gone.relay.test")
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="x",
            destinations=[
                {"kind": "webhook", "config": {"url": named}},
                {"kind": "webhook", "config": {"url": gone}},
            ],
        )
        eventually(lambda: IntakeLane(ctx).drain(), 60, "the API's webhook")
        failing["once"] = True  # the resolver fails once, during the delivery's first attempt
        DeliveryLane(ctx, partial(delivering.attempt, ctx)).drain()
        first = client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
        assert sorted(d["state"] for d in first) == ["dead", "retrying"], first
        [retrying] = [d for d in first if d["state"] == "retrying"]
        [dead] = [d for d in first if d["state"] == "dead"]
        assert "cannot resolve hooks.relay.test for now" in retrying["last_error"]
        assert "cannot resolve gone.relay.test" in dead["last_error"] and dead["attempts"] == 1
        assert receiver.requests == []
        assert delivering.attempt(ctx, retrying["delivery_id"]) == "delivered"
    assert len(receiver.requests) == 1
