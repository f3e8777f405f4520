"""HubSpot as strict as the real one (connectors/hubspot/fake.py; docs/platforms.md, "HubSpot"): the scopes the
notes API needs, property values checked by type, the account's burst limit, a call that never gets an answer,
and the check a connection gets when it is saved. Each runs the real relay against the fake over HTTPS with a
private CA."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest

from app.domain import checks
from connectors.base import Verdict
from connectors.hubspot.fake import RECIPE_SCOPES, FakeHubSpot, Property
from tests.relay.test_write_back import FIELDS, original, settled
from tests.relay_fixtures import _served
from tests.support.servers import eventually

OLD_RECIPE = {"crm.objects.deals.read", "crm.objects.deals.write", "files"}
"""What docs/recipes/hubspot.md asked a private app for before: no contacts scopes, which notes need."""
DROPDOWN = Property(
    "relay_status",
    "enumeration",
    "select",
    (("Generating", "generating"), ("Ready", "ready"), ("Failed", "failed")),
)


@pytest.fixture
def hubspot(loopback_ca):
    """A fake HubSpot with deal 42, and the relay settings that reach it; ``serve(fake)`` for another one."""
    served = []

    def serve(fake: FakeHubSpot) -> FakeHubSpot:
        running = _served(fake, tls=loopback_ca.server_context())
        next(running)
        served.append(running)
        fake.add_record("deals", "42")
        fake.settings = lambda: {  # type: ignore[attr-defined]
            "hubspot_api_url": fake.url,
            "outbound_ca_file": str(loopback_ca.ca_file),
        }
        return fake

    yield serve
    for running in served:
        next(running, None)


def connect_body(config: dict) -> dict:
    return {"name": "HubSpot deals", "kind": "hubspot", "config": config}


def write_back(
    relay, client, config: dict, prompt: str = "Renewal memo", deal: str = "42", check: bool = True
):
    """A task for the deal through a new connection (``check=False``: saved without its check), and its
    two write-backs once settled."""
    path = "/v1/destinations" + ("" if check else "?check=false")
    saved = client.post(path, json=connect_body(config))
    assert saved.status_code == 201, saved.text
    task = relay.submit(
        client,
        prompt=prompt,
        record_key=f"hubspot:deal:{deal}",
        write_back={"connection": saved.json()["id"]},
    )
    return task, settled(client, task["task_id"])


def test_a_token_without_the_contacts_scopes_is_named_in_the_dead_letter(make_relay, hubspot):
    """H1: the notes API needs crm.objects.contacts.read and .write whatever the record; a token with only the
    deal's scopes and files (the recipe's before) cannot attach the file. The dead letter names the scopes
    and where to add them, and the deal does not say Ready without its file."""
    fake = hubspot(FakeHubSpot(tokens={"pat-na1-deals-only": set(OLD_RECIPE)}, interval_ms=1000))
    relay = make_relay(**fake.settings())
    config = {"token": "pat-na1-deals-only", "fields": FIELDS}
    with relay.client() as client:
        refused = client.post("/v1/destinations", json=connect_body(config)).json()["error"]
        assert refused["code"] == "destination_check_failed", refused
        assert "crm.objects.contacts.write" in refused["message"], "the check names it at once"
        _, writes = write_back(relay, client, config, check=False)
    start, end = writes
    assert start["state"] == "delivered" and end["state"] == "dead", writes
    for scope in ("crm.objects.contacts.read", "crm.objects.contacts.write"):
        assert scope in end["last_error"], end["last_error"]
    assert "Private apps > Scopes" in end["last_error"], "the fix: where to add the scope"
    assert fake.records[("deals", "42")].get("relay_status") != "Ready", (
        "not Ready without its file"
    )
    assert fake.notes == {} and ("MISSING_SCOPES", "/crm/v3/objects/notes") in fake.refused


def test_a_dropdown_status_and_a_date_property_get_values_they_take(make_relay, hubspot):
    """H2: a dropdown takes its options' internal values only (INVALID_OPTION), a date property midnight UTC
    only (INVALID_DATE). The relay writes the option whose label is its status (Failed, without the reason,
    when no error field is mapped) and the day of its time."""
    fake = hubspot(FakeHubSpot(interval_ms=1000))
    fake.define("deals", DROPDOWN, Property("relay_updated_at", "date", "date"))
    relay = make_relay(**fake.settings())
    fields = {"status": "relay_status", "updated_at": "relay_updated_at", "link": "relay_link"}
    with relay.client() as client:
        done, done_writes = write_back(
            relay, client, {"token": "pat-na1-test-token", "fields": fields}
        )
        _, failed_writes = write_back(
            relay, client, {"token": "pat-na1-test-token", "fields": fields}, "Memo [[fail]]"
        )
        file = original(client, done["task_id"])
    assert [w["state"] for w in done_writes + failed_writes] == ["delivered"] * 4, (
        done_writes + failed_writes
    )
    # (a start write made after its task ended writes nothing)
    statuses = [w["relay_status"] for w in fake.writes]
    assert "ready" in statuses and statuses[-1] == "failed", fake.writes
    assert set(statuses) <= {"generating", "ready", "failed"}, "the options' internal values"
    assert all(len(w["relay_updated_at"]) == 10 for w in fake.writes), "the day, at midnight UTC"
    [note] = fake.notes_on("deals", "42")
    assert fake.file_bytes[note["properties"]["hs_attachment_ids"]] == file


def test_a_dropdown_without_the_relays_status_is_named_before_anything_is_written(
    make_relay, hubspot
):
    """H2: a status dropdown with no option for Failed: the dead letter names the property, the value and the
    options it takes, and the fix; nothing of that write reaches the deal."""
    fake = hubspot(FakeHubSpot(interval_ms=1000))
    options = (("Generating", "generating"), ("Ready", "ready"), ("Done", "done"))
    fake.define("deals", Property("relay_status", "enumeration", "select", options))
    relay = make_relay(**fake.settings())
    with relay.client() as client:
        _, writes = write_back(
            relay,
            client,
            {"token": "pat-na1-test-token", "fields": {"status": "relay_status"}},
            "Memo [[fail]]",
        )
    assert [w["state"] for w in writes] == ["delivered", "dead"], writes
    message = writes[1]["last_error"]
    for said in ("relay_status", '"Failed"', '"Done"', "Add an option"):
        assert said in message, message
    assert [w for w in fake.writes if w["relay_status"] != "generating"] == [], fake.writes


def test_a_batch_keeps_to_the_accounts_burst_limit(make_relay, hubspot):
    """H3: an account may make so many calls per window (100 per 10 s on Starter), shared by its apps. Ten
    write-backs at once go through one pace per token below it, scaled here to 10 calls a second for the fake
    and the relay alike: all land, on their first attempt (a 429 a busy machine may still meet is a throttle,
    which costs none; unpaced, with each 429 an attempt, some died)."""
    fake = hubspot(FakeHubSpot(interval_ms=1000, calls_per_window=10))
    deals = [str(n) for n in range(100, 110)]
    for deal in deals:
        fake.add_record("deals", deal)
    relay = make_relay(**fake.settings(), hubspot_calls_per_window=10, hubspot_window_seconds=1.0)
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json=connect_body({"token": "pat-na1-test-token", "fields": FIELDS}),
        ).json()["id"]
        # each task runs until its start write is made, so no end write waits for its start (an attempt)
        tasks = [
            relay.submit(
                client,
                prompt=f"Memo {deal} [[hold=batch]]",
                record_key=f"hubspot:deal:{deal}",
                write_back={"connection": saved},
            )
            for deal in deals
        ]
        for task in tasks:
            settled(client, task["task_id"], count=1, timeout=180)
        relay.sandbox.release("batch")
        writes = [w for task in tasks for w in settled(client, task["task_id"], timeout=180)]
    assert [w["state"] for w in writes] == ["delivered"] * 20, [w["last_error"] for w in writes]
    # the end writes make most of the calls (start writes met a retry of the relay's own, with no HubSpot
    # error, about one run in ten here: left for the lead engineer, see the report)
    ends = writes[1::2]
    assert [w["attempts"] for w in ends] == [1] * 10, "a pace's wait and a 429 cost no attempt"
    assert all(fake.records[("deals", d)]["relay_status"] == "Ready" for d in deals)
    assert all(len(fake.notes_on("deals", d)) == 1 for d in deals), "each file attached once"


def test_a_call_hubspot_never_answers_ends_and_is_retried(make_relay):
    """H4: a connection HubSpot accepts and never answers (a stalled proxy, a dropped route) ends at the
    relay's timeout and the write is retried, instead of holding a worker past its lease."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    accepting = threading.Thread(target=accept, daemon=True)
    accepting.start()
    try:
        relay = make_relay(
            hubspot_api_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            hubspot_timeout_seconds=1.0,
        )
        with relay.client() as client:
            saved = client.post(
                "/v1/destinations",
                json=connect_body({"token": "pat-na1-test-token", "fields": FIELDS}),
            ).json()["id"]
            task = relay.submit(
                client,
                prompt="Memo",
                record_key="hubspot:deal:42",
                write_back={"connection": saved},
            )
            retried = eventually(
                lambda: next(
                    (
                        d
                        for d in client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"]
                        if d["attempts"] and "Timeout" in (d["last_error"] or "")
                    ),
                    None,
                ),
                120,
                "an attempt that timed out",
                every=0.2,
            )
    finally:
        stop.set()
        accepting.join(5)
        for connection in held:
            connection.close()
        listener.close()
    assert retried["state"] in ("retrying", "pending", "delivering"), retried
    assert "HubSpot could not be reached" in retried["last_error"]


