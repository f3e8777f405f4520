"""Google's calls go the way every outbound call of the relay goes: through the environment's HTTPS proxy,
trusting RELAY_OUTBOUND_CA_FILE (a TLS-inspecting proxy's authority), and with a timeout of the relay's own.
The fakes are served over HTTPS by a private authority that only that file names; the proxy records each
tunnel."""

from __future__ import annotations

import socket

import pytest

from app.domain import checks
from connectors import google_auth
from connectors.base import Verdict
from tests.relay.test_deliveries import delivered
from tests.relay.test_drive_delivery import to_drive
from tests.relay.test_write_back import _SHEET_COLUMNS, HEADERS, SPREADSHEET, connect, settled
from tests.relay.test_write_back import Platform as WriteBackPlatform
from tests.relay_fixtures import _served, _service_account_keys
from tests.support.connect_proxy import ConnectProxy


@pytest.fixture
def proxy():
    proxy = ConnectProxy().start()
    yield proxy
    proxy.stop()


def through_proxy(relay, proxy, monkeypatch) -> None:
    """A worker whose environment names the proxy, as a corporate network's would."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    relay.start_worker()
    monkeypatch.delenv("HTTPS_PROXY")


@pytest.fixture
def https_drive(tmp_path, loopback_ca):
    from connectors.gdrive.fake import FakeDrive

    private_pem, public_pem = _service_account_keys()
    fake = FakeDrive(storage=tmp_path / "drive", service_accounts={"key-1": public_pem})
    fake.service_account = {  # type: ignore[attr-defined]
        "type": "service_account",
        "client_email": "relay@project.iam.gserviceaccount.com",
        "private_key": private_pem,
        "private_key_id": "key-1",
    }
    yield from _served(fake, tls=loopback_ca.server_context())


@pytest.fixture
def https_sheets(tmp_path, loopback_ca):
    from connectors.gdrive.fake import FakeDrive
    from connectors.sheets.fake import SHEETS_SCOPE, FakeSheets

    private_pem, public_pem = _service_account_keys()
    auth = FakeDrive(tmp_path / "auth", scope=SHEETS_SCOPE, service_accounts={"key-1": public_pem})
    fake = FakeSheets(auth=auth, window_seconds=6.0)
    fake.add_sheet(SPREADSHEET, "Deals", [list(HEADERS), ["42"]])
    fake.service_account = {  # type: ignore[attr-defined]
        "type": "service_account",
        "client_email": "relay@project.iam.gserviceaccount.com",
        "private_key": private_pem,
        "private_key_id": "key-1",
    }
    yield from _served(fake, tls=loopback_ca.server_context())


def test_drive_signs_in_and_uploads_through_the_proxy_trusting_the_ca_file(
    make_relay, https_drive, loopback_ca, proxy, monkeypatch
):
    relay = make_relay(
        worker=False,
        drive_api_url=https_drive.url,
        drive_token_url=https_drive.url + "/token",
        outbound_ca_file=str(loopback_ca.ca_file),
    )
    through_proxy(relay, proxy, monkeypatch)
    with relay.client() as client:
        task = to_drive(relay, client, https_drive.service_account)
        [done] = delivered(relay, client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    port = https_drive.url.rsplit(":", 1)[1]
    assert https_drive.token_grants and len(https_drive.files) == 1
    assert f"127.0.0.1:{port}" in proxy.tunnels, "the token and the upload went through the proxy"


def test_sheets_writes_back_through_the_proxy_trusting_the_ca_file(
    make_relay, https_sheets, loopback_ca, proxy, monkeypatch
):
    sheet = WriteBackPlatform(
        "sheets",
        https_sheets,
        f"sheets:{SPREADSHEET}/Deals/Deal=42",
        {"credentials": https_sheets.service_account, "fields": _SHEET_COLUMNS},
        ("", 0),
    )
    relay = make_relay(
        worker=False, outbound_ca_file=str(loopback_ca.ca_file), **sheet.relay_settings()
    )
    through_proxy(relay, proxy, monkeypatch)
    with relay.client() as client:
        connection = connect(relay, client, sheet)
        task = relay.submit(
            client,
            prompt="Memo",
            record_key=sheet.record_key,
            write_back={"connection": connection},
        )
        writes = settled(client, task["task_id"])
    assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
    assert sheet.shown()["status"] == "Ready"
    port = https_sheets.url.rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}" in proxy.tunnels, "google-auth and the Sheets calls used the proxy"


def test_a_token_endpoint_that_never_answers_times_out(make_relay, monkeypatch):
    """google-auth waits 120 s for a token by default; the relay gives up sooner and says so."""
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/token"
    monkeypatch.setattr(google_auth, "TOKEN_TIMEOUT", 0.3)
    relay = make_relay(worker=False, drive_api_url="http://127.0.0.1:9", drive_token_url=url)
    try:
        credentials = {
            "type": "authorized_user",
            "client_id": "client-id.apps",
            "client_secret": "client-secret",
            "refresh_token": "1//refresh-token",
        }
        report = checks.run(
            relay.ctx,
            relay.tenant_id,
            "gdrive",
            {"folder_id": "folder-x", "credentials": credentials},
        )
    finally:
        silent.close()
    [signs_in] = report.checks
    assert signs_in.verdict is Verdict.FAILURE and "could not be reached" in signs_in.message
    assert "Timeout" in signs_in.message, signs_in.message
