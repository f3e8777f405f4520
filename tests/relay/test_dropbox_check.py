"""The check of a Dropbox destination (app.domain.checks.run) against the strict fake: it signs in, writes a
test file into the folder and deletes it, and lists the folder; each refusal names its cause and the fix."""

from __future__ import annotations

import pytest

from app.domain import checks
from connectors.base import Verdict


@pytest.fixture
def check(make_relay, fake_dropbox, loopback_ca):
    relay = make_relay(
        worker=False,
        dropbox_api_url=fake_dropbox.url,
        dropbox_content_url=fake_dropbox.url,
        outbound_ca_file=str(loopback_ca.ca_file),
    )

    def run(**config):
        return checks.run(
            relay.ctx,
            relay.tenant_id,
            "dropbox",
            {
                "app_key": "relayappkey",
                "app_secret": "relay-app-secret",
                "refresh_token": "refresh-token-of-ana",
                **config,
            },
        )

    return run


def verdicts(report) -> dict[str, str]:
    return {c.name: str(c.verdict) for c in report.checks}


def test_a_good_destination_passes_and_leaves_nothing_behind(check, fake_dropbox):
    report = check(folder="Deals/{record_key}")
    assert report.verdict is Verdict.PASS, report.view()
    assert verdicts(report) == {
        "signs in": "pass",
        "writes into the folder": "pass",
        "reads the folder (files.metadata.read)": "pass",
        "removes its test file": "pass",
    }
    assert fake_dropbox.contents() == {}, "the test file was deleted"
    assert [path for _, _, path in fake_dropbox.contended] == []


def test_a_revoked_refresh_token_fails_to_sign_in(check):
    report = check(refresh_token="revoked-token-1")
    [signed_in] = report.checks
    assert report.failed and signed_in.name == "signs in"
    assert "refresh token" in signed_in.fix and "revoked-token-1" not in str(report.view())


@pytest.mark.parametrize(
    ("granted", "failing", "scope"),
    [
        (
            {"account_info.read", "files.metadata.read"},
            "writes into the folder",
            "files.content.write",
        ),
        (
            {"account_info.read", "files.content.write"},
            "reads the folder (files.metadata.read)",
            "files.metadata.read",
        ),
    ],
)
def test_a_token_without_a_scope_fails_and_names_it(check, fake_dropbox, granted, failing, scope):
    fake_dropbox.refresh_tokens.add("refresh-token-narrow")
    fake_dropbox.scopes["refresh-token-narrow"] = frozenset(granted)
    report = check(refresh_token="refresh-token-narrow")
    failed = {c.name: c for c in report.checks if c.verdict is Verdict.FAILURE}
    assert list(failed) == [failing], report.view()
    assert f"lacks the scope {scope}" in failed[failing].message
    assert "Permissions tab" in failed[failing].fix


def test_a_team_space_the_account_cannot_reach_fails(check):
    report = check(root_namespace_id="999")
    failed = [c for c in report.checks if c.verdict is Verdict.FAILURE]
    assert [c.name for c in failed] == ["writes into the folder"]
    assert "team space" in failed[0].message and "root_namespace_id" in failed[0].fix
    assert check(root_namespace_id="3235641").verdict is Verdict.PASS


def test_spent_data_transport_calls_fail_with_dropboxs_words(check, fake_dropbox):
    fake_dropbox.transport_calls = 0
    report = check()
    failed = [c for c in report.checks if c.verdict is Verdict.FAILURE]
    assert [c.name for c in failed] == ["writes into the folder"]
    assert "used all of its data transport API calls" in failed[0].message
    assert "1st of the month" in failed[0].fix
