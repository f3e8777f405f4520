"""The Dropbox destination against the fake Dropbox API over HTTPS on loopback (the official SDK, refresh
tokens, upload sessions): a file with its templated path, a large file in chunks resumed after its worker
was killed, the conflict policies, a finished upload found again after a crash, a 429 honoured, and a
revoked refresh token in the dead letters."""

from __future__ import annotations

import hashlib
import signal

import httpx

from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually

MIB = 1024 * 1024


def destination(**config) -> dict:
    return {
        "kind": "dropbox",
        "config": {
            "app_key": "relayappkey",
            "app_secret": "relay-app-secret",
            "refresh_token": "refresh-token-of-ana",
            **config,
        },
    }


def original(client, task_id: str) -> bytes:
    return httpx.get(client.get(f"/v1/tasks/{task_id}").json()["result"]["download_url"]).content


def test_a_file_lands_at_its_templated_path(dropbox_relay, fake_dropbox):
    relay = dropbox_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales by region",
            record_key="deal:7",
            destinations=[destination(folder="Deals/{record_key}", file_name="{title} {date}")],
        )
        [done] = delivered(relay, client, task["task_id"])
        file = original(client, task["task_id"])
        finished = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered", done["last_error"]
    title = finished["result"]["artifacts"][0]["file_name"].rsplit(".", 1)[0]
    path = f"/Deals/deal_7/{title} {finished['updated_at'][:10]}.xlsx"
    assert fake_dropbox.contents() == {path: file}, "Windows' refused : is _ in every folder"
    assert done["location"] == f"dropbox:{path}" and fake_dropbox.token_grants == 1


def test_a_large_file_resumes_its_upload_session_after_the_worker_is_killed(
    dropbox_relay, fake_dropbox
):
    relay = dropbox_relay(worker=False)
    fake_dropbox.knobs.hold_before("append", skip=2)  # two chunks are in, the third waits
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Model [[pad_mb=22]]", destinations=[destination(chunk_mb=4)]
        )
        assert fake_dropbox.knobs.held.wait(60), "the upload never reached its third chunk"
        assert len(fake_dropbox.appends) == 2, "killed with two chunks in and the rest to come"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_dropbox.knobs.release.set()  # the third chunk's request: refused if cut short, else taken whole
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [stored] = fake_dropbox.contents().values()
    assert (
        hashlib.sha256(stored).hexdigest() == hashlib.sha256(file).hexdigest()
        and len(file) > 22 * MIB
    )
    offsets = [offset for _, offset, _ in fake_dropbox.appends]
    assert offsets == list(range(0, len(file), 4 * MIB)), "each chunk once, in order"
    assert len({session for session, _, _ in fake_dropbox.appends}) == 1, (
        "one upload session throughout"
    )


def test_the_conflict_policies(dropbox_relay, fake_dropbox):
    """Each policy meets a file someone else put where its document goes (a folder per policy, one relay)."""
    relay = dropbox_relay()
    policies = ("replace", "rename", "fail")
    for policy in policies:
        fake_dropbox.put_file(f"/Reports/{policy}/memo.xlsx", b"someone else's file")
    with relay.client() as client:
        tasks = {
            policy: relay.submit(
                client,
                prompt="Sales",
                destinations=[
                    destination(folder=f"Reports/{policy}", file_name="memo", conflict=policy)
                ],
            )
            for policy in policies
        }
        done = {
            policy: delivered(relay, client, task["task_id"])[0] for policy, task in tasks.items()
        }
        files = {policy: original(client, task["task_id"]) for policy, task in tasks.items()}
    stored = fake_dropbox.contents()
    assert (
        done["replace"]["state"] == "delivered"
        and stored["/Reports/replace/memo.xlsx"] == files["replace"]
    )
    assert (
        done["rename"]["state"] == "delivered"
        and done["rename"]["location"] == "dropbox:/Reports/rename/memo (1).xlsx"
    )
    assert (stored["/Reports/rename/memo.xlsx"], stored["/Reports/rename/memo (1).xlsx"]) == (
        b"someone else's file",
        files["rename"],
    )
    fail = done["fail"]
    assert (
        fail["state"] == "dead"
        and "conflict policy is fail" in fail["last_error"]
        and fail["attempts"] == 1
    )
    assert stored["/Reports/fail/memo.xlsx"] == b"someone else's file"
    assert len(stored) == 4, "no other file was made"


def test_a_worker_killed_after_the_finish_does_not_make_a_second_file(dropbox_relay, fake_dropbox):
    relay = dropbox_relay(worker=False)
    fake_dropbox.knobs.pause_after("finish")
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[destination(conflict="rename")])
        eventually(fake_dropbox.knobs.paused.is_set, 60, "the upload to finish")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_dropbox.knobs.release.set()
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
    assert done["state"] == "delivered" and done["attempts"] == 2
    assert len(fake_dropbox.contents()) == 1, (
        "the file the killed attempt finished was found by its content hash"
    )


def test_a_429_is_honoured(dropbox_relay, fake_dropbox):
    relay = dropbox_relay()
    fake_dropbox.knobs.throttle_next(1)
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[destination()])
        [done] = delivered(relay, client, task["task_id"], timeout=60)
    assert fake_dropbox.knobs.early == [], (
        "the retry waited for Retry-After: Dropbox refuses calls before it"
    )
    assert (
        len(fake_dropbox.knobs.throttled) == 1
        and done["state"] == "delivered"
        and done["attempts"] == 1
    ), "a 429 is a throttle: its attempt is given back"


def test_a_revoked_refresh_token_lands_in_the_dead_letters_without_it(dropbox_relay, fake_dropbox):
    relay = dropbox_relay()
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Sales", destinations=[destination(refresh_token="revoked-token-1")]
        )
        [dead] = delivered(relay, client, task["task_id"])
        letters = client.get("/v1/deliveries").json()["items"]
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert dead["delivery_id"] in {d["delivery_id"] for d in letters}
    assert "Dropbox refused the credentials (invalid_access_token)" in dead["last_error"]
    assert "revoked-token-1" not in str(letters)
