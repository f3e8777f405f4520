"""Folder deliveries over real HTTP are kept per tenant: each tenant writes under a root of its own, which
an operator may map (RELAY_FOLDER_TENANT_ROOTS), and a rendered path never climbs out of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.base import Permanent
from connectors.folder import tenant_root
from tests.relay.test_deliveries import delivered

DEALS = {"kind": "folder", "config": {"path": "Deals/{record_key}", "file_name": "{record_key}"}}


def test_two_tenants_same_record_key_write_two_files_and_a_path_cannot_leave_its_root(
    make_relay, tmp_path
):
    relay = make_relay(
        worker=False, folder_roots=f"{tmp_path / 'deliveries'},{tmp_path / 'dedicated'}"
    )
    other_id, other_key = relay.new_tenant("globex")
    mapped_id, mapped_key = relay.new_tenant("initech")
    # the operator gives one tenant a root of its own, within the folder roots
    relay.config = dataclasses.replace(
        relay.config, folder_tenant_roots=f"{mapped_id}={tmp_path / 'dedicated' / 'initech'}"
    )
    relay.start_worker()
    placed: dict[str, Path] = {}
    for api_key, prompt in (
        (None, "Acme's deal memo"),
        (other_key, "Globex's deal memo"),
        (mapped_key, "Initech's deal memo"),
    ):
        with relay.client(api_key) as client:
            task = relay.submit(client, prompt=prompt, record_key="deal-7", destinations=[DEALS])
            [done] = delivered(relay, client, task["task_id"])
            assert done["state"] == "delivered", done["last_error"]
            placed[prompt] = Path(done["location"])
    acme, globex, initech = placed.values()
    assert acme != globex, "two tenants' Deals/deal-7 are two files"
    assert acme.read_bytes() != globex.read_bytes(), "each tenant's own document"
    assert acme.is_relative_to(tmp_path / "deliveries" / relay.tenant_id / "Deals")
    assert globex.is_relative_to(tmp_path / "deliveries" / other_id / "Deals")
    assert initech.is_relative_to(tmp_path / "dedicated" / "initech" / "Deals"), "the mapped root"

    # a record key of ".." renders a path that would leave the tenant's root for the folder root
    with relay.client() as client:
        escaping = {"kind": "folder", "config": {"path": "{record_key}/escaped"}}
        task = relay.submit(client, prompt="Out", record_key="..", destinations=[escaping])
        [refused] = delivered(relay, client, task["task_id"])
    assert refused["state"] == "dead" and "outside" in refused["last_error"], refused
    assert not list(tmp_path.rglob("escaped")), "nothing written outside the tenant's root"


def test_a_mapped_root_stays_within_the_folder_roots_and_apart_from_other_tenants(tmp_path):
    roots = f"{tmp_path / 'shared'},{tmp_path / 'dedicated'}"
    assert tenant_root(roots, "", "ten_A") == tmp_path / "shared" / "ten_A"
    assert tenant_root(roots, "ten_A=acme", "ten_A") == tmp_path / "shared" / "acme"
    assert tenant_root(roots, f"ten_A={tmp_path / 'dedicated'}", "ten_A") == tmp_path / "dedicated"
    for mapped in (".", str(tmp_path), "/etc", "../elsewhere"):
        with pytest.raises(Permanent):
            tenant_root(roots, f"ten_A={mapped}", "ten_A")
    for tenant in ("", "..", "a/b"):
        with pytest.raises(Permanent):
            tenant_root(roots, "", tenant)
