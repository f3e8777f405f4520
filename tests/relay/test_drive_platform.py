"""Google Drive as it really is (docs/platforms.md, "Google Drive"), against the strict fake: a service
account has no storage quota outside a shared drive, delegation needs an admin's consent, refresh tokens
expire and carry scopes, a search of all drives can come back incomplete; and the check of a destination
says each of these before anything is delivered."""

from __future__ import annotations

import pytest

from app.domain import checks
from connectors.base import Verdict
from tests.relay.test_deliveries import delivered
from tests.relay.test_drive_delivery import to_drive
from tests.support.keys import redis_key

MY_DRIVE = "folder-in-my-drive"


@pytest.fixture
def drive_relay(make_relay, fake_drive):
    fake_drive.folders.add(MY_DRIVE)  # shared with the service account as an Editor: not enough
    return make_relay(drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token")


def test_a_service_account_into_a_my_drive_folder_is_dead_and_says_shared_drive_or_delegation(
    drive_relay, fake_drive
):
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, fake_drive.service_account, folder=MY_DRIVE)
        [dead] = delivered(drive_relay, client, task["task_id"])
        assert dead["state"] == "dead" and dead["attempts"] == 1, dead
        assert "My Drive" in dead["last_error"] and "storageQuotaExceeded" in dead["last_error"]
        assert "shared drive" in dead["last_error"] and "`subject`" in dead["last_error"], "the fix"
        assert fake_drive.files == {}
        # the user follows the fix: the folder moves into a shared drive, and the replay delivers
        fake_drive.shared_drives[MY_DRIVE] = "0AReportsSharedDrive"
        client.post(f"/v1/deliveries/{dead['delivery_id']}/replay").raise_for_status()
        [replayed] = delivered(drive_relay, client, task["task_id"])
    assert replayed["state"] == "delivered" and len(fake_drive.files) == 1, replayed


def test_a_shared_drive_and_a_delegated_service_account_deliver(drive_relay, fake_drive):
    fake_drive.delegation.add(fake_drive.service_account["client_email"])
    as_user = {**fake_drive.service_account, "subject": "ana@example.com"}
    with drive_relay.client() as client:
        shared = to_drive(drive_relay, client, fake_drive.service_account, prompt="Shared")
        delegated = to_drive(drive_relay, client, as_user, prompt="Delegated", folder=MY_DRIVE)
        [in_shared] = delivered(drive_relay, client, shared["task_id"])
        [in_mine] = delivered(drive_relay, client, delegated["task_id"])
    assert in_shared["state"] == in_mine["state"] == "delivered", (in_shared, in_mine)
    drives = sorted(str(f.get("driveId")) for f in fake_drive.files.values())
    assert drives == ["0AReportsSharedDrive", "None"], "one in the shared drive, one in the user's"


def test_delegation_the_admin_never_allowed_is_dead_and_names_the_admin_console(
    drive_relay, fake_drive
):
    as_user = {**fake_drive.service_account, "subject": "ana@example.com"}
    with drive_relay.client() as client:
        task = to_drive(drive_relay, client, as_user, folder=MY_DRIVE)
        [dead] = delivered(drive_relay, client, task["task_id"])
    assert dead["state"] == "dead" and "unauthorized_client" in dead["last_error"], dead
    assert "Domain-wide delegation" in dead["last_error"]


def test_an_expired_refresh_token_and_a_missing_scope_say_what_to_do(drive_relay, fake_drive):
    fake_drive.oauth_clients["1//file-only"] = ("client-id.apps", "client-secret")
    fake_drive.oauth_scopes["1//file-only"] = {"https://www.googleapis.com/auth/drive.file"}
    fake_drive.expired_refresh_tokens.add("1//refresh-token")  # a Testing app's token, 7 days on
    with drive_relay.client() as client:
        expired = to_drive(drive_relay, client, fake_drive.oauth_user, prompt="Expired")
        narrow = to_drive(
            drive_relay,
            client,
            {**fake_drive.oauth_user, "refresh_token": "1//file-only"},
            prompt="Narrow",
        )
        [old] = delivered(drive_relay, client, expired["task_id"])
        [scoped] = delivered(drive_relay, client, narrow["task_id"])
    assert old["state"] == "dead" and "invalid_grant" in old["last_error"], old
    assert "Testing" in old["last_error"] and "publish the app" in old["last_error"]
    assert scoped["state"] == "dead" and "invalid_scope" in scoped["last_error"], scoped
    assert "auth/drive" in scoped["last_error"] and "sign in again" in scoped["last_error"]


def test_an_incomplete_search_of_all_drives_never_makes_a_second_file(drive_relay, fake_drive):
    fake_drive.incomplete_all_drives = True
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
    assert again["state"] == "delivered" and len(fake_drive.files) == 1, fake_drive.files


# -- the check when a destination is saved ----------------------------------------------------------


@pytest.fixture
def checking_relay(make_relay, fake_drive):
    fake_drive.folders |= {MY_DRIVE, "folder-viewer"}
    fake_drive.shared_drives["folder-viewer"] = "0AReportsSharedDrive"
    fake_drive.read_only.add("folder-viewer")
    return make_relay(
        worker=False, drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token"
    )


def check(relay, credentials: dict, folder: str = "folder-reports") -> dict[str, tuple[str, str]]:
    report = checks.run(
        relay.ctx, relay.tenant_id, "gdrive", {"folder_id": folder, "credentials": credentials}
    )
    return {c.name: (c.verdict, f"{c.message} | {c.fix}") for c in report.checks}


def test_the_check_passes_a_shared_drive_and_fails_my_drive_naming_the_fix(
    checking_relay, fake_drive
):
    good = check(checking_relay, fake_drive.service_account)
    assert {verdict for verdict, _ in good.values()} == {Verdict.PASS}, good
    assert set(good) == {
        "signs in",
        "the folder exists",
        "the folder is where the credentials may own files",
        "may add files to the folder",
    }
    mine = check(checking_relay, fake_drive.service_account, MY_DRIVE)
    verdict, words = mine["the folder is where the credentials may own files"]
    assert verdict is Verdict.FAILURE and "shared drive" in words and "subject" in words, words
    assert (
        check(checking_relay, fake_drive.oauth_user, MY_DRIVE)[
            "the folder is where the credentials may own files"
        ][0]
        is Verdict.PASS
    ), "a user owns what it uploads to its My Drive"
    assert fake_drive.files == {} and fake_drive.sessions == {}, "a check uploads nothing"


def test_the_check_fails_a_viewer_a_missing_folder_and_bad_credentials(checking_relay, fake_drive):
    viewer = check(checking_relay, fake_drive.service_account, "folder-viewer")
    assert viewer["may add files to the folder"][0] is Verdict.FAILURE, viewer
    assert "Editor" in viewer["may add files to the folder"][1]
    missing = check(checking_relay, fake_drive.service_account, "folder-nowhere")
    assert missing["the folder exists"][0] is Verdict.FAILURE, missing
    assert fake_drive.service_account["client_email"] in missing["the folder exists"][1]
    revoked = check(checking_relay, {**fake_drive.oauth_user, "refresh_token": "1//revoked"})
    assert revoked["signs in"][0] is Verdict.FAILURE and "invalid_grant" in revoked["signs in"][1]
