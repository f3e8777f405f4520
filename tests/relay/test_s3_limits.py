"""The S3 destination against stricter stores than moto alone (connectors/s3/fake.py, S3Proxy): an IAM
policy without s3:ListBucket, under which a missing key is a 403, not a 404; a legacy S3-compatible store
that refuses botocore's default checksums; a denied action named in the dead letter; and the link of a
delivery made with temporary credentials."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.relay.test_deliveries import delivered
from tests.relay.test_s3_delivery import destination, objects, original
from tests.support.servers import eventually

LEAST_PRIVILEGE = frozenset(
    {"s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
)
"""The usual least-privilege policy for an uploader: no s3:ListBucket."""


@pytest.mark.parametrize("listable", [True, False], ids=["parts-listed", "parts-not-listed"])
def test_without_list_bucket_a_retry_after_a_killed_worker_finishes_the_upload(
    make_relay, moto, listable
):
    """The retry's look for its object meets S3's 403 for a missing key and goes on; without
    s3:ListMultipartUploadParts too, the upload starts over (and the old one is aborted)."""
    moto.allow = LEAST_PRIVILEGE - ({"s3:ListMultipartUploadParts"} if not listable else set())
    relay = make_relay(worker=False)
    moto.hold_next("part", skip=1)  # one part is in S3, the second waits in the proxy
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=12]]",
            destinations=[destination(moto.url, moto.bucket, part_mb=5)],
        )
        eventually(lambda: moto.held, 60, "the second part to reach the proxy")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        moto.release.set()
        eventually(lambda: moto.in_flight == 0, 60, "the part in flight to land or fail")
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    refused = ["missing key without s3:ListBucket"]
    assert [why for _, why in moto.refused] == (
        refused if listable else [*refused, "s3:ListMultipartUploadParts"]
    )
    assert list(objects(moto).values()) == [file]
    assert moto.s3.list_multipart_uploads(Bucket=moto.bucket).get("Uploads", []) == [], (
        "no upload left behind"
    )


def test_without_list_bucket_rename_and_fail_still_keep_someone_elses_object(relay, moto):
    """Each policy twice: a free key (S3 will not say it is free: 403), and a key someone takes between the
    relay's look and its put, which the conditional put (If-None-Match) catches."""
    moto.allow = LEAST_PRIVILEGE
    outcomes = {}
    for policy in ("rename", "fail"):
        for raced in (False, True):
            record = f"deal:{policy}-{'raced' if raced else 'free'}"
            if raced:
                moto.hold_next("PUT")
            with relay.client() as client:
                task = relay.submit(
                    client,
                    prompt="Sales",
                    record_key=record,
                    destinations=[destination(moto.url, moto.bucket, conflict=policy)],
                )
                if raced:
                    eventually(lambda: moto.held, 60, f"the relay's put ({policy})")
                    key = moto.held.pop().removeprefix(f"/{moto.bucket}/")
                    moto.s3.put_object(Bucket=moto.bucket, Key=key, Body=b"someone else's file")
                    moto.release.set()
                [done] = delivered(relay, client, task["task_id"])
                file = original(client, task["task_id"])
            stored = {k: v for k, v in objects(moto).items() if record.replace(":", "-") in k}
            outcomes[(policy, raced)] = (done, stored, file)
    for policy in ("rename", "fail"):
        done, stored, file = outcomes[(policy, False)]
        assert done["state"] == "delivered", (policy, done["last_error"])
        assert list(stored.values()) == [file]
    done, stored, file = outcomes[("rename", True)]
    assert done["state"] == "delivered", done["last_error"]
    [(theirs, _)] = [(k, v) for k, v in stored.items() if v == b"someone else's file"]
    stem, ext = theirs.rsplit(".", 1)
    assert stored == {theirs: b"someone else's file", f"{stem} (2).{ext}": file}
    done, stored, _ = outcomes[("fail", True)]
    assert done["state"] == "dead" and "exists" in done["last_error"] and done["attempts"] == 1
    assert list(stored.values()) == [b"someone else's file"], "their object was not replaced"


def test_a_legacy_s3_compatible_store_takes_a_put_and_a_multipart_upload(relay, moto):
    moto.legacy = True
    with relay.client() as client:
        small = relay.submit(
            client, prompt="Sales", destinations=[destination(moto.url, moto.bucket)]
        )
        large = relay.submit(
            client,
            prompt="Model [[pad_mb=6]]",
            destinations=[destination(moto.url, moto.bucket, part_mb=5)],
        )
        [put] = delivered(relay, client, small["task_id"])
        [multipart] = delivered(relay, client, large["task_id"], timeout=90)
        files = {original(client, small["task_id"]), original(client, large["task_id"])}
    assert put["state"] == "delivered", put["last_error"]
    assert multipart["state"] == "delivered", multipart["last_error"]
    assert moto.refused == [], "no checksum header nor aws-chunked body reached the store"
    assert set(objects(moto).values()) == files


def test_a_denied_action_is_named_in_the_dead_letter(relay, moto):
    moto.allow = frozenset({"s3:GetObject", "s3:ListBucket"})  # a read-only key
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Sales", destinations=[destination(moto.url, moto.bucket)]
        )
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert "grant s3:PutObject on the bucket" in dead["last_error"]


def test_temporary_credentials_get_the_relays_link_not_one_that_dies_with_their_session(
    relay, moto
):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(moto.url, moto.bucket, session_token="FwoGZXIvYXdzEBY")],
        )
        [done] = delivered(relay, client, task["task_id"])
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    location, link = done["location"].split(" ", 1)
    assert location.startswith(f"s3://{moto.bucket}/")
    assert link.startswith(f"{relay.url}/files/") and "FwoGZXIvYXdzEBY" not in link
    assert httpx.get(link, follow_redirects=True).content == file
