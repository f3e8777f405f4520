"""No secret in clear at rest: one known secret planted in every field of a request that can hold one
(inline destinations of every kind that has a secret, callback headers, a batch's inline destinations,
saved destinations),
then submits, a batch, their deliveries and the retention archive run over real HTTP against a relay; every
Redis key (strings, hashes, lists, sets, sorted sets, streams; RQ's compressed job data opened) and every
archive file is searched for it."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import subprocess
import sys
import time
import zlib
from pathlib import Path

import redis

from app.cli.devstack import stop_processes
from app.core.crypto import SecretBox
from app.domain import retention
from tests.relay.test_batches import finished
from tests.support.servers import eventually

DAY = 86_400
SETTLED = ("delivered", "accepted", "dead")


def every_value(url: str) -> list[tuple[str, bytes]]:
    """(key, value) for every value of every key, as Redis holds them, with zlib-compressed ones opened."""
    raw = redis.Redis.from_url(url)
    found: list[tuple[str, bytes]] = []
    for key in raw.scan_iter(count=1000):
        kind = raw.type(key).decode()
        if kind == "none":  # gone since the scan listed it (RQ's short-lived keys)
            continue
        if kind == "string":
            values = [raw.get(key)]
        elif kind == "hash":  # each value named by its field, for the message
            for name, value in raw.hgetall(key).items():
                found += [(f"{key.decode()} {name.decode()}", v) for v in _opened(name, value)]
            values = []
        elif kind == "list":
            values = raw.lrange(key, 0, -1)
        elif kind == "set":
            values = list(raw.smembers(key))
        elif kind == "zset":
            values = raw.zrange(key, 0, -1)
        elif kind == "stream":
            values = [
                item for _, entry in raw.xrange(key) for pair in entry.items() for item in pair
            ]
        else:
            raise AssertionError(f"a key of a type this scan does not read: {key!r} is {kind}")
        # a value gone meanwhile reads None
        present = [key, *(value for value in values if value is not None)]
        found += [(key.decode(), v) for value in present for v in _opened(value)]
    raw.close()
    return found


def _opened(*values: bytes) -> list[bytes]:
    """The values, and those that are compressed (RQ keeps a job's data so) opened too."""
    opened = list(values)
    for value in values:
        with contextlib.suppress(zlib.error):
            opened.append(zlib.decompress(value))
    return opened


def test_a_planted_secret_is_nowhere_in_redis_nor_in_the_archive(
    make_relay,
    tmp_path,
    receiver,
    smtp_server,
    moto,
    fake_slack,
    fake_drive,
    fake_graph,
    fake_dropbox,
    fake_teams,
    loopback_ca,
):
    secret = "Pl4nted" + secrets.token_hex(12)
    fake_slack.add_channel("C0123ABCD")  # the bot was invited
    archive = tmp_path / "archive"
    relay = make_relay(
        archive_dir=str(archive),
        slack_api_url=fake_slack.url + "/api/",
        drive_api_url=fake_drive.url,
        drive_token_url=fake_drive.url + "/token",
        graph_api_url=fake_graph.url + "/v1.0",
        graph_login_url=fake_graph.url,
        dropbox_api_url=fake_dropbox.url,
        dropbox_content_url=fake_dropbox.url,
        outbound_ca_file=str(loopback_ca.ca_file),
    )
    smtp_server.mailbox.users["relay"] = secret
    fake_teams.signature = secret
    inline = [
        {"kind": "webhook", "config": {"url": receiver.url, "secret": f"whsec_{secret}"}},
        {
            "kind": "email",
            "config": {
                "to": ["ops@example.com"],
                "from": "relay@example.com",
                "host": "127.0.0.1",
                "port": smtp_server.port,
                "security": "starttls",
                "username": "relay",
                "password": secret,
                "ca_pem": smtp_server.cert.read_text(),
            },
        },
        {
            "kind": "s3",
            "config": {
                "bucket": moto.bucket,
                "endpoint_url": moto.url,
                "addressing_style": "path",
                "access_key_id": "testing",
                "secret_access_key": secret,
                "session_token": f"session-{secret}",
            },
        },
        {"kind": "slack", "config": {"channel": "C0123ABCD", "bot_token": f"xoxb-{secret}"}},
        {
            "kind": "gdrive",
            "config": {
                "folder_id": "folder-reports",
                "credentials": {
                    "type": "authorized_user",
                    "client_id": "client-id.apps",
                    "client_secret": secret,
                    "refresh_token": f"1//{secret}",
                },
            },
        },
        {
            "kind": "onedrive",
            "config": {
                "tenant_id": fake_graph.tenant,
                "client_id": "relay-app",
                "client_secret": secret,
                "user": "alice@contoso.com",
            },
        },
        {
            "kind": "dropbox",
            "config": {"app_key": "relayappkey", "app_secret": secret, "refresh_token": secret},
        },
        {"kind": "teams", "config": {"url": fake_teams.url(fake_teams.base)}},
    ]
    headers = {"Authorization": f"Bearer {secret}", "X-Api-Key": secret}
    with relay.client() as client:
        saved = [  # saved destinations were sealed before: planted there too (no platform to check them)
            client.post(
                "/v1/destinations?check=false",
                json={"name": name, "kind": kind, "config": config},
            )
            for name, kind, config in (
                ("ops", "webhook", {"url": receiver.url, "secret": f"whsec_{secret}"}),
                ("crm", "airtable", {"token": f"pat{secret}"}),
            )
        ]
        assert [answer.status_code for answer in saved] == [201, 201], [a.text for a in saved]
        tasks = [
            relay.submit(
                client,
                prompt=f"Secret-bearing request {n}",
                record_key=f"deal:{n}",
                destinations=[*inline, {"id": saved[0].json()["id"]}],
                callback_url=receiver.url,
                callback_headers=headers,
            )
            for n in range(2)
        ]
        batch = client.post(
            "/v1/batches",
            json={
                "format": "excel",
                "rows": [{"record_key": "deal:b1", "prompt": "Batch row"}],
                "destinations": inline[:2],
                "callback_url": receiver.url,
            },
        )
        assert batch.status_code == 202, batch.text
        ended = [relay.wait_task(client, t["task_id"]) for t in tasks]
        batch_done = finished(client, batch.json()["batch_id"])
        task_ids = [t["task_id"] for t in ended] + [
            row["task_id"]
            for row in client.get(f"/v1/batches/{batch_done['batch_id']}/rows").json()["items"]
        ]

        def every_delivery():
            views = [client.get(f"/v1/tasks/{t}").json() for t in task_ids]
            views.append(client.get(f"/v1/batches/{batch_done['batch_id']}").json())
            return [d for view in views for d in view["deliveries"]]

        def all_settled():
            found = every_delivery()
            # each task: 9 destinations and its callback; the row: 2; the batch's end: 2 and its callback
            done = len(found) == 2 * 10 + 2 + 3 and all(d["state"] in SETTLED for d in found)
            return found if done else None

        deliveries = eventually(
            all_settled,
            120,
            "every delivery to settle",
            every=0.2,
            show=lambda: [(d["kind"], d["state"], d["last_error"]) for d in every_delivery()],
        )
    assert [
        r for r in receiver.requests if r.headers.get("Authorization") == headers["Authorization"]
    ], "the callback was sent with its headers: opened where it is delivered"
    assert smtp_server.mailbox.messages, "the email went out with the planted password"
    for delivery in deliveries:
        assert secret not in (delivery["last_error"] or ""), delivery

    held = [key for key, value in every_value(relay.config.redis_url) if secret.encode() in value]
    assert not held, f"the secret is in clear in Redis: {sorted(set(held))}"

    swept = retention.sweep(relay.ctx, now=time.time() + 31 * DAY)
    assert swept["task"] == len(task_ids), swept
    files = [path for path in Path(archive).rglob("*") if path.is_file()]
    assert files, "the archive was written"
    for path in files:
        text = path.read_text()
        assert secret not in text, f"the secret is in the archive: {path.name}"
        assert "gAAAAA" not in text, "nor a sealed copy of it"
    logs = "".join(relay.log_of(process) for process in relay.processes)
    assert secret not in logs


def test_rotation_reseals_every_stored_secret_and_a_worker_with_only_the_new_key_delivers(
    make_relay, receiver
):
    old, new = SecretBox.new_key(), SecretBox.new_key()
    relay = make_relay(encryption_keys=old, worker=False)
    worker = relay.start_worker()
    receiver.default_status = 400  # every delivery dies at once: replayed after the rotation
    with relay.client() as client:
        saved = client.post(
            "/v1/destinations",
            json={"name": "ops", "kind": "webhook", "config": {"url": receiver.url}},
        ).json()
        client.post("/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"})
        task = relay.submit(
            client,
            prompt="Rotated",
            destinations=[
                {"kind": "webhook", "config": {"url": receiver.url}},
                {"id": saved["id"]},
            ],
            callback_url=receiver.url,
            callback_headers={"Authorization": "Bearer rotated-secret"},
        )
        batch = client.post(
            "/v1/batches",
            json={
                "format": "excel",
                "rows": [{"record_key": "deal:r", "prompt": "Row"}],
                "destinations": [{"kind": "webhook", "config": {"url": receiver.url}}],
            },
        )
        finished(client, batch.json()["batch_id"])
        eventually(
            lambda: (
                (found := client.get(f"/v1/tasks/{task['task_id']}").json()["deliveries"])
                and len(found) == 4
                and all(d["state"] == "dead" for d in found)
                and found
            ),
            60,
            "the task's four deliveries to die",
        )
    stop_processes([worker], timeout=10)
    env = {**relay.env(), "RELAY_ENCRYPTION_KEYS": f"{new},{old}"}
    rotated = subprocess.run(
        [sys.executable, "-m", "app.cli", "secrets", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 destination(s), 1 hook(s)" in rotated.stdout, rotated.stdout
    sealed = {
        token.decode(): key
        for key, value in every_value(relay.config.redis_url)
        for token in re.findall(rb"gAAAAA[A-Za-z0-9_=-]+", value)
    }
    alone = SecretBox(new)
    kinds = {key.split()[0].split(":")[1] for key in sealed.values()}
    assert {"tenant", "destinations", "hooks", "task", "batch", "delivery"} <= kinds, kinds
    for token in sealed:
        alone.open(token)  # raises for one still sealed with the old key only
    # the relay restarted with the new key only: its worker and `relay deliveries replay` deliver them all
    relay.config = dataclasses.replace(relay.config, encryption_keys=new)
    relay.start_worker()
    receiver.default_status = 200
    subprocess.run(
        [sys.executable, "-m", "app.cli", "deliveries", "replay", "--all-failed"],
        env=relay.env(),
        capture_output=True,
        check=True,
    )

    def states() -> list[str]:
        return [d["state"] for d in relay.deliveries_of([task["task_id"]])]

    eventually(
        lambda: states() == ["delivered"] * 4, 60, "the replays under the new key", show=states
    )
    callbacks = [r for r in receiver.requests if r.headers.get("Authorization")]
    assert callbacks[-1].headers["Authorization"] == "Bearer rotated-secret"
