"""Write-back to the record a document belongs to, for HubSpot, Airtable and Google Sheets, over real HTTP
against each platform's fake: the status through the task's life, a link that downloads the real file,
exactly one attachment (or note, or link) per task, versions, a killed worker, a failed task, a 429 and a
bad token. Each test runs its case on the three platforms at once, through one relay (one worker start for
the three); a Platform says where each platform keeps what, and every check names its platform."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors import airtable
from tests.support.servers import eventually

FIELDS = {
    "status": "relay_status",
    "error": "relay_error",
    "link": "relay_link",
    "version": "relay_version",
    "credits": "relay_credits",
    "updated_at": "relay_updated_at",
}
AIRTABLE = ("app" + "A" * 13 + "1", "Deals", "rec" + "B" * 13 + "1")
SPREADSHEET = "1SheetsFakeSpreadsheetId_0123456789"
HEADERS = ["Deal", "Status", "Error", "Link", "Version", "Credits", "Updated"]
PLATFORMS = ("hubspot", "airtable", "sheets")
HOLD = "write-back"
"""A task submitted with [[hold=write-back]] runs until the test releases it (relay.sandbox.release(HOLD))."""


@dataclass
class Platform:
    """One platform's fake and how to read what the relay wrote there."""

    name: str
    fake: Any
    record_key: str
    config: dict
    pause_on: tuple[str, int]
    """The fake's write of a task's end to hold a worker on, and how many such writes to let pass first."""

    def relay_settings(self) -> dict:
        if self.name == "hubspot":
            return self.fake.settings()
        if self.name == "airtable":
            # the fake reaches the test's relay on loopback, as Airtable reaches a public one
            return {
                "airtable_api_url": self.fake.url,
                "airtable_backoff_seconds": 1.0,
                "airtable_private_attachments": True,
            }
        return {
            "sheets_api_url": self.fake.url + "/",
            "drive_token_url": self.fake.url + "/token",
            "sheets_quota_window_seconds": self.fake.window_seconds,
        }

    def shown(self) -> dict[str, Any]:
        """The record's mapped values, by mapping name (status, error, link, version...)."""
        if self.name == "hubspot":
            values = self.fake.records[("deals", "42")]
            return {name: values.get(prop) for name, prop in FIELDS.items()}
        if self.name == "airtable":
            row = self.fake.rows[AIRTABLE]
            return {name: row.get(column) for name, column in _AIRTABLE_COLUMNS.items()}
        row = self.fake.spreadsheets[SPREADSHEET]["Deals"][1]
        cells = dict(zip(HEADERS, row + [""] * (len(HEADERS) - len(row)), strict=True))
        return {name: cells[header] or None for name, header in _SHEET_COLUMNS.items()}

    def statuses(self) -> list[str]:
        """Every status written, in order."""
        if self.name == "hubspot":
            return [w["relay_status"] for w in self.fake.writes if "relay_status" in w]
        if self.name == "airtable":
            return [w["Status"] for w in self.fake.writes if "Status" in w]
        return [
            value
            for write in self.fake.writes
            for cell, value in write.items()
            if cell.endswith("!B2")
        ]

    def files(self) -> list[bytes]:
        """What is attached to the record now (for a sheet: what each link in the link cell downloads)."""
        if self.name == "hubspot":
            notes = self.fake.notes_on("deals", "42")
            return [self.fake.file_bytes[n["properties"]["hs_attachment_ids"]] for n in notes]
        if self.name == "airtable":
            attachments = self.fake.rows[AIRTABLE].get("Files") or []
            eventually(
                lambda: all(a["id"] in self.fake.fetched for a in attachments),
                60,
                "Airtable's downloads",
                every=0.05,
            )
            return [self.fake.fetched[a["id"]] for a in attachments]
        links = [line.rsplit(" ", 1)[-1] for line in (self.shown()["link"] or "").splitlines()]
        return [download(link) for link in links]


_AIRTABLE_COLUMNS = {
    "status": "Status",
    "error": "Error",
    "link": "Link",
    "version": "Version",
    "credits": "Credits",
    "updated_at": "Updated",
}
_SHEET_COLUMNS = _AIRTABLE_COLUMNS


