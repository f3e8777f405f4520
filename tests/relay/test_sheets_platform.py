"""Google Sheets as it really is (docs/platforms.md, "Google Sheets"), against the strict fake: 60 reads and
60 writes per user per window, a service account being one user, 429s without Retry-After; the grid, Excel
files, viewers and scopes; and the check of a connection. The fake's window is shortened (6 s) and the relay
is given the same window, so a batch runs in seconds with the real 60-per-window limits."""

from __future__ import annotations

import pytest

from app.domain import checks
from connectors.base import Verdict
from tests.relay.test_batches import finished
from tests.relay.test_write_back import _SHEET_COLUMNS, HEADERS, SPREADSHEET, connect, settled
from tests.relay.test_write_back import Platform as WriteBackPlatform
from tests.support.servers import eventually

ROWS = 120
"""Each row's task writes back twice (its start and its end): 240 write-backs through one service account."""


@pytest.fixture
def sheet(fake_sheets):
    fake_sheets.add_sheet(
        SPREADSHEET, "Deals", [list(HEADERS), *([str(n)] for n in range(1, ROWS + 1))]
    )
    return WriteBackPlatform(
        "sheets",
        fake_sheets,
        "",
        {"credentials": fake_sheets.service_account, "fields": _SHEET_COLUMNS},
        ("", 0),
    )


def test_a_batch_of_write_backs_through_one_service_account_leaves_no_dead_letter(
    make_relay, sheet, fake_sheets
):
    """Two workers write back a batch's rows through one service account: the pace of its reads and of its
    writes is shared, the header row and key column are read once in a while rather than for every row, and
    a 429 (if a busy machine sends late after its slot) costs no attempt."""
    relay = make_relay(worker=False, **sheet.relay_settings())
    relay.start_worker()
    relay.start_worker()
    with relay.client() as client:
        connection = connect(relay, client, sheet)
        rows = [
            {"record_key": f"sheets:{SPREADSHEET}/Deals/Deal={n}", "prompt": f"Memo {n}"}
            for n in range(1, ROWS + 1)
        ]
        answer = client.post(
            "/v1/batches",
            json={"format": "word", "rows": rows, "write_back": {"connection": connection}},
        )
        assert answer.status_code == 202, answer.text
        batch = finished(client, answer.json()["batch_id"], timeout=240)
        assert batch["counts"].get("completed") == ROWS, batch["counts"]
        tasks = [str(row.task_id) for row in relay.ctx.batches.rows(answer.json()["batch_id"])]
        writes = eventually(
            lambda: (
                (found := relay.deliveries_of(tasks))
                and len(found) == 2 * ROWS
                and all(w["state"] in ("delivered", "dead") for w in found)
                and found
            ),
            240,
            "every write-back to settle",
            every=0.2,
        )
        dead = client.get("/v1/deliveries").json()["items"]  # the dead letters
    assert len(writes) == 2 * ROWS and not dead, dead[:3]
    assert {w["state"] for w in writes} == {"delivered"}, [w["last_error"] for w in writes][:3]
    assert {int(w["attempts"]) for w in writes} == {1}, "waiting for the quota spends no attempt"
    statuses = {row[0]: row[1] for row in fake_sheets.spreadsheets[SPREADSHEET]["Deals"][1:]}
    assert set(statuses.values()) == {"Ready"}, statuses
    reads = sum(1 for _, method, _ in fake_sheets.knobs.calls if method == "GET")
    assert reads < len(writes) / 4, (
        f"{reads} reads for {len(writes)} write-backs: the header row and key column are kept"
    )