# -- the check when a connection is saved -----------------------------------------------------------------


def run_check(relay, config: dict):
    return checks.run(relay.ctx, relay.tenant_id, "hubspot", config)


def named(report, name: str):
    return next(c for c in report.checks if c.name.startswith(name))


def test_the_check_names_missing_scopes_and_properties_that_refuse_the_relays_values(
    make_relay, hubspot
):
    fake = hubspot(FakeHubSpot(tokens={"pat-na1-deals-only": set(OLD_RECIPE)}, interval_ms=1000))
    options = (("Generating", "generating"), ("Ready", "ready"), ("Done", "done"))
    fake.define(
        "deals",
        Property("relay_status", "enumeration", "select", options),
        Property("relay_version", "number", "number"),
        Property("relay_updated_at", "date", "date"),
    )
    relay = make_relay(worker=False, **fake.settings())
    fields = {**FIELDS, "credits": "relay_amount"}
    report = run_check(relay, {"token": "pat-na1-deals-only", "object": "deal", "fields": fields})
    assert report.failed, report.view()
    assert named(report, "signs in").verdict is Verdict.PASS
    scopes = named(report, "token has each scope")
    assert scopes.verdict is Verdict.FAILURE
    assert (
        "crm.objects.contacts.read" in scopes.message and "crm.objects.contacts.write" in scopes.fix
    )
    assert "Private apps" in scopes.fix
    status = named(report, "property relay_status")
    assert status.verdict is Verdict.FAILURE and '"Failed"' in status.message
    assert '"Done"' in status.message and "Add an option" in status.fix
    missing = named(report, "property relay_amount")
    assert missing.verdict is Verdict.FAILURE and "no property relay_amount" in missing.message
    for passing in ("relay_version", "relay_updated_at", "relay_link"):
        assert named(report, f"property {passing}").verdict is Verdict.PASS, report.view()
    assert fake.writes == [] and fake.notes == {} and fake.files == {}, "a check writes nothing"