def platform(name: str, request) -> Platform:
    if name == "hubspot":
        fake = request.getfixturevalue("fake_hubspot")
        fake.add_record("deals", "42")
        return Platform(
            name,
            fake,
            "hubspot:deal:42",
            {"token": "pat-na1-test-token", "fields": FIELDS},
            ("note", 0),
        )
    if name == "airtable":
        fake = request.getfixturevalue("fake_airtable")
        fake.fetch_private = True  # the test's relay is on loopback
        fake.add_row(
            *AIRTABLE, {**{c: "text" for c in _AIRTABLE_COLUMNS.values()}, "Files": "attachments"}
        )
        return Platform(
            name,
            fake,
            "airtable:" + "/".join(AIRTABLE),
            {"token": "patTEST.token", "fields": {**_AIRTABLE_COLUMNS, "file": "Files"}},
            ("attachment", 0),
        )
    fake = request.getfixturevalue("fake_sheets")
    fake.add_sheet(SPREADSHEET, "Deals", [list(HEADERS), ["42"], ["43"]])
    return Platform(
        name,
        fake,
        f"sheets:{SPREADSHEET}/Deals/Deal=42",
        {"credentials": fake.service_account, "fields": _SHEET_COLUMNS},
        ("values", 0),
    )


@pytest.fixture
def targets(request) -> list[Platform]:
    """The three platforms' fakes, each with the record its tasks write back to."""
    return [platform(name, request) for name in PLATFORMS]


def relay_for(make_relay, targets: list[Platform], **overrides):
    """One relay that reaches every platform's fake."""
    settings = {key: value for target in targets for key, value in target.relay_settings().items()}
    return make_relay(**settings, **overrides)


def on_each(targets: list[Platform], *rest: list, check: Callable[..., None]) -> None:
    """``check(target, *its items)`` for every platform; a failure names the platforms it failed on."""
    failed = []
    for target, *items in zip(targets, *rest, strict=True):
        try:
            check(target, *items)
        except AssertionError as exc:
            failed.append(f"{target.name}: {exc}")
    assert not failed, "\n".join(failed)


def download(link: str) -> bytes:
    response = httpx.get(link, follow_redirects=True, timeout=30)
    assert response.status_code == 200, (link, response.status_code)
    return response.content


