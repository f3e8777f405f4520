"""File names and folders from templates, and conflict policies, for the older file destinations (folder,
Drive, S3, Slack, email); OneDrive and Dropbox have theirs in their own tests."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import httpx
import pytest

from connectors import naming
from connectors.base import Delivery, Document, Environment, Permanent
from connectors.folder import KIND as FOLDER
from tests.relay.test_deliveries import delivered
from tests.relay.test_s3_delivery import destination as s3_destination
from tests.relay.test_s3_delivery import objects

TASK = {
    "task_id": "tsk_01HZX",
    "record_key": "acme/deal: 42?",
    "format": "excel",
    "turn_index": 3,
    "updated_at": "2026-12-01T23:59:58Z",
    "result": {"artifacts": [{"file_name": "Renewal memo.xlsx"}]},
}


def document(
    name: str = "acme-deal-42-workbook-3f9a1c.xlsx", content: bytes = b"cells"
) -> Document:
    @contextlib.contextmanager
    def opened(offset: int):
        yield iter([content[offset:]])

    return Document(name, "application/octet-stream", len(content), opened)


def delivery(**config) -> Delivery:
    return Delivery(
        "dlv_01", "folder", config, {"type": "task.completed", "data": TASK}, tenant_id="ten_1"
    )


def test_templates_use_the_tasks_fields_and_replace_refused_characters_the_same_way():
    named = delivery(
        file_name="{record_key} {title} t{turn} {date} {format}", folder="Deals/{record_key}/{date}"
    )
    assert (
        naming.file_name(named, document())
        == "acme_deal: 42? Renewal memo t3 2026-12-01 excel.xlsx"
    )
    windows = naming.file_name(named, document(), naming.SHAREPOINT)
    assert windows == "acme_deal_ 42_ Renewal memo t3 2026-12-01 excel.xlsx"
    assert (
        naming.folder(named, document(), rules=naming.SHAREPOINT)
        == "Deals/acme_deal_ 42_/2026-12-01"
    )
    assert naming.file_name(delivery(file_name="{task_id}.xlsx"), document()) == "tsk_01HZX.xlsx", (
        "no second .xlsx"
    )
    assert naming.file_name(delivery(), document()) == "acme-deal-42-workbook-3f9a1c.xlsx", (
        "the default stays"
    )
    long = naming.file_name(delivery(file_name="x" * 300), document())
    assert len(long.encode()) == 255 and long.endswith(".xlsx")


def test_a_template_with_an_unknown_field_is_refused_naming_the_field(make_relay):
    assert naming.check("{record_key}/{date}") is None
    assert "unknown field {customer}" in naming.check("{customer}")
    assert "no format" in naming.check("{date:%Y}")
    relay = make_relay(worker=False)  # refused when saved: nothing runs
    with relay.client() as client:
        answer = client.post(
            "/v1/destinations",
            json={
                "name": "Reports",
                "kind": "folder",
                "config": {"path": "x", "file_name": "{customer} memo"},
            },
        )
    assert answer.status_code == 400 and "file_name" in answer.json()["error"]["field"]


def test_the_folder_conflict_policies(relay, tmp_path):
    """Each policy meets a file someone else put where its document goes (a folder per policy, one relay)."""
    policies = ("replace", "rename", "fail")
    for policy in policies:
        existing = tmp_path / "deliveries" / relay.tenant_id / policy / "deal_7.xlsx"
        existing.parent.mkdir(parents=True)
        existing.write_bytes(b"someone else's file")
    with relay.client() as client:
        tasks = {
            policy: relay.submit(
                client,
                prompt="Sales",
                record_key="deal/7",
                destinations=[
                    {
                        "kind": "folder",
                        "config": {"path": policy, "file_name": "{record_key}", "conflict": policy},
                    }
                ],
            )
            for policy in policies
        }
        done = {
            policy: delivered(relay, client, task["task_id"])[0] for policy, task in tasks.items()
        }
        files = {
            policy: httpx.get(
                client.get(f"/v1/tasks/{task['task_id']}").json()["result"]["download_url"]
            ).content
            for policy, task in tasks.items()
        }
    names = {
        policy: {
            p.name: p.read_bytes()
            for p in (tmp_path / "deliveries" / relay.tenant_id / policy).iterdir()
        }
        for policy in policies
    }
    assert done["replace"]["state"] == "delivered" and names["replace"] == {
        "deal_7.xlsx": files["replace"]
    }
    assert done["rename"]["state"] == "delivered" and done["rename"]["location"].endswith(
        "deal_7 (2).xlsx"
    )
    assert names["rename"] == {
        "deal_7.xlsx": b"someone else's file",
        "deal_7 (2).xlsx": files["rename"],
    }
    assert (
        done["fail"]["state"] == "dead" and "conflict policy is fail" in done["fail"]["last_error"]
    )
    assert names["fail"] == {"deal_7.xlsx": b"someone else's file"}


def test_a_folder_attempt_after_a_crash_finishes_the_rename_its_predecessor_left(tmp_path):
    saved: dict = {}
    env = Environment(
        http=None,
        save_state=lambda did, state: saved.update(state),  # type: ignore[arg-type]
        settings={"folder_roots": str(tmp_path)},
    )
    target = delivery(path="memos", file_name="{record_key}", conflict="rename")
    placed = Path(FOLDER.deliver(target, document(content=b"first"), env).location)
    assert saved == {"placed": str(placed)} and placed.read_bytes() == b"first"
    # the worker died after the part was written whole and its name saved, before the rename
    partial = placed.with_name(f".{placed.name}.dlv_01.part")
    placed.replace(partial)
    again = Delivery("dlv_01", "folder", target.config, target.event, dict(saved), "ten_1")
    assert FOLDER.find_existing(again, env) is None
    assert FOLDER.deliver(again, document(content=b"first"), env).location == str(placed)
    assert FOLDER.find_existing(again, env).location == str(placed), "then found, not written again"
    assert [p.name for p in placed.parent.iterdir()] == [placed.name], (
        "one file, not renamed to (2)"
    )


def test_a_saved_path_with_a_brace_from_before_templates_fails_in_words(tmp_path):
    env = Environment(
        http=None, save_state=lambda did, state: None, settings={"folder_roots": str(tmp_path)}
    )  # type: ignore[arg-type]
    with pytest.raises(
        Permanent, match=re.escape("template 'reports{2026}': unknown field {2026}")
    ):
        FOLDER.deliver(delivery(path="reports{2026}"), document(), env)


def test_drive_subfolders_from_the_folder_template_are_made_once(make_relay, fake_drive):
    relay = make_relay(drive_api_url=fake_drive.url, drive_token_url=fake_drive.url + "/token")
    config = {
        "folder_id": "folder-reports",
        "credentials": fake_drive.service_account,
        "folder": "Deals/{record_key}",
        "file_name": "{record_key} turn {turn}",
    }
    with relay.client() as client:
        first = relay.submit(
            client,
            prompt="Memo",
            record_key="deal:9",
            destinations=[{"kind": "gdrive", "config": config}],
        )
        [one] = delivered(relay, client, first["task_id"])
        second = relay.submit(
            client,
            prompt="Memo, shorter",
            record_key="deal:9",
            destinations=[{"kind": "gdrive", "config": config}],
        )
        [two] = delivered(relay, client, second["task_id"])
        turns = [
            client.get(f"/v1/tasks/{t['task_id']}").json()["turn_index"] for t in (first, second)
        ]
    assert one["state"] == two["state"] == "delivered", (one["last_error"], two["last_error"])
    folders = {f["name"]: f for f in fake_drive.folder_items.values()}
    assert set(folders) == {"Deals", "deal:9"} and folders["Deals"]["parents"] == ["folder-reports"]
    assert folders["deal:9"]["parents"] == [folders["Deals"]["id"]]
    assert sorted(f["name"] for f in fake_drive.files.values()) == [
        f"deal:9 turn {t}.xlsx" for t in sorted(turns)
    ]
    assert all(f["parents"] == [folders["deal:9"]["id"]] for f in fake_drive.files.values())


def test_s3_keys_from_the_prefix_and_file_name_templates(relay, moto):
    with relay.client() as client:
        task = relay.submit(
            client,
            prompt="Sales",
            record_key="deal:7",
            destinations=[
                s3_destination(
                    moto.url,
                    moto.bucket,
                    prefix="deals/{record_key}/{date}",
                    file_name="memo {turn}",
                )
            ],
        )
        [done] = delivered(relay, client, task["task_id"])
        view = client.get(f"/v1/tasks/{task['task_id']}").json()
    assert done["state"] == "delivered", done["last_error"]
    assert list(objects(moto)) == [
        f"deals/deal:7/{view['updated_at'][:10]}/memo {view['turn_index']}.xlsx"
    ]
