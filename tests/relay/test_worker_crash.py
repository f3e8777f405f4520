"""A real worker process killed with SIGKILL in the middle of a delivery: after recovery every delivery
is done, and Drive holds no second file."""

from __future__ import annotations

import signal

import httpx

from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_worker_killed_mid_drive_upload(make_relay, fake_drive):
    relay = make_relay(
        drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token", worker=False
    )
    # the second chunk waits: the first is in, the rest is not
    fake_drive.knobs.hold_before("chunk", skip=1)
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=10]]",
            destinations=[
                {
                    "kind": "gdrive",
                    "config": {
                        "folder_id": "folder-reports",
                        "credentials": fake_drive.service_account,
                    },
                }
            ],
        )
        assert fake_drive.knobs.held.wait(60), "the upload never reached its second chunk"
        kill(worker)
        fake_drive.knobs.release.set()
        assert fake_drive.files == {}, "killed before the upload finished"
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        original = httpx.get(
            client.get(f"/v1/tasks/{task['task_id']}").json()["result"]["download_url"]
        ).content
    assert done["state"] == "delivered"
    [file] = fake_drive.files.values()
    assert fake_drive.file_bytes(file["id"]) == original and len(original) > 10 * 1024 * 1024


def test_worker_killed_mid_webhook_delivery(make_relay, receiver):
    relay = make_relay(worker=False)
    receiver.hold()  # the delivery arrives and waits there, unanswered
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client, prompt="x", destinations=[{"kind": "webhook", "config": {"url": receiver.url}}]
        )
        eventually(
            lambda: receiver.arrived >= 1,
            60,
            "the delivery to reach the subscriber",
            show=lambda: client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"],
        )
        kill(worker)
        receiver.release()
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
    assert done["state"] == "delivered" and done["attempts"] == 2, (
        "made again after the worker died in the first"
    )
    assert {r.headers["Webhook-Id"] for r in receiver.requests} == {done["delivery_id"]}, (
        "a repeat carries the same webhook-id, so the subscriber can drop it"
    )


def test_a_worker_killed_while_it_cleans_a_queue_holds_its_lock_a_minute_not_fifteen(
    make_relay, monkeypatch
):
    """Found by the worker-kills chaos test: a worker SIGKILLed while it cleaned RQ's registries left RQ's
    cleaning lock for 899 s, and until then no worker retried the jobs killed workers had abandoned (a
    delivery stayed "delivering"). The lock a RelayWorker takes lasts a minute."""
    import pytest

    from app.stores import queues
    from app.work import worker as worker_module
    from app.work.worker import CLEANING_LOCK_SECONDS, RelayWorker

    relay = make_relay(worker=False)
    queue = relay.ctx.queues.get(queues.DELIVER)
    worker = RelayWorker([queue], connection=relay.ctx.rq_redis, maintenance_interval=1)

    def killed(*args, **kwargs):
        raise SystemExit("killed while cleaning")  # the lock is never released

    monkeypatch.setattr(worker_module, "clean_registries", killed)
    with pytest.raises(SystemExit):
        worker.clean_registries()
    left = relay.ctx.rq_redis.ttl(queue.registry_cleaning_key)
    assert 0 < left <= CLEANING_LOCK_SECONDS == 60, f"the lock lasts {left} s"
