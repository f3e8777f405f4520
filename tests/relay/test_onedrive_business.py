"""OneDrive for Business and SharePoint as they really answer (the fake's default, business mode): an upload
session is tied to its path, so a second one for the same file gets 409 nameAlreadyExists whatever the
conflict policy; names are case-insensitive; a full drive (507), a locked file (423) and an app without the
write permission (403). Each against the real relay, over HTTPS on loopback."""

from __future__ import annotations

import signal

from tests.relay import test_onedrive_delivery
from tests.relay.test_batches import batch_body, finished, rows_of
from tests.relay.test_deliveries import DONE, delivered
from tests.relay.test_onedrive_delivery import destination, original
from tests.support.servers import eventually

graph_relay = test_onedrive_delivery.graph_relay  # the fixture: a relay that signs in to the fake


def deliveries_of(client, task_id: str) -> list[dict]:
    return client.get(f"/v1/tasks/{task_id}").json()["deliveries"]


def test_two_tasks_of_one_record_delivered_at_once_both_end_delivered(graph_relay, fake_graph):
    """The usual "one file per deal" set-up: two tasks of one record render the same name. While the first
    one's session is open, Graph refuses the second a session (409 even with replace): the second waits for it,
    spending no attempt, and replaces the file once the first is in."""
    relay = graph_relay(graph_upload_busy_seconds=1)
    fake_graph.knobs.hold_before("fragment")  # the first upload's session is open, its bytes held
    one_file = destination(fake_graph, folder="Deals", file_name="{record_key}", conflict="replace")
    with relay.client() as client:
        first = relay.submit(client, prompt="Q3 memo", record_key="deal:7", destinations=[one_file])
        assert fake_graph.knobs.held.wait(60), "the first upload never began"
        second = relay.submit(
            client, prompt="Q4 memo", record_key="deal:7", destinations=[one_file]
        )
        [waiting] = eventually(
            lambda: [
                d for d in deliveries_of(client, second["task_id"]) if d["state"] == "retrying"
            ],
            60,
            "the second delivery to wait for the first one's session",
            show=lambda: deliveries_of(client, second["task_id"]),
        )
        assert "another upload to Deals/" in waiting["last_error"], waiting["last_error"]
        assert "conflict policy" not in waiting["last_error"]
        fake_graph.knobs.release.set()
        [one] = delivered(relay, client, first["task_id"], timeout=90)
        [two] = delivered(relay, client, second["task_id"], timeout=90)
        files = [original(client, task["task_id"]) for task in (first, second)]
    assert (one["state"], two["state"]) == ("delivered", "delivered"), two["last_error"]
    assert fake_graph.busy_refusals >= 1, (
        "Graph refused the second session while the first was open"
    )
    assert two["attempts"] == 1, "waiting for the other session spent no attempt"
    [(path, stored)] = fake_graph.files("drive-alice").items()
    assert path.startswith("Deals/deal") and stored == files[1], "the later task's file replaced it"


def test_a_retry_after_a_lost_session_answer_ends_delivered(graph_relay, fake_graph):
    """Graph made the session but its answer was lost: the next attempt cannot learn that session's URL and
    is refused a new one until it closes (Graph ends an idle one within 15 minutes; here, when the test
    expires it). Meanwhile the delivery waits, and is not dead."""
    relay = graph_relay(graph_upload_busy_seconds=1)
    fake_graph.drop_session_answers = 1
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[destination(fake_graph)])
        eventually(
            lambda: fake_graph.busy_refusals >= 2,
            60,
            "the retry to meet the lost session, and to ask again",
            show=lambda: deliveries_of(client, task["task_id"]),
        )
        [waiting] = deliveries_of(client, task["task_id"])
        assert waiting["state"] in ("retrying", "delivering", "pending"), waiting
        fake_graph.expire_sessions()  # the orphan session closes
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert done["attempts"] == 2, "the lost answer cost an attempt, the waits none"
    assert list(fake_graph.files("drive-alice").values()) == [file]


