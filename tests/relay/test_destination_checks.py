"""A destination is checked when it is saved, the way a no-code tool tests a connection: the kind signs in
and verifies what a delivery will need, without delivering. A failing check saves nothing and names the
cause and the fix; ``?check=false`` saves without it; a saved one is checked again on demand, alone or all
of a tenant's at once (the Zapier and Make apps' connection test)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import schemas
from app.cli.destinations import destinations_group
from app.domain import checks
from app.stores import context
from connectors import registry
from connectors.base import Verdict
from tests.support.dashboard import ADMIN_TOKEN


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_kind_a_destination_can_be_saved_as_has_a_check():
    saveable = [
        path.stem for path in (Path(schemas.__file__).parent / "destinations").glob("*.json")
    ]
    saveable = [kind for kind in saveable if kind in registry.KINDS]
    assert sorted(saveable) == sorted(set(registry.KINDS) - {"callback", "slack_reply"})
    assert [
        kind for kind in saveable if not callable(getattr(registry.KINDS[kind], "check", None))
    ] == []


def test_a_webhook_is_saved_once_its_receiver_answers_and_not_when_it_cannot(make_relay, receiver):
    relay = make_relay(worker=False)
    dead_url = f"http://127.0.0.1:{_closed_port()}/hook"
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json={"name": "Ops hook", "kind": "webhook", "config": {"url": receiver.url}},
        )
        refused = client.post(
            "/v1/destinations",
            json={"name": "Nowhere", "kind": "webhook", "config": {"url": dead_url}},
        )
        unchecked = client.post(
            "/v1/destinations?check=false",
            json={"name": "Later", "kind": "webhook", "config": {"url": dead_url}},
        )
        listed = client.get("/v1/destinations").json()["items"]
        again = client.post(f"/v1/destinations/{unchecked.json()['id']}/check")
        missing = client.post("/v1/destinations/dst_01ARZ3NDEKTSV4RRFFQ69G5FAV/check")
        bad_query = client.post(
            "/v1/destinations?check=maybe",
            json={"name": "x", "kind": "webhook", "config": {"url": receiver.url}},
        )
    assert saved.status_code == 201, saved.text
    assert saved.json()["checks"]["verdict"] == "pass"
    assert [c["name"] for c in saved.json()["checks"]["checks"]] == [
        "the address may be reached",
        "the receiver answers",
    ]
    assert [r.method for r in receiver.requests] == ["HEAD"], "a check delivers no event"

    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["field"]) == ("destination_check_failed", "config")
    assert error["message"].startswith("Not saved: the receiver could not be reached: ConnectError")
    assert "Check the URL" in error["message"]
    assert [c["verdict"] for c in error["checks"]] == ["pass", "failure"]
    assert sorted(d["name"] for d in listed) == ["Later", "Ops hook"], (
        "the refused one is not saved"
    )

    assert unchecked.status_code == 201 and "checks" not in unchecked.json()
    assert again.status_code == 200 and again.json()["verdict"] == "failure"
    assert missing.status_code == 404
    assert bad_query.status_code == 400 and bad_query.json()["error"]["field"] == "check"


def test_a_private_address_fails_the_check_with_the_setting_that_allows_it(make_relay):
    relay = make_relay(worker=False, outbound_allow="")
    with relay.client() as client:
        refused = client.post(
            "/v1/destinations",
            json={"name": "x", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/hook"}},
        )
    [check] = refused.json()["error"]["checks"]
    assert (check["name"], check["verdict"]) == ("the address may be reached", "failure")
    assert "non-public address" in check["message"] and "RELAY_OUTBOUND_ALLOW" in check["fix"]


def test_a_folder_is_checked_by_writing_in_the_tenants_own_folder(make_relay, tmp_path):
    relay = make_relay(worker=False)
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json={"name": "Files", "kind": "folder", "config": {"path": "Deals"}},
        )
    assert saved.status_code == 201, saved.text
    assert saved.json()["checks"]["checks"][0]["verdict"] == "pass"
    tenant_folder = tmp_path / "deliveries" / relay.tenant_id
    assert tenant_folder.is_dir() and list(tenant_folder.iterdir()) == [], "the probe is removed"

    tenant_folder.rmdir()  # a file where the folder must be: refused even to root, which ignores modes
    tenant_folder.write_text("not a folder")
    report = checks.run(relay.ctx, relay.tenant_id, "folder", {"path": "Deals"})
    assert report.verdict is Verdict.FAILURE
    assert report.checks[0].message.startswith("the relay cannot write in this tenant's folder")


def test_every_saved_destination_is_checked_at_once_for_a_connection_test(
    make_relay, receiver, monkeypatch
):
    relay = make_relay(worker=False)
    with relay.client() as client:
        for name, url in (("Up", receiver.url), ("Down", f"http://127.0.0.1:{_closed_port()}/h")):
            created = client.post(
                "/v1/destinations?check=false",
                json={"name": name, "kind": "webhook", "config": {"url": url}},
            )
            assert created.status_code == 201
        found = client.post("/v1/destinations/checks").json()

        def broken(target, env):
            raise KeyError("a bug in a check")

        monkeypatch.setattr(registry.KINDS["webhook"], "check", broken)
        buggy = client.post("/v1/destinations/checks")
    assert found["verdict"] == "failure" and found["tenant"]
    assert sorted((d["name"], d["verdict"]) for d in found["destinations"]) == [
        ("Down", "failure"),
        ("Up", "pass"),
    ]
    assert buggy.status_code == 200, "a bug in a check is reported, not a 500"
    [first, _] = buggy.json()["destinations"]
    assert first["checks"][0]["message"] == (
        "the check stopped on an error in the relay (KeyError)"
    )


@pytest.mark.parametrize("verdicts,expected", [((), "pass"), (("pass", "warning"), "warning")])
def test_the_worst_verdict_is_the_reports(verdicts, expected):
    assert checks.worst(Verdict(v) for v in verdicts) == expected


def test_the_cli_checks_a_tenants_destinations_and_fails_when_one_does(
    make_relay, receiver, monkeypatch
):
    relay = make_relay(worker=False)
    monkeypatch.setattr(context, "_current", relay.ctx)
    with relay.client() as client:
        up = client.post(
            "/v1/destinations",
            json={"name": "Up", "kind": "webhook", "config": {"url": receiver.url}},
        ).json()
        passed = CliRunner().invoke(destinations_group, ["check", "--tenant", relay.tenant_id])
        client.post(
            "/v1/destinations?check=false",
            json={
                "name": "Down",
                "kind": "webhook",
                "config": {"url": f"http://127.0.0.1:{_closed_port()}/h"},
            },
        )
        failed = CliRunner().invoke(destinations_group, ["check", "--tenant", relay.tenant_id])
        one = CliRunner().invoke(
            destinations_group, ["check", "--tenant", relay.tenant_id, up["id"]]
        )
        unknown = CliRunner().invoke(
            destinations_group, ["check", "--tenant", relay.tenant_id, "dst_nope"]
        )
    assert passed.exit_code == 0, passed.output
    assert f"{up['id']}  webhook  Up: pass" in passed.output
    assert "ok    the receiver answers: the receiver answered" in passed.output
    assert failed.exit_code == 1
    assert "FAIL  the receiver answers: the receiver could not be reached" in failed.output
    assert "fix: Check the URL" in failed.output
    assert one.exit_code == 0 and "Down" not in one.output
    assert unknown.exit_code == 1 and "has no destination dst_nope" in unknown.output


def test_the_dashboard_checks_a_destination_with_a_button(make_relay, receiver):
    relay = make_relay(worker=False, admin_token=ADMIN_TOKEN)
    secret = "whsec_ZGFzaGJvYXJkLWNoZWNrLXNlY3JldA=="
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json={
                "name": "Ops hook",
                "kind": "webhook",
                "config": {"url": receiver.url, "secret": secret},
            },
        ).json()
    browser_like = httpx.Client(base_url=relay.url, follow_redirects=True)
    token = re.search(
        r'name="csrf_token" value="([^"]+)"', browser_like.get("/dashboard/login").text
    ).group(1)
    browser_like.post("/dashboard/login", data={"token": ADMIN_TOKEN, "csrf_token": token})
    listed = browser_like.get("/dashboard/destinations").text
    action = f"/dashboard/destinations/{relay.tenant_id}/{saved['id']}/check"
    assert "Ops hook" in listed and action in listed
    assert browser_like.post(action).status_code == 400, "no CSRF token"
    token = re.search(r'name="csrf_token" value="([^"]+)"', listed).group(1)  # the session's own
    checked = browser_like.post(action, data={"csrf_token": token})
    assert checked.status_code == 200
    assert 'aria-label="Check of Ops hook"' in checked.text
    assert '<span class="state pass">pass</span> the receiver answers' in checked.text
    assert secret not in checked.text and secret not in listed
