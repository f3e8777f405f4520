"""The OneDrive/SharePoint destination against the fake Microsoft Graph over HTTPS on loopback (msal's
sign-in, upload sessions): a file into a user's OneDrive and into a SharePoint library with its folder
made, a large file in fragments resumed after its worker was killed, the conflict behaviors, a 429
honoured, and a refused secret in the dead letters."""

from __future__ import annotations

import hashlib
import signal

import httpx
import pytest

from connectors.onedrive.fake import FRAGMENT, FakeGraph
from tests.relay.test_deliveries import delivered
from tests.support.servers import eventually


@pytest.fixture
def graph_relay(make_relay, fake_graph, loopback_ca):
    return lambda **overrides: make_relay(
        graph_api_url=fake_graph.url + "/v1.0",
        graph_login_url=fake_graph.url,
        outbound_ca_file=str(loopback_ca.ca_file),
        **overrides,
    )


def destination(fake: FakeGraph, **config) -> dict:
    where = {} if {"site", "drive_id"} & set(config) else {"user": "alice@contoso.com"}
    return {
        "kind": "onedrive",
        "config": {
            "tenant_id": fake.tenant,
            "client_id": "relay-app",
            "client_secret": "app-secret",
            **where,
            **config,
        },
    }


def original(client, task_id: str) -> bytes:
    return httpx.get(client.get(f"/v1/tasks/{task_id}").json()["result"]["download_url"]).content


def test_a_file_lands_in_a_users_onedrive(graph_relay, fake_graph):
    relay = graph_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales by region",
            record_key="deal:7",
            destinations=[destination(fake_graph)],
        )
        [done] = delivered(relay, client, task["task_id"])
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [(path, stored)] = fake_graph.files("drive-alice").items()
    assert path.startswith("deal-7-") and path.endswith(".xlsx") and stored == file
    assert done["location"].startswith(f"onedrive:drive-alice/{path} https://")
    assert fake_graph.token_grants == 1


def test_a_sharepoint_library_gets_its_folder_made_and_the_templated_name(graph_relay, fake_graph):
    relay = graph_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Renewal memo",
            record_key="acme/renewal: 2027?",
            destinations=[
                destination(
                    fake_graph,
                    site="contoso.sharepoint.com:/sites/ops",
                    library="reports",
                    folder="Deals/{record_key}/{date}",
                    file_name="{record_key} turn {turn}",
                )
            ],
        )
        [done] = delivered(relay, client, task["task_id"])
        finished = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered", done["last_error"]
    day, turn = finished["updated_at"][:10], finished["turn_index"]
    [path] = fake_graph.files("drive-ops-reports")
    assert path == f"Deals/acme_renewal_ 2027_/{day}/acme_renewal_ 2027_ turn {turn}.xlsx", (
        "refused characters are _"
    )
    assert "folder" in fake_graph.items[("drive-ops-reports", f"Deals/acme_renewal_ 2027_/{day}")]


def test_a_large_file_resumes_its_upload_session_after_the_worker_is_killed(
    graph_relay, fake_graph
):
    relay = graph_relay(worker=False)
    fake_graph.knobs.hold_before("fragment", skip=2)  # two fragments are in, the third waits
    worker = relay.start_worker()
    with relay.client() as client:
        # 3 x 320 KiB per fragment
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=6]]",
            destinations=[destination(fake_graph, chunk_kib=960)],
        )
        assert fake_graph.knobs.held.wait(60), "the upload never reached its third fragment"
        assert len(fake_graph.fragments) == 2, "killed with two fragments in and the rest to come"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_graph.knobs.release.set()  # the third fragment's request: refused if cut short, else taken whole
        [session] = fake_graph.sessions
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    [stored] = fake_graph.files("drive-alice").values()
    assert (
        hashlib.sha256(stored).hexdigest() == hashlib.sha256(file).hexdigest()
        and len(file) > 6 * 2**20
    )
    starts = [start for s, start, _ in fake_graph.fragments if s == session]
    assert starts == list(range(0, len(file), 3 * FRAGMENT)), (
        "each fragment once, in order, in one session"
    )
    assert fake_graph.sessions == {}, "the session ended with the last fragment"


def test_an_expired_session_starts_over_into_one_file(graph_relay, fake_graph):
    relay = graph_relay(worker=False)
    fake_graph.knobs.hold_before("fragment", skip=1)  # one fragment is in, the second waits
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=2]]",
            destinations=[destination(fake_graph, chunk_kib=320)],
        )
        assert fake_graph.knobs.held.wait(60), "the upload never reached its second fragment"
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_graph.expire_sessions()
        fake_graph.knobs.release.set()  # the killed worker's fragment meets its session expired: not taken
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert list(fake_graph.files("drive-alice").values()) == [file]
    assert len({s for s, _, _ in fake_graph.fragments}) == 2, (
        "the forgotten session was replaced by a new one"
    )