def test_names_are_case_insensitive(graph_relay, fake_graph):
    """``Memo.xlsx`` is ``memo.xlsx``: the fail policy meets it, and after a worker killed right after its
    upload replaced it, the next attempt finds the file (keeping its old name's case) instead of uploading
    again."""
    fake_graph.put_file("drive-alice", "Memo.xlsx", b"someone else's memo")
    fake_graph.put_file("drive-alice", "Kept.xlsx", b"someone else's kept")
    relay = graph_relay(worker=False)
    fake_graph.knobs.pause_after("complete")
    worker = relay.start_worker()
    with relay.client() as client:
        kept = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(fake_graph, file_name="kept", conflict="replace")],
        )
        eventually(fake_graph.knobs.paused.is_set, 60, "the upload to complete")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_graph.knobs.release.set()
        relay.start_worker()
        [done] = delivered(relay, client, kept["task_id"], timeout=90)
        refused = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(fake_graph, file_name="memo", conflict="fail")],
        )
        [dead] = delivered(relay, client, refused["task_id"])
        file = original(client, kept["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 2, done["last_error"]
    assert len({session for session, _, _ in fake_graph.fragments}) == 1, "uploaded once"
    assert fake_graph.files("drive-alice") == {
        "Memo.xlsx": b"someone else's memo",
        "Kept.xlsx": file,
    }
    assert dead["state"] == "dead" and "conflict policy is fail" in dead["last_error"]


def test_a_locked_file_waits_a_full_drive_and_a_missing_permission_say_so(graph_relay, fake_graph):
    """423 (the file is checked out) is retried and resumes its session; 507 (the drive's quota is spent:
    asked with the file's size, before a byte is sent) and 403 (no write permission, or Sites.Selected without
    a grant) are dead at once, saying what to fix."""
    relay = graph_relay()
    fake_graph.denied_drives.add("drive-ops-docs")
    fake_graph.refuse("complete", 423)
    with relay.client() as client:
        first = relay.submit(
            client,
            prompt="Sales",
            destinations=[
                destination(fake_graph),
                destination(fake_graph, site="contoso.sharepoint.com:/sites/ops"),
            ],
        )
        denied, locked = sorted(
            delivered(relay, client, first["task_id"], count=2), key=lambda d: d["state"]
        )
        fake_graph.free_bytes = 1000  # too little for the next file: refused before a byte is sent
        second = relay.submit(  # a file of several fragments
            client,
            prompt="Sales [[pad_mb=1]]",
            destinations=[destination(fake_graph, chunk_kib=320)],
        )
        [full] = delivered(relay, client, second["task_id"])
        file = original(client, first["task_id"])
    assert locked["state"] == "delivered" and locked["attempts"] == 2, locked["last_error"]
    assert len({session for session, _, _ in fake_graph.fragments}) == 1, (
        "the locked one resumed its session; the full drive gave none"
    )
    assert file in fake_graph.files("drive-alice").values()
    assert denied["state"] == "dead" and denied["attempts"] == 1
    assert "accessDenied" in denied["last_error"] and "Sites.ReadWrite.All" in denied["last_error"]
    assert full["state"] == "dead" and full["attempts"] == 1
    assert "507 quotaLimitReached: the drive is full" in full["last_error"]


def test_a_batch_with_records_that_repeat_ends_with_every_file_delivered(graph_relay, fake_graph):
    """A batch whose rows name the same records again and again, into "one file per record": the first upload
    is held with its session open until another upload of the same file has been refused a session, so they
    surely meet; the rest meet as they happen to (two workers, many deliveries at once). Each waits its turn:
    no dead letter, one file per record."""
    relay = graph_relay(graph_upload_busy_seconds=1, worker=False)
    relay.start_worker()
    relay.start_worker()
    records = [f"deal:{n}" for n in range(6)]
    rows = [{"record_key": key, "company": "Acme", "seats": n} for n in range(4) for key in records]
    one_file = destination(fake_graph, folder="Deals", file_name="{record_key}", conflict="replace")
    fake_graph.knobs.hold_before("fragment")
    with relay.client() as client:
        answer = client.post("/v1/batches", json=batch_body(rows, destinations=[one_file]))
        assert answer.status_code == 202, answer.text
        eventually(
            lambda: fake_graph.busy_refusals, 120, "an upload to meet the held one's session"
        )
        fake_graph.knobs.release.set()
        batch = finished(client, answer.json()["batch_id"], timeout=180)
        task_ids = [row["task_id"] for row in rows_of(client, batch["batch_id"])]

        def settled():
            found = relay.deliveries_of(task_ids)
            done = len(found) == len(rows) and all(d["state"] in DONE for d in found)
            return found if done else None

        found = eventually(
            settled, 180, "every row's delivery", every=0.5, show=lambda: fake_graph.busy_refusals
        )
    assert batch["counts"]["completed"] == len(rows)
    dead = [d["last_error"] for d in found if d["state"] != "delivered"]
    assert not dead, dead
    files = sorted(fake_graph.files("drive-alice"))
    manifest = "Deals/relay.csv"  # the batch's own file
    assert files == sorted([*(f"Deals/{key.replace(':', '_')}.docx" for key in records), manifest])
