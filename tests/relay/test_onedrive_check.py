"""The check of a OneDrive/SharePoint destination when it is saved, against the fake Graph over HTTPS: it signs
in, finds the drive and the folder, and proves the app may write there with an upload session it cancels at
once (no byte uploaded, no file made); each failure says what to fix, without the secret."""

from __future__ import annotations

from app.domain import checks
from tests.relay import test_onedrive_delivery
from tests.relay.test_onedrive_delivery import destination

graph_relay = test_onedrive_delivery.graph_relay  # the fixture: a relay that signs in to the fake


def run(relay, fake, **config):
    return checks.run(relay.ctx, relay.tenant_id, "onedrive", destination(fake, **config)["config"])


def by_name(report) -> dict:
    return {check.name: check for check in report.checks}


def test_a_writable_folder_passes_and_nothing_is_left_behind(graph_relay, fake_graph):
    relay = graph_relay(worker=False)
    fake_graph.items[("drive-alice", "Deals")] = {"id": "01FOLDER", "name": "Deals", "folder": {}}
    report = run(relay, fake_graph, folder="deals/{record_key}")
    assert report.verdict == "pass", report.view()
    assert list(by_name(report)) == [
        "signs in to Microsoft Entra",
        "finds the drive",
        "finds the folder",
        "may write files there",
    ]
    assert "subfolders from the template" in by_name(report)["finds the folder"].message
    assert fake_graph.sessions == {} and fake_graph.files("drive-alice") == {}, (
        "the probe's session was cancelled; nothing uploaded"
    )
    assert fake_graph.fragments == []


def test_each_failure_names_its_cause_and_the_fix(graph_relay, fake_graph):
    relay = graph_relay(worker=False)
    wrong = run(relay, fake_graph, client_secret="not-the-secret")
    [signs_in] = wrong.checks
    assert signs_in.verdict == "failure" and "invalid_client" in signs_in.message
    assert "Value, not its ID" in signs_in.fix and "not-the-secret" not in str(wrong.view())

    missing = run(relay, fake_graph, site="contoso.sharepoint.com:/sites/ops", library="Board")
    drive = by_name(missing)["finds the drive"]
    assert (
        drive.verdict == "failure" and "Documents" in drive.message and "Reports" in drive.message
    )

    fake_graph.denied_drives.add("drive-ops-docs")  # no write permission on the site's library
    denied = run(relay, fake_graph, site="contoso.sharepoint.com:/sites/ops", folder="Board")
    assert denied.verdict == "failure", denied.view()
    assert by_name(denied)["finds the folder"].verdict == "warning", "made by the first delivery"
    write = by_name(denied)["may write files there"]
    assert write.verdict == "failure" and "accessDenied" in write.message
    assert "Sites.ReadWrite.All" in write.fix

    fake_graph.refuse("createUploadSession", 507)
    full = by_name(run(relay, fake_graph))["may write files there"]
    assert full.verdict == "failure" and "drive is full" in full.message and "quota" in full.fix

    fake_graph.put_file("drive-alice", "Deals", b"a file, not a folder")
    file = by_name(run(relay, fake_graph, folder="DEALS/{date}"))["finds the folder"]
    assert file.verdict == "failure" and "not a folder" in file.message