def test_a_fragment_whose_answer_was_lost_is_not_sent_again(graph_relay, fake_graph):
    relay = graph_relay()
    fake_graph.drop_answers = 1
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Model [[pad_mb=1]]",
            destinations=[destination(fake_graph, chunk_kib=320)],
        )
        [done] = delivered(relay, client, task["task_id"])
        file = original(client, task["task_id"])
    assert done["state"] == "delivered" and done["attempts"] == 1, "resumed within the attempt"
    assert list(fake_graph.files("drive-alice").values()) == [file]
    starts = [start for _, start, _ in fake_graph.fragments]
    assert starts == sorted(set(starts)), "the status query told where to go on"


def test_the_conflict_behaviors(graph_relay, fake_graph):
    """Each behavior meets a file someone else put where its document goes (a folder per policy, one relay)."""
    relay = graph_relay()
    policies = ("replace", "rename", "fail")
    for n, policy in enumerate(policies):
        fake_graph.items[("drive-alice", policy)] = {
            "id": f"01FOLDER{n}",
            "name": policy,
            "folder": {},
        }
        fake_graph.put_file("drive-alice", f"{policy}/memo.xlsx", b"someone else's file")
    with relay.client() as client:
        tasks = {
            policy: relay.submit(
                client,
                prompt="Sales",
                destinations=[
                    destination(fake_graph, folder=policy, file_name="memo", conflict=policy)
                ],
            )
            for policy in policies
        }
        done = {
            policy: delivered(relay, client, task["task_id"])[0] for policy, task in tasks.items()
        }
        files = {policy: original(client, task["task_id"]) for policy, task in tasks.items()}
    stored = fake_graph.files("drive-alice")
    assert (
        done["replace"]["state"] == "delivered" and stored["replace/memo.xlsx"] == files["replace"]
    )
    assert (
        done["rename"]["state"] == "delivered"
        and "rename/memo 1.xlsx" in done["rename"]["location"]
    )
    assert (stored["rename/memo.xlsx"], stored["rename/memo 1.xlsx"]) == (
        b"someone else's file",
        files["rename"],
    )
    fail = done["fail"]
    assert (
        fail["state"] == "dead"
        and "conflict policy is fail" in fail["last_error"]
        and fail["attempts"] == 1
    )
    assert stored["fail/memo.xlsx"] == b"someone else's file"
    assert len(stored) == 4, "no other file was made"


def test_a_worker_killed_after_the_last_fragment_does_not_make_a_second_file(
    graph_relay, fake_graph
):
    relay = graph_relay(worker=False)
    fake_graph.knobs.pause_after("complete")
    worker = relay.start_worker()
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Sales", destinations=[destination(fake_graph, conflict="rename")]
        )
        eventually(fake_graph.knobs.paused.is_set, 60, "the upload to complete")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        fake_graph.knobs.release.set()
        relay.start_worker()
        [done] = delivered(relay, client, task["task_id"], timeout=90)
    assert done["state"] == "delivered" and done["attempts"] == 2
    assert len(fake_graph.files("drive-alice")) == 1, (
        "the file the killed attempt finished was found"
    )


def test_a_429_is_honoured(graph_relay, fake_graph):
    relay = graph_relay()
    fake_graph.knobs.throttle_next(1)
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[destination(fake_graph)])
        [done] = delivered(relay, client, task["task_id"], timeout=60)
    assert fake_graph.knobs.early == [], (
        "the retry waited for Retry-After: Graph refuses calls before it"
    )
    assert (
        len(fake_graph.knobs.throttled) == 1
        and done["state"] == "delivered"
        and done["attempts"] == 2
    )


def test_a_refused_secret_lands_in_the_dead_letters_without_it(graph_relay, fake_graph):
    relay = graph_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(fake_graph, client_secret="wrong-one")],
        )
        [dead] = delivered(relay, client, task["task_id"])
        letters = client.get("/v1/deliveries").json()["items"]
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert dead["delivery_id"] in {d["delivery_id"] for d in letters}
    assert "Microsoft Entra refused the app's credentials (invalid_client)" in dead["last_error"]
    assert "AADSTS" not in dead["last_error"], "the code, never the description"
    assert "wrong-one" not in str(letters)