def test_the_check_passes_the_recipes_connection_and_fails_a_bad_token(make_relay, hubspot):
    fake = hubspot(FakeHubSpot(interval_ms=1000))
    fake.define("deals", DROPDOWN)
    fake.oauth_clients["refresh-1"] = ("client-1", "secret-1")
    assert fake.tokens["pat-na1-test-token"] == set(RECIPE_SCOPES)
    relay = make_relay(worker=False, **fake.settings())
    good = run_check(relay, {"token": "pat-na1-test-token", "object": "deal", "fields": FIELDS})
    assert good.verdict is Verdict.PASS, good.view()
    oauth = {"client_id": "client-1", "client_secret": "secret-1", "refresh_token": "refresh-1"}
    assert run_check(relay, {"oauth": oauth, "object": "deals"}).verdict is Verdict.PASS
    unset = run_check(relay, {"token": "pat-na1-test-token", "fields": FIELDS})
    assert unset.verdict is Verdict.WARNING and "object" in named(unset, "the records'").fix
    fake.tells_scopes = False  # a token whose scopes HubSpot does not tell: listed, not judged
    untold = run_check(relay, {"token": "pat-na1-test-token", "object": "deal", "fields": FIELDS})
    assert untold.verdict is Verdict.WARNING, untold.view()
    assert "crm.objects.contacts.write" in named(untold, "token has each scope").fix
    bad = run_check(relay, {"token": "pat-na1-revoked", "object": "deal"})
    assert bad.failed and named(bad, "signs in").verdict is Verdict.FAILURE, bad.view()
    assert "token" in named(bad, "signs in").fix


class ConnectProxy:
    """An HTTPS proxy on loopback (HTTP CONNECT, then bytes both ways) that records each tunnel's target."""

    def __init__(self):
        self.targets: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._listener.accept()[0]
            except TimeoutError:
                continue
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._threads[0].join(5)
        self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def test_hubspot_calls_go_through_the_operators_proxy(make_relay, hubspot, monkeypatch):
    """Row 13: a deployment whose egress is an HTTPS proxy (HTTPS_PROXY) and a private CA: every HubSpot call
    goes through the proxy's tunnel and the write-back lands (the SDK ignored both)."""
    proxy = ConnectProxy()
    try:
        fake = hubspot(FakeHubSpot(interval_ms=1000))
        port = fake.url.rsplit(":", 1)[1].rstrip("/")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the relay's own API, the sandbox: direct
        relay = make_relay(
            **{**fake.settings(), "hubspot_api_url": f"https://localhost:{port}"},
            outbound_allow="127.0.0.0/8,::1/128,localhost",
        )
        with relay.client() as client:
            _, writes = write_back(relay, client, {"token": "pat-na1-test-token", "fields": FIELDS})
    finally:
        proxy.close()
    assert [w["state"] for w in writes] == ["delivered", "delivered"], writes
    assert fake.records[("deals", "42")]["relay_status"] == "Ready"
    assert proxy.targets and set(proxy.targets) == {f"localhost:{port}"}, proxy.targets
