"""The Dropbox destination against the fake's real limits (docs/platforms.md, Dropbox): namespace lock
contention in its three forms, retried with the data sent once, in one file and in a batch of 120 files into
one namespace; a Business team's spent data-transport calls; a team space the account cannot reach; a token
without the scope a route needs."""

from __future__ import annotations

from collections import Counter

import pytest

from connectors.dropbox.fake import Contention
from tests.relay.test_deliveries import delivered
from tests.relay.test_dropbox_delivery import MIB, destination, original
from tests.support.servers import eventually


def sent_once(fake) -> bool:
    """No byte of any upload session was taken twice."""
    taken = Counter((session, offset) for session, offset, _ in fake.appends)
    return all(count == 1 for count in taken.values())


@pytest.mark.parametrize(
    ("form", "kept"),
    [
        (Contention.PATH, True),
        (Contention.FINISH, True),
        (Contention.FINISH, False),
        (Contention.RATE_LIMIT, False),
    ],
)
def test_contention_is_a_throttle_and_the_retry_commits_the_data_already_sent(
    dropbox_relay, fake_dropbox, form, kept
):
    """Three chunks; the finish (with the last one) meets a taken namespace lock. The retry sends only what
    Dropbox lacks: nothing when it kept the data (an empty finish at the saved offset), the last chunk when
    it did not; never the whole file again, and without spending an attempt."""
    relay = dropbox_relay()
    fake_dropbox.contend(form, appended=kept)
    with relay.client() as client:
        task = relay.submit(
            client, prompt="Model [[pad_mb=9]]", destinations=[destination(chunk_mb=4)]
        )
        [done] = delivered(relay, client, task["task_id"], timeout=90)
        file = original(client, task["task_id"])
    assert done["state"] == "delivered", done["last_error"]
    assert [form for _, form, _ in fake_dropbox.contended] == [form], "it did meet the lock"
    assert list(fake_dropbox.contents().values()) == [file]
    offsets = [offset for _, offset, _ in fake_dropbox.appends]
    assert offsets == [0, 4 * MIB, 8 * MIB] and sent_once(fake_dropbox), (
        "each chunk sent once, in one session: the file was not uploaded again"
    )
    assert done["attempts"] == 1, "contention is a throttle: its attempt is given back"


def test_a_batch_into_one_namespace_meets_contention_and_loses_no_file(dropbox_relay, fake_dropbox):
    """120 small files into one Dropbox namespace at once (12 tasks, 10 folders each), every 5th finish
    refused for contention in each of its forms in turn: no dead letter, each file once, no data twice."""
    relay = dropbox_relay()
    fake_dropbox.contend_every(5, Contention.PATH, Contention.FINISH, Contention.RATE_LIMIT)
    tasks, folders = 12, 10
    with relay.client() as client:
        task_ids = [
            relay.submit(
                client,
                prompt=f"Sales {n}",
                destinations=[destination(folder=f"Batch/{n}/{f}") for f in range(folders)],
            )["task_id"]
            for n in range(tasks)
        ]

        def settled():
            found = relay.deliveries_of(task_ids)
            done = [d for d in found if d["state"] in ("delivered", "dead")]
            return found if len(found) == len(done) == tasks * folders else None

        deliveries = eventually(
            settled,
            240,
            f"{tasks * folders} deliveries to settle",
            every=0.5,
            show=lambda: Counter(d["state"] for d in relay.deliveries_of(task_ids)),
        )
        dead = client.get("/v1/deliveries").json()["items"]
    assert [d for d in deliveries if d["state"] != "delivered"] == [] and dead == []
    stored = fake_dropbox.contents()
    assert len(stored) == tasks * folders and all(
        path.startswith("/Batch/") and path.count("/") == 4 for path in stored
    ), "one file per delivery, none renamed or made twice"
    forms = Counter(form for _, form, _ in fake_dropbox.contended)
    assert set(forms) == set(Contention) and sum(forms.values()) >= tasks * folders // 5
    assert sent_once(fake_dropbox), "no upload sent its data twice"
    assert len({session for session, _, _ in fake_dropbox.appends}) == tasks * folders, (
        "one upload session per file: no upload started over"
    )


def test_a_business_teams_spent_data_transport_calls_are_named_in_the_dead_letter(
    dropbox_relay, fake_dropbox
):
    relay = dropbox_relay()
    fake_dropbox.transport_calls = 1  # the session's start, then the month's calls are spent
    with relay.client() as client:
        task = relay.submit(client, prompt="Sales", destinations=[destination()])
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert "invalid_account_type/feature" in dead["last_error"]
    assert "used all of its data transport API calls for the month" in dead["last_error"], (
        "Dropbox's own user_message reaches the user"
    )
    assert fake_dropbox.contents() == {}


def test_a_team_space_the_account_cannot_reach_dies_at_once_and_says_so(
    dropbox_relay, fake_dropbox
):
    relay = dropbox_relay()
    with relay.client() as client:
        bad = relay.submit(
            client, prompt="Sales", destinations=[destination(root_namespace_id="999")]
        )
        good = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(root_namespace_id="3235641", folder="Team")],
        )
        [dead] = delivered(relay, client, bad["task_id"])
        [fine] = delivered(relay, client, good["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1, "not retried as if passing"
    assert "team space" in dead["last_error"] and "root_namespace_id" in dead["last_error"]
    assert fine["state"] == "delivered", fine["last_error"]


def test_a_token_without_a_routes_scope_names_the_scope(dropbox_relay, fake_dropbox):
    """An app whose permissions lack files.content.write: dead at once, with the scope and the fix."""
    fake_dropbox.refresh_tokens.add("refresh-token-read-only")
    fake_dropbox.scopes["refresh-token-read-only"] = frozenset(
        {"account_info.read", "files.metadata.read"}
    )
    relay = dropbox_relay()
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales",
            destinations=[destination(refresh_token="refresh-token-read-only")],
        )
        [dead] = delivered(relay, client, task["task_id"])
    assert dead["state"] == "dead" and dead["attempts"] == 1
    assert "lacks the scope files.content.write" in dead["last_error"]
    assert "Permissions" in dead["last_error"] and "refresh-token-read-only" not in str(dead)