def connect(
    relay, client, target: Platform, versions: str = "replace", check: bool = True, **config
) -> str:
    """Save the target's connection; ``check=False`` saves it without its check (one that fails it)."""
    body = {
        "name": f"{target.name} deals",
        "kind": target.name,
        "config": {**target.config, "versions": versions, **config},
    }
    answer = client.post("/v1/destinations" + ("" if check else "?check=false"), json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def settled(client, task_id: str, count: int = 2, timeout: float = 60) -> list[dict]:
    def done():
        found = client.get(f"/v1/tasks/{task_id}").json()["deliveries"]
        return (
            found
            if len(found) == count and all(d["state"] in ("delivered", "dead") for d in found)
            else None
        )

    return eventually(
        done,
        timeout,
        f"the write-backs of {task_id}",
        every=0.1,
        show=lambda: client.get(f"/v1/tasks/{task_id}").json()["deliveries"],
    )


def original(client, task_id: str) -> bytes:
    return download(client.get(f"/v1/tasks/{task_id}").json()["result"]["download_url"])


def held_tasks(
    relay, client, targets: list[Platform], connections: list[str]
) -> tuple[list[dict], list[dict]]:
    """A task per platform through its connection, held running (see HOLD), and each one's start write once it
    has settled: the start write is made while the task runs, never skipped because it had ended."""
    tasks = [
        relay.submit(
            client,
            prompt=f"Renewal memo [[hold={HOLD}]]",
            record_key=target.record_key,
            write_back={"connection": connection},
        )
        for target, connection in zip(targets, connections, strict=True)
    ]
    starts = [settled(client, task["task_id"], count=1)[0] for task in tasks]
    return tasks, starts


def generating(relay, client, targets: list[Platform], versions: str = "replace") -> list[dict]:
    """A task per platform through a new connection, held running once its record shows Generating."""
    connections = [connect(relay, client, target, versions) for target in targets]
    tasks, starts = held_tasks(relay, client, targets, connections)

    def shows_generating(target: Platform, start: dict) -> None:
        assert start["state"] == "delivered" and target.statuses() == ["Generating"], start

    on_each(targets, starts, check=shows_generating)
    return tasks


def test_a_completed_task_shows_ready_with_its_file_and_one_attachment(make_relay, targets):
    relay = relay_for(make_relay, targets)
    with relay.client() as client:
        tasks = generating(relay, client, targets)
        relay.sandbox.release(HOLD)
        done = [relay.wait_task(client, task["task_id"]) for task in tasks]
        writes = [settled(client, task["task_id"]) for task in tasks]
        files = [original(client, task["task_id"]) for task in tasks]

    def ready_with_its_file(target: Platform, done: dict, writes: list[dict], file: bytes) -> None:
        assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
        assert target.statuses() == ["Generating", "Ready"]
        shown = target.shown()
        assert shown["error"] in ("", None) and int(shown["version"]) == done["turn_index"]
        assert float(shown["credits"]) == done["credits_used"] and shown["updated_at"]
        assert download(shown["link"].rsplit(" ", 1)[-1]) == file, (
            "the link leads to a fresh download of the file"
        )
        assert target.files() == [file], "exactly one attachment, and it is the file"

    on_each(targets, done, writes, files, check=ready_with_its_file)


@pytest.mark.parametrize("versions", ["replace", "keep"])
def test_a_second_prompt_writes_the_new_version(make_relay, targets, versions):
    relay = relay_for(make_relay, targets)
    with relay.client() as client:
        connections = [connect(relay, client, target, versions=versions) for target in targets]
        firsts = [
            relay.submit(
                client,
                prompt="Renewal memo",
                record_key=target.record_key,
                write_back={"connection": connection},
            )
            for target, connection in zip(targets, connections, strict=True)
        ]
        for first in firsts:
            settled(client, first["task_id"])
        seconds = [
            relay.submit(
                client,
                prompt="Add a pricing table",
                record_key=target.record_key,
                write_back={"connection": connection},
            )
            for target, connection in zip(targets, connections, strict=True)
        ]
        done = [relay.wait_task(client, second["task_id"]) for second in seconds]
        for second in seconds:
            settled(client, second["task_id"])
        files = [
            [original(client, first["task_id"]), original(client, second["task_id"])]
            for first, second in zip(firsts, seconds, strict=True)
        ]

    def the_new_version(target: Platform, first: dict, done: dict, files: list[bytes]) -> None:
        assert done["run_id"] == first["run_id"], "the same document, changed"
        assert (
            int(target.shown()["version"]) == done["turn_index"]
            and target.shown()["status"] == "Ready"
        )
        if versions == "replace":
            assert target.files() == files[1:]
        # a line per version, each a link to the run: the API keeps its newest state
        elif target.name == "sheets":
            assert target.files() == [files[1], files[1]] and files[0] != files[1]
        else:
            assert target.files() == files

    on_each(targets, firsts, done, files, check=the_new_version)


def test_a_worker_killed_in_the_middle_of_a_write_back_leaves_one_attachment(make_relay, targets):
    relay = relay_for(make_relay, targets, worker=False)
    worker = relay.start_worker()
    with relay.client() as client:
        # a second attachment would stay
        tasks = generating(relay, client, targets, versions="keep")
        for target in targets:
            # the end's write is committed, then held
            target.fake.knobs.pause_after(*target.pause_on)
        relay.sandbox.release(HOLD)
        for target in targets:
            assert target.fake.knobs.paused.wait(60), (
                f"{target.name}: the end's write never reached the platform"
            )
        # the platforms have the writes; the relay never heard back
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        for target in targets:
            target.fake.knobs.release.set()
        relay.start_worker()
        writes = [settled(client, task["task_id"], timeout=120) for task in tasks]
        files = [original(client, task["task_id"]) for task in tasks]

    def one_attachment(target: Platform, writes: list[dict], file: bytes) -> None:
        assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
        assert target.files() == [file], "one attachment after the attempt was made again"
        assert target.shown()["status"] == "Ready"

    on_each(targets, writes, files, check=one_attachment)


def test_a_failed_task_writes_failed_with_its_reason(make_relay, targets):
    relay = relay_for(make_relay, targets)
    with relay.client() as client:
        tasks = [
            relay.submit(
                client,
                prompt="Renewal memo [[fail]]",
                record_key=target.record_key,
                write_back={"connection": connect(relay, client, target)},
            )
            for target in targets
        ]
        done = [relay.wait_task(client, task["task_id"]) for task in tasks]
        writes = [settled(client, task["task_id"]) for task in tasks]

    def failed_with_its_reason(target: Platform, done: dict, writes: list[dict]) -> None:
        assert done["status"] == "failed" and [w["state"] for w in writes] == [
            "delivered",
            "delivered",
        ], writes
        shown = target.shown()
        assert target.statuses()[-1] == "Failed" and shown["status"] == "Failed"
        assert shown["error"] == done["error"]["message"], "the reason, in words"
        assert target.files() == [] and shown["link"] in ("", None)

    on_each(targets, done, writes, check=failed_with_its_reason)


def test_a_429_is_honoured(make_relay, targets):
    """Each platform answers the first call of the end's write 429, and refuses (and records) any call made before
    the wait it asked for is over (connectors.fake_knobs.Lockout)."""
    relay = relay_for(make_relay, targets)
    with relay.client() as client:
        tasks = generating(relay, client, targets)
        for target in targets:
            target.fake.knobs.throttle_next(1)  # the first call of the end's write
        relay.sandbox.release(HOLD)
        writes = [settled(client, task["task_id"]) for task in tasks]

    def honoured(target: Platform, writes: list[dict]) -> None:
        assert target.fake.knobs.early == [], (
            "a call came before the wait the platform asked for was over"
        )
        assert len(target.fake.knobs.throttled) == 1 and [w["state"] for w in writes] == [
            "delivered",
            "delivered",
        ]
        # a 429 is a throttle where the kind raises Throttled (all three): its attempt is given back
        assert writes[1]["attempts"] == 1, writes
        assert target.statuses() == ["Generating", "Ready"], writes

    on_each(targets, writes, check=honoured)


def test_a_bad_token_lands_in_the_dead_letters_with_a_clear_message_and_replays(
    make_relay, targets
):
    relay = relay_for(make_relay, targets)
    wrong = {
        "hubspot": {"token": "pat-na1-revoked-token"},
        "airtable": {"token": "patREVOKED.token"},
        "sheets": {
            "credentials": {**targets[2].config["credentials"], "private_key_id": "key-revoked"}
        },
    }
    with relay.client() as client:
        refused_at_save = [
            client.post(
                "/v1/destinations",
                json={
                    "name": "x",
                    "kind": target.name,
                    "config": {**target.config, **wrong[target.name]},
                },
            )
            for target in targets
        ]
        assert [r.json()["error"]["code"] for r in refused_at_save] == [
            "destination_check_failed"
        ] * len(targets), [r.text for r in refused_at_save]
        connections = [
            connect(relay, client, target, check=False, **wrong[target.name]) for target in targets
        ]
        # each start write refused, while it ran
        tasks, _ = held_tasks(relay, client, targets, connections)
        relay.sandbox.release(HOLD)
        writes = [settled(client, task["task_id"]) for task in tasks]
        dead = {d["delivery_id"] for d in client.get("/v1/deliveries").json()["items"]}
        for target in targets:
            grant(target)  # the platform takes the token now (a scope added, the sheet shared)
        for write in (w for ws in writes for w in ws):
            assert client.post(f"/v1/deliveries/{write['delivery_id']}/replay").status_code in (
                200,
                202,
            )
        replayed = [
            eventually(
                lambda task=task: (
                    (found := settled(client, task["task_id"]))[1]["state"] == "delivered" and found
                ),
                60,
                "the replayed write-back",
                every=0.1,
            )
            for task in tasks
        ]
        files = [original(client, task["task_id"]) for task in tasks]

    def dead_then_replayed(
        target: Platform, writes: list[dict], replayed: list[dict], file: bytes
    ) -> None:
        assert [w["state"] for w in writes] == ["dead", "dead"], writes
        assert dead >= {w["delivery_id"] for w in writes}
        for write in writes:
            message = write["last_error"].lower()
            assert "refused" in message and ("token" in message or "credentials" in message), (
                message
            )
        assert writes[0]["attempts"] == 1, "a refused token is not retried"
        assert "not written" in replayed[0]["location"], (
            "a replayed start write after the end writes nothing"
        )
        assert target.shown()["status"] == "Ready" and target.files() == [file]

    on_each(targets, writes, replayed, files, check=dead_then_replayed)


def grant(target: Platform) -> None:
    if target.name == "hubspot":
        target.fake.grant("pat-na1-revoked-token")
    elif target.name == "airtable":
        target.fake.tokens.add("patREVOKED.token")
    else:
        accounts = target.fake.auth.service_accounts
        accounts["key-revoked"] = accounts["key-1"]


def test_hubspot_oauth_and_a_custom_object_whose_note_gets_the_default_association(
    make_relay, fake_hubspot
):
    fake_hubspot.oauth_clients["refresh-1"] = ("client-1", "secret-1")
    fake_hubspot.add_record("2-1234567", "7")
    relay = make_relay(**fake_hubspot.settings())
    oauth = {"client_id": "client-1", "client_secret": "secret-1", "refresh_token": "refresh-1"}
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json={
                "name": "portal",
                "kind": "hubspot",
                "config": {"oauth": oauth, "fields": FIELDS},
            },
        )
        task = relay.submit(
            client,
            prompt="Vessel report",
            record_key="hubspot:2-1234567:7",
            write_back={"connection": saved.json()["id"]},
        )
        writes = settled(client, task["task_id"])
        file = original(client, task["task_id"])
        revoked = (
            client.post(  # its check would refuse it: saved unchecked, to see a delivery's end
                "/v1/destinations?check=false",
                json={
                    "name": "old portal",
                    "kind": "hubspot",
                    "config": {"oauth": {**oauth, "refresh_token": "refresh-revoked"}},
                },
            ).json()["id"]
        )
        refused = relay.submit(
            client,
            prompt="Vessel report",
            record_key="hubspot:2-1234567:7",
            write_back={"connection": revoked},
        )
        dead = settled(client, refused["task_id"])
    assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
    assert fake_hubspot.records[("2-1234567", "7")]["relay_status"] == "Ready"
    [note] = fake_hubspot.notes_on("2-1234567", "7")
    assert fake_hubspot.file_bytes[note["properties"]["hs_attachment_ids"]] == file
    assert [w["state"] for w in dead] == ["dead", "dead"] and "refresh token" in dead[0][
        "last_error"
    ]


