"""Google Drive destination against the fake Drive v3: resumable uploads, credentials, idempotency."""

from __future__ import annotations

import httpx
import pytest

from tests.relay.test_deliveries import delivered
from tests.support.keys import redis_key


@pytest.fixture
def drive_relay(make_relay, fake_drive):
    return make_relay(drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token")


def to_drive(relay, client, credentials, prompt="Sales by region", folder="folder-reports"):
    destination = {"kind": "gdrive", "config": {"folder_id": folder, "credentials": credentials}}
    return relay.submit(client, prompt=prompt, record_key="deal:9", destinations=[destination])


def original_bytes(client, task_id: str) -> bytes:
    return httpx.get(client.get(f"/v1/tasks/{task_id}").json()["result"]["download_url"]).content


def test_service_account_upload_lands_in_the_folder_with_the_delivery_id(drive_relay, fake_drive):
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, fake_drive.service_account)
        [done] = delivered(drive_relay, client, task["task_id"])
        original = original_bytes(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [file] = fake_drive.files.values()
    assert file["parents"] == ["folder-reports"] and file["name"].startswith("deal-9-workbook-")
    assert file["appProperties"] == {"relayDeliveryId": done["delivery_id"]}
    assert fake_drive.file_bytes(file["id"]) == original
    assert fake_drive.token_grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]


def test_oauth_refresh_token_credentials(drive_relay, fake_drive):
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, fake_drive.oauth_user)
        [done] = delivered(drive_relay, client, task["task_id"])
        revoked = to_drive(
            drive_relay, client, {**fake_drive.oauth_user, "refresh_token": "1//revoked"}
        )
        [dead] = delivered(drive_relay, client, revoked["task_id"])
    assert done["state"] == "delivered" and "refresh_token" in fake_drive.token_grants
    assert dead["state"] == "dead" and "refused the credentials" in dead["last_error"]


def test_upload_resumes_after_the_connection_broke_mid_chunk(drive_relay, fake_drive):
    fake_drive.break_next_upload(after_bytes=600 * 1024)  # 2 whole granules (512 KiB) survive
    with drive_relay.client() as client:
        task = to_drive(
            drive_relay, client, fake_drive.service_account, prompt="Big model [[pad_mb=1]]"
        )
        [done] = delivered(drive_relay, client, task["task_id"])
        original = original_bytes(client, task["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 1, "resumed within the same attempt"
    [file] = fake_drive.files.values()
    assert len(original) > 1024 * 1024 and fake_drive.file_bytes(file["id"]) == original
    assert fake_drive.put_requests == 3, "the broken chunk, a status query, the rest from 512 KiB"


def test_rate_limits_and_5xx_are_retried_into_one_file(drive_relay, fake_drive):
    fake_drive.fail_next(1, status=403)
    fake_drive.fail_next(1, status=500)
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, fake_drive.service_account)
        [done] = delivered(drive_relay, client, task["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 3 and len(fake_drive.files) == 1


def test_a_lost_record_of_success_never_makes_a_second_file(drive_relay, fake_drive):
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, fake_drive.service_account)
        [done] = delivered(drive_relay, client, task["task_id"])
        # as if the worker died after Drive created the file but before the relay recorded it
        drive_relay.ctx.redis.hset(
            redis_key(drive_relay.ctx, "delivery", done["delivery_id"]),
            mapping={"state": "retrying", "progress": "{}"},
        )
        client.post(f"/v1/deliveries/{done['delivery_id']}/replay").raise_for_status()
        [again] = delivered(drive_relay, client, task["task_id"])
    assert again["state"] == "delivered" and len(fake_drive.files) == 1
    assert again["location"] == done["location"]


def test_429_is_retried_and_a_missing_folder_is_permanent_then_replays_once_it_exists(
    drive_relay, fake_drive
):
    fake_drive.fail_next(1, status=429)
    with drive_relay.client() as client:
        retried = to_drive(drive_relay, client, fake_drive.service_account)
        [done] = delivered(drive_relay, client, retried["task_id"])
        assert done["state"] == "delivered" and done["attempts"] == 2
        failed = to_drive(drive_relay, client, fake_drive.service_account, folder="folder-later")
        [dead] = delivered(drive_relay, client, failed["task_id"])
        assert dead["state"] == "dead" and "folder" in dead["last_error"], (
            "a missing folder is permanent"
        )
        fake_drive.folders.add("folder-later")
        fake_drive.shared_drives["folder-later"] = "0AReportsSharedDrive"
        client.post(f"/v1/deliveries/{dead['delivery_id']}/replay").raise_for_status()
        [replayed] = delivered(drive_relay, client, failed["task_id"])
    assert replayed["state"] == "delivered" and len(fake_drive.files) == 2