def test_the_grid_an_excel_file_a_viewer_and_a_missing_scope_are_dead_with_the_fix(
    make_relay, sheet, fake_sheets
):
    fake_sheets.excel.add("1ExcelFileInDrive_0123456789")
    fake_sheets.add_sheet("1ViewerOnlySpreadsheet_0123456789", "Deals", [list(HEADERS), ["1"]])
    fake_sheets.viewers.add("1ViewerOnlySpreadsheet_0123456789")
    auth = fake_sheets.auth
    auth.oauth_clients["1//read-only"] = ("client-id.apps", "client-secret")
    auth.oauth_scopes["1//read-only"] = {"https://www.googleapis.com/auth/spreadsheets.readonly"}
    read_only_user = {
        "type": "authorized_user",
        "client_id": "client-id.apps",
        "client_secret": "client-secret",
        "refresh_token": "1//read-only",
    }
    relay = make_relay(**sheet.relay_settings())
    with relay.client() as client:
        service = connect(relay, client, sheet)
        refused = client.post(
            "/v1/destinations",
            json={
                "name": "x",
                "kind": "sheets",
                "config": {**sheet.config, "credentials": read_only_user},
            },
        ).json()["error"]
        assert refused["code"] == "destination_check_failed", refused
        assert "auth/spreadsheets" in refused["message"], "the check names the scope at once"
        user = connect(relay, client, sheet, check=False, credentials=read_only_user)
        cases = {
            "grid": (service, f"sheets:{SPREADSHEET}/Deals/5000"),
            "excel": (service, "sheets:1ExcelFileInDrive_0123456789/Deals/2"),
            "viewer": (service, "sheets:1ViewerOnlySpreadsheet_0123456789/Deals/Deal=1"),
            "scope": (user, f"sheets:{SPREADSHEET}/Deals/2"),
        }
        tasks = {
            case: relay.submit(
                client, prompt=f"Memo {case}", record_key=key, write_back={"connection": via}
            )
            for case, (via, key) in cases.items()
        }
        ends = {case: settled(client, task["task_id"])[1] for case, task in tasks.items()}
    errors = {case: (end["state"], end["last_error"]) for case, end in ends.items()}
    assert {state for state, _ in errors.values()} == {"dead"}, errors
    assert "past the sheet's grid" in errors["grid"][1], errors
    assert "Excel file" in errors["excel"][1] and "save it as a Google Sheet" in errors["excel"][1]
    assert "as an Editor" in errors["viewer"][1], errors
    assert "invalid_scope" in errors["scope"][1] and "auth/spreadsheets" in errors["scope"][1]
    assert len(fake_sheets.spreadsheets[SPREADSHEET]["Deals"]) == ROWS + 1, "the grid never grew"


# -- the check when a connection is saved ----------------------------------------------------------


@pytest.fixture
def checking(make_relay, sheet, fake_sheets):
    relay = make_relay(worker=False, **sheet.relay_settings())

    def check(credentials=None, record_key=f"sheets:{SPREADSHEET}/Deals/Deal=42", **config):
        report = checks.run(
            relay.ctx,
            relay.tenant_id,
            "sheets",
            {
                "credentials": credentials or fake_sheets.service_account,
                "fields": _SHEET_COLUMNS,
                **({"check_record_key": record_key} if record_key else {}),
                **config,
            },
        )
        return {c.name: (c.verdict, f"{c.message} | {c.fix}") for c in report.checks}

    return check


def test_the_check_opens_the_sheet_finds_the_headers_and_may_write(checking, fake_sheets):
    found = checking()
    assert {verdict for verdict, _ in found.values()} == {Verdict.PASS}, found
    assert set(found) == {
        "signs in",
        "opens the spreadsheet and tab",
        "row 1 has the headers",
        "may write",
    }
    assert fake_sheets.spreadsheets[SPREADSHEET]["Deals"][0] == HEADERS, "nothing changed"
    unnamed = checking(record_key="")
    assert unnamed["opens a spreadsheet"][0] is Verdict.WARNING, unnamed
    assert "check_record_key" in unnamed["opens a spreadsheet"][1]


def test_the_check_fails_a_viewer_a_missing_tab_or_header_and_a_bad_key(checking, fake_sheets):
    fake_sheets.viewers.add(SPREADSHEET)
    viewer = checking()
    assert viewer["may write"][0] is Verdict.FAILURE and "Editor" in viewer["may write"][1], viewer
    fake_sheets.viewers.clear()
    tab = checking(record_key=f"sheets:{SPREADSHEET}/Pipeline/2")
    assert tab["opens the spreadsheet and tab"][0] is Verdict.FAILURE, tab
    assert "'Pipeline'" in tab["opens the spreadsheet and tab"][1]
    header = checking(record_key=f"sheets:{SPREADSHEET}/Deals/Owner=ana")
    assert header["row 1 has the headers"][0] is Verdict.FAILURE, header
    assert "'Owner'" in header["row 1 has the headers"][1]
    revoked = checking({**fake_sheets.service_account, "private_key_id": "key-revoked"})
    assert revoked["signs in"][0] is Verdict.FAILURE, revoked