def test_airtable_writes_from_two_workers_share_the_paces_of_the_base_and_the_token(
    make_relay, fake_airtable
):
    """Airtable takes 5 requests a second per base and 50 per token, from all its clients: two workers writing
    back six rows of one base take each request's slot from the schedules every worker shares (env.pace), so
    each row gets both writes; a wait for a slot or a 429 costs no attempt. Two tables of one base share the
    base's pace, another base has its own, and every base of one token shares the token's."""
    rows = [(AIRTABLE[0], "Deals", "rec" + "C" * 13 + str(n)) for n in range(6)]
    fake_airtable.fetch_private = True
    for row in rows:
        fake_airtable.add_row(
            *row, {**{c: "text" for c in _AIRTABLE_COLUMNS.values()}, "Files": "attachments"}
        )
    target = Platform(
        "airtable",
        fake_airtable,
        "",
        {"token": "patTEST.token", "fields": {**_AIRTABLE_COLUMNS, "file": "Files"}},
        ("", 0),
    )
    relay = make_relay(worker=False, **target.relay_settings())
    relay.start_worker()
    relay.start_worker()
    with relay.client() as client:
        connection = connect(relay, client, target)
        # each task runs until its start write is made, so each row gets both writes (one that ends first has
        # its start write done without writing)
        tasks = [
            relay.submit(
                client,
                prompt=f"Renewal memo {n} [[hold=rows]]",
                record_key="airtable:" + "/".join(row),
                write_back={"connection": connection},
            )
            for n, row in enumerate(rows)
        ]
        for task in tasks:
            settled(client, task["task_id"], count=1, timeout=120)
        relay.sandbox.release("rows")
        writes = [
            write for task in tasks for write in settled(client, task["task_id"], timeout=120)
        ]
    assert [w["state"] for w in writes] == ["delivered"] * 12, [w["last_error"] for w in writes]
    assert sum(w["attempts"] for w in writes) == 12, "neither a slot nor a 429 costs an attempt"
    assert fake_airtable.knobs.early == [], "no call came in the 30 s Airtable asks for after a 429"

    settings = dataclasses.asdict(relay.ctx.config)
    base, token = airtable.paces(AIRTABLE[0], "patTEST.token", settings)
    other_base, same_token = airtable.paces("app" + "Z" * 14, "patTEST.token", settings)
    _, other_token = airtable.paces(AIRTABLE[0], "patOTHER.token", settings)
    assert base.key != other_base.key and token.key == same_token.key != other_token.key
    assert "patTEST" not in token.key, "a digest names the token"
    assert (base.per_second, token.per_second) == (
        5 * airtable.PACE_SHARE,
        50 * airtable.PACE_SHARE,
    ), "Airtable's limits, with room for a request that goes a little after its slot"
