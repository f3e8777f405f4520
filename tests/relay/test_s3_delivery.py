"""The S3 destination against moto's standalone server (a real S3 endpoint on loopback), through a proxy
that adds S3's bad days: one object per delivery with the right bytes, a multipart upload resumed after its
worker was killed, the conflict policies, a throttling answer honoured, and refused credentials."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal

import boto3
import httpx
from botocore.config import Config

from connectors.s3.fake import free_port, start_moto
from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually

BUCKET = "reports"
_buckets = itertools.count(1)


def s3_client(url: str, key_id: str = "testing", secret: str = "testing"):
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def destination(url: str, bucket: str = BUCKET, **config) -> dict:
    return {
        "kind": "s3",
        "config": {
            "bucket": bucket,
            "endpoint_url": url,
            "addressing_style": "path",
            "access_key_id": "testing",
            "secret_access_key": "testing",
            **config,
        },
    }


def original(client, task_id: str) -> bytes:
    return httpx.get(client.get(f"/v1/tasks/{task_id}").json()["result"]["download_url"]).content


def objects(moto) -> dict[str, bytes]:
    listed = moto.s3.list_objects_v2(Bucket=moto.bucket).get("Contents", [])
    return {
        o["Key"]: moto.s3.get_object(Bucket=moto.bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def test_a_small_file_becomes_one_object_with_a_presigned_link(relay, moto):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales by region",
            record_key="deal:7",
            destinations=[destination(moto.url, moto.bucket, prefix="deals/7", link_seconds=3600)],
        )
        [done] = delivered(relay, client, task["task_id"])
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [(key, stored)] = objects(moto).items()
    assert key.startswith("deals/7/deal-7-") and stored == file
    assert moto.s3.head_object(Bucket=moto.bucket, Key=key)["Metadata"] == {
        "relay-delivery-id": done["delivery_id"]
    }
    location, link = done["location"].split(" ", 1)
    assert location == f"s3://{moto.bucket}/{key}" and "X-Amz-Expires=3600" in link
    assert httpx.get(link).content == file, "the presigned link downloads the object"


def test_a_large_file_resumes_its_multipart_upload_after_the_worker_is_killed(make_relay, moto):
    relay = make_relay(worker=False)
    moto.hold_next("part", skip=2)  # two parts are in S3, the third waits in the proxy
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=24]]",
            destinations=[destination(moto.url, moto.bucket, part_mb=5)],
        )
        eventually(
            lambda: moto.held, 60, "the third part to reach the proxy", show=lambda: moto.answered
        )
        assert moto.parts_forwarded == 2, "killed with two parts in and the rest to come"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        moto.release.set()  # the part the proxy was holding may still reach S3, whole or not at all
        eventually(
            lambda: moto.in_flight == 0,
            60,
            "the part in flight to land or fail",
            show=lambda: moto.answered,
        )
        [upload] = moto.s3.list_multipart_uploads(Bucket=moto.bucket)["Uploads"]
        held = len(
            moto.s3.list_parts(Bucket=moto.bucket, Key=upload["Key"], UploadId=upload["UploadId"])[
                "Parts"
            ]
        )
        sent_before = moto.parts_forwarded
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [(key, stored)] = objects(moto).items()
    assert (
        hashlib.sha256(stored).hexdigest() == hashlib.sha256(file).hexdigest()
        and len(file) > 24 * 2**20
    )
    assert held >= 2 and moto.parts_forwarded - sent_before == 5 - held, (
        "only the parts S3 lacked were sent"
    )
    assert moto.s3.list_multipart_uploads(Bucket=moto.bucket).get("Uploads", []) == [], (
        "no upload left behind"
    )
    assert key == upload["Key"]


def test_the_conflict_policies(relay, moto):
    """Each policy meets an object someone put under its key first: before the relay looks for one (rename,
    fail), or before it writes without looking (replace). One policy after the other, on one relay."""
    for policy in ("replace", "rename", "fail"):
        moto.hold_next("PUT" if policy == "replace" else "HEAD")
        with relay.client() as client:
            task = relay.submit(
                client,
                prompt="Sales",
                record_key=f"deal:{policy}",
                destinations=[destination(moto.url, moto.bucket, conflict=policy)],
            )
            eventually(lambda: moto.held, 60, f"the relay to look for the object's name ({policy})")
            key = moto.held.pop().removeprefix(f"/{moto.bucket}/")
            moto.s3.put_object(Bucket=moto.bucket, Key=key, Body=b"someone else's file")
            moto.release.set()
            [done] = delivered(relay, client, task["task_id"])
            file = original(client, task["task_id"])
        stored = {k: v for k, v in objects(moto).items() if f"deal-{policy}" in k}
        if policy == "replace":
            assert done["state"] == "delivered" and stored == {key: file}, policy
        elif policy == "rename":
            stem, ext = key.rsplit(".", 1)
            assert done["state"] == "delivered" and stored == {
                key: b"someone else's file",
                f"{stem} (2).{ext}": file,
            }
        else:
            assert (
                done["state"] == "dead" and "exists" in done["last_error"] and done["attempts"] == 1
            ), done
            assert stored == {key: b"someone else's file"}


def test_a_throttling_answer_is_honoured(relay, moto):
    moto.throttle_next(1, status=429, retry_after="1")
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Sales", destinations=[destination(moto.url, moto.bucket)]
        )
        [done] = delivered(relay, client, task["task_id"], timeout=60)
    assert moto.lockout.early == [], (
        "the retry waited for Retry-After: the store refuses calls before it"
    )
    assert [status for _, status in moto.answered].count(429) == 1
    assert done["state"] == "delivered" and done["attempts"] == 2


def test_refused_credentials_land_in_the_dead_letters(make_relay):
    port = free_port()
    process = start_moto(port, authenticated_after=4)
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="relay")
        iam.put_user_policy(
            UserName="relay",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="relay")["AccessKey"]
        s3_client(
            f"http://127.0.0.1:{port}", key["AccessKeyId"], key["SecretAccessKey"]
        ).create_bucket(Bucket=BUCKET)
        relay = make_relay()
        with relay.client() as client:
            good = relay.submit(
                client,
                prompt="Sales",
                destinations=[
                    destination(
                        f"http://127.0.0.1:{port}",
                        access_key_id=key["AccessKeyId"],
                        secret_access_key=key["SecretAccessKey"],
                    )
                ],
            )
            bad = relay.submit(
                client,
                prompt="Sales",
                destinations=[
                    destination(f"http://127.0.0.1:{port}", access_key_id="AKIAREVOKED000000000")
                ],
            )
            [fine] = delivered(relay, client, good["task_id"])
            [dead] = delivered(relay, client, bad["task_id"])
            listed = {d["delivery_id"] for d in client.get("/v1/deliveries").json()["items"]}
    finally:
        process.kill()
        process.wait()
    assert fine["state"] == "delivered", fine["last_error"]
    assert dead["state"] == "dead" and dead["attempts"] == 1 and dead["delivery_id"] in listed
    assert (
        "S3 refused the credentials" in dead["last_error"]
        and "InvalidAccessKeyId" in dead["last_error"]
    )
