"""The audit log over real HTTP against a relay: each change of state made through the API, the dashboard and
the `relay` command is recorded with its actor, target and result (refusals too); GET /v1/audit pages and
filters; the CSV and JSON Lines exports say the same; the retention sweep trims by the setting (the clock
injected); /metrics counts; and no secret ever lands in an entry."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import redis

from app.core.ids import new_id
from app.domain import retention
from app.stores.audit import COLUMNS, Action, Actor, ActorKind, AuditFilter, Target
from tests.relay.test_secrets_at_rest import every_value
from tests.relay.test_tenants import relay_cli
from tests.support.dashboard import ADMIN_TOKEN, sign_in, signed_in_client

WHSEC = "whsec_YXVkaXQtcGxhbnRlZC1zZWNyZXQtdmFsdWUtMTIz"


def _key_id(api_key: str) -> str:
    return api_key.split("_")[1]


def _entries(client: httpx.Client, **query) -> list[dict]:
    answer = client.get("/v1/audit", params={"limit": 200, **query})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def _seen(entries: list[dict]) -> list[tuple[str, str, str, str]]:
    """(action, result, target type, target id), oldest first."""
    return [(e["action"], e["result"], e["target_type"], e["target_id"]) for e in reversed(entries)]


def test_each_api_change_is_recorded_with_actor_target_and_result(make_relay, receiver):
    relay = make_relay(worker=False)
    client = relay.client()
    created = client.post(
        "/v1/destinations",
        json={"name": "ops", "kind": "webhook", "config": {"url": receiver.url, "secret": WHSEC}},
    )
    assert created.status_code == 201, created.text
    dst = created.json()["id"]
    assert client.post("/v1/destinations", json={"name": "no config"}).status_code == 400
    assert client.patch(f"/v1/destinations/{dst}", json={"name": "ops 2"}).status_code == 200
    assert client.post(f"/v1/destinations/{dst}/check").status_code == 200
    assert client.delete(f"/v1/destinations/{dst}").status_code == 204
    assert client.delete(f"/v1/destinations/{dst}").status_code == 404
    hook = client.post("/v1/hooks", json={"target_url": receiver.url, "event": "task.completed"})
    hook_id = hook.json()["id"]
    assert client.delete(f"/v1/hooks/{hook_id}").status_code == 204
    assert client.put("/v1/budgets/tenant", json={"monthly_credits": 100}).status_code == 200
    assert client.get("/v1/budgets/tenant").status_code == 200  # a read: not recorded
    budget = "/v1/budgets/records/" + quote("crm:deal:1", safe="")
    assert client.put(budget, json={"monthly_credits": 5, "hard_cap": True}).status_code == 200
    assert client.delete(budget).status_code == 204
    missing_delivery = "dlv_" + "0" * 26
    assert client.post(f"/v1/deliveries/{missing_delivery}/replay").status_code == 404
    task = relay.submit(client, prompt="Quarterly numbers", record_key="crm:deal:7")
    cancel = client.post(f"/v1/tasks/{task['task_id']}/cancel")
    assert cancel.status_code in (202, 409), cancel.text
    batch = client.post(
        "/v1/batches",
        json={
            "format": "word",
            "prompt_template": "Memo {{n}}",
            "rows": [{"record_key": "b:1", "n": 1}],
        },
    ).json()
    assert client.post(f"/v1/batches/{batch['batch_id']}/retry").status_code == 202
    batch_cancel = client.post(f"/v1/batches/{batch['batch_id']}/cancel")
    assert client.delete("/v1/records/" + quote("crm:none", safe="")).status_code == 404
    # nobody: not recorded
    assert httpx.delete(relay.url + "/v1/hooks/" + hook_id, timeout=10).status_code == 401

    entries = _entries(client)
    assert _seen(entries) == [
        ("destination.created", "ok", "destination", dst),
        ("destination.created", "invalid_request", "destination", ""),
        ("destination.changed", "ok", "destination", dst),
        ("destination.checked", "ok", "destination", dst),
        ("destination.deleted", "ok", "destination", dst),
        ("destination.deleted", "destination_not_found", "destination", dst),
        ("hook.subscribed", "ok", "hook", hook_id),
        ("hook.unsubscribed", "ok", "hook", hook_id),
        ("budget.set", "ok", "budget", "tenant"),
        ("budget.set", "ok", "budget", "crm:deal:1"),
        ("budget.removed", "ok", "budget", "crm:deal:1"),
        ("delivery.replayed", "delivery_not_found", "delivery", missing_delivery),
        (
            "task.cancelled",
            "ok" if cancel.status_code == 202 else "task_ended",
            "task",
            task["task_id"],
        ),
        ("batch.retried", "ok", "batch", batch["batch_id"]),
        (
            "batch.cancelled",
            "ok" if batch_cancel.status_code == 202 else "batch_ended",
            "batch",
            batch["batch_id"],
        ),
        ("record.forgotten", "record_not_found", "record", "crm:none"),
    ]
    assert {
        (
            e["actor_kind"],
            e["actor_id"],
            e["actor_tenant"],
            e["actor_name"],
            e["tenant"],
            e["source"],
        )
        for e in entries
    } == {
        ("api_key", _key_id(relay.api_key), relay.tenant_id, "acme", relay.tenant_id, "127.0.0.1")
    }
    assert entries[-1]["target_name"] == "ops"  # the name it was created with
    assert all(re.fullmatch(r"\d+-\d+", e["id"]) and e["at"].endswith("Z") for e in entries)


def test_pages_filters_and_the_exports_say_the_same(make_relay):
    relay = make_relay(worker=False)
    client = relay.client()
    other_key = relay.ctx.tenants.issue_key(relay.tenant_id)
    formula = '=HYPERLINK("http://evil.example","x")'
    for n in range(5):  # 5 by the first key, a formula for a name among them
        name = formula if n == 2 else f"dest {n}"
        client.post(
            "/v1/destinations?check=false",
            json={"name": name, "kind": "webhook", "config": {"url": f"https://example.com/{n}"}},
        ).raise_for_status()
    with relay.client(other_key) as second:
        second.put("/v1/budgets/tenant", json={"monthly_credits": 7}).raise_for_status()

    every = _entries(client)
    assert len(every) == 6
    pages, cursor = [], None
    while True:
        answer = client.get(
            "/v1/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for page in pages for e in page] == [e["id"] for e in every]
    assert all(len(page) <= 2 for page in pages)

    budget_only = _entries(client, action="budget.set")
    assert [(e["action"], e["actor_id"]) for e in budget_only] == [
        ("budget.set", _key_id(other_key))
    ]
    assert len(_entries(client, actor=_key_id(relay.api_key))) == 5
    today = datetime.now(UTC).date()
    assert _entries(client, since=str(today + timedelta(days=1))) == []
    assert _entries(client, until=str(today - timedelta(days=1))) == []
    assert len(_entries(client, since=str(today), until=str(today))) == 6
    middle = every[3]["at"]
    assert {e["id"] for e in _entries(client, until=middle)} >= {e["id"] for e in every[3:]}
    assert client.get("/v1/audit", params={"action": "nonsense"}).status_code == 400

    jsonl = client.get("/v1/audit.jsonl")
    assert jsonl.headers["content-type"].startswith("application/jsonl")
    assert [json.loads(line) for line in jsonl.text.splitlines()] == every
    assert [
        json.loads(line)["action"]
        for line in client.get("/v1/audit.jsonl", params={"action": "budget.set"}).text.splitlines()
    ] == ["budget.set"]
    exported = client.get("/v1/audit.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    assert [row["target_name"] for row in rows] == [
        "'" + e["target_name"] if e["target_name"] == formula else e["target_name"] for e in every
    ]
    assert [{k: v for k, v in row.items() if k != "target_name"} for row in rows] == [
        {k: v for k, v in e.items() if k != "target_name"} for e in every
    ]


def test_the_sweep_trims_entries_older_than_the_setting(make_relay):
    relay = make_relay(worker=False, audit_retention_seconds=3600)
    client = relay.client()
    client.put("/v1/budgets/tenant", json={"monthly_credits": 1}).raise_for_status()
    assert len(_entries(client)) == 1
    assert retention.sweep(relay.ctx, now=time.time() + 1800)["audit_entry"] == 0
    assert len(_entries(client)) == 1
    swept = retention.sweep(relay.ctx, now=time.time() + 3700)
    assert swept["audit_entry"] == 2  # the tenant's stream and the all-tenants one
    assert _entries(client) == []
    assert relay.ctx.audit.page(None, AuditFilter(), None, 10)[0] == []


def test_metrics_count_entries_by_action_and_result(make_relay):
    relay = make_relay(worker=False)
    client = relay.client()

    def counted(action: str, result: str) -> float:
        text = httpx.get(relay.url + "/metrics", timeout=10).text
        line = f'relay_audit_entries_total{{action="{action}",result="{result}"}} '
        found = [row for row in text.splitlines() if row.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    ok, refused = counted("hook.unsubscribed", "ok"), counted("hook.unsubscribed", "refused")
    hook = client.post(
        "/v1/hooks", json={"target_url": "https://example.com/h", "event": "task.completed"}
    )
    client.delete(f"/v1/hooks/{hook.json()['id']}").raise_for_status()
    assert client.delete(f"/v1/hooks/{hook.json()['id']}").status_code == 404
    assert client.delete(f"/v1/hooks/{new_id('hook')}").status_code == 404
    assert (counted("hook.unsubscribed", "ok"), counted("hook.unsubscribed", "refused")) == (
        ok + 1,
        refused + 2,
    )


def test_the_dashboard_records_its_actions_and_shows_every_tenant(make_relay):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False)
    _, refused = sign_in(relay, token="not-the-token")
    assert refused == 401
    browser = signed_in_client(relay)
    other_id, other_key = relay.new_tenant("globex")
    with relay.client(other_key) as other:
        dst = other.post(
            "/v1/destinations?check=false",
            json={
                "name": "globex ops",
                "kind": "webhook",
                "config": {"url": "https://example.com/g"},
            },
        ).json()["id"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser.get("/dashboard/").text)[1]
    batch = (
        relay.client()
        .post(
            "/v1/batches",
            json={
                "format": "word",
                "prompt_template": "Memo {{n}}",
                "rows": [{"record_key": "b:1", "n": 1}],
            },
        )
        .json()
    )
    missing = "dlv_" + "1" * 26
    assert (
        browser.post(
            f"/dashboard/deliveries/{missing}/replay", data={"csrf_token": csrf}
        ).status_code
        == 302
    )
    assert (
        browser.post(
            f"/dashboard/batches/{batch['batch_id']}/cancel", data={"csrf_token": csrf}
        ).status_code
        == 302
    )
    checked = browser.post(
        f"/dashboard/destinations/{other_id}/{dst}/check", data={"csrf_token": csrf}
    )
    assert checked.status_code == 200

    page = browser.get("/dashboard/audit")
    assert page.status_code == 200
    assert _rows(page.text) == [
        "destination.checked",
        "batch.cancelled",
        "delivery.replayed",
        "destination.created",
        "session.signed_in",
        "session.signed_in",
    ]
    assert "globex ops" in page.text and "invalid_token" in page.text
    only_globex = browser.get("/dashboard/audit", params={"tenant": other_id}).text
    assert _rows(only_globex) == ["destination.checked", "destination.created"]
    exported = browser.get("/dashboard/audit.jsonl", params={"actor": "admin"}).text.splitlines()
    by_admin = [json.loads(line) for line in exported]
    assert [
        (e["action"], e["result"], e["target_type"], e["tenant"]) for e in reversed(by_admin)
    ] == [
        ("session.signed_in", "invalid_token", "session", ""),
        ("session.signed_in", "ok", "session", ""),
        ("delivery.replayed", "already_delivered", "delivery", ""),
        ("batch.cancelled", "ok", "batch", relay.tenant_id),
        ("destination.checked", "ok", "destination", other_id),
    ]
    assert {(e["actor_kind"], e["source"]) for e in by_admin} == {("operator_token", "127.0.0.1")}
    assert "audit.csv" in page.text
    rows = list(csv.reader(io.StringIO(browser.get("/dashboard/audit.csv").text)))
    assert len(rows) == 1 + 6
    browser.post("/dashboard/logout", data={"csrf_token": csrf})
    assert relay.ctx.audit.page(None, AuditFilter(), None, 1)[0][0].action == "session.signed_out"
    # a tenant sees what was done to its own things, the operator's check too, and nothing else
    seen = _entries(relay.client(other_key))
    assert [(e["action"], e["actor_kind"]) for e in seen] == [
        ("destination.checked", "operator_token"),
        ("destination.created", "api_key"),
    ]
    assert httpx.get(relay.url + "/dashboard/audit", timeout=10).status_code == 302


def _rows(page: str) -> list[str]:
    """The actions of the dashboard audit page's rows, top down."""
    return re.findall(r'<td class="mono">([a-z_.]+)<div', page)


def test_the_cli_records_its_changes_and_reads_the_log(make_relay):
    relay = make_relay(worker=False)
    created = relay_cli(
        relay,
        "tenants",
        "create",
        "initech",
        "--upstream-url",
        relay.sandbox.url,
        "--upstream-key",
        "ovt_live_planted_upstream_key_abc",
        "--webhook-secret",
        WHSEC,
    )
    assert created.exit_code == 0, created.output
    tenant_id = re.search(r"tenant\s+(ten_\w+)", created.output)[1]
    first_key = re.search(r"api key\s+(\S+)", created.output)[1]
    rotated = relay_cli(relay, "tenants", "rotate-key", "initech", "--keep-old")
    new_key = re.search(r"api key\s+(\S+)", rotated.output)[1]
    assert relay_cli(relay, "tenants", "revoke-key", "initech", _key_id(first_key)).exit_code == 0
    assert relay_cli(relay, "tenants", "revoke-key", "initech", "deadbeef").exit_code != 0
    assert (
        relay_cli(
            relay,
            "tenants",
            "create",
            " ",
            "--upstream-url",
            "x",
            "--upstream-key",
            "k",
            "--webhook-secret",
            WHSEC,
        ).exit_code
        != 0
    )
    assert relay_cli(relay, "secrets", "rotate").exit_code == 0
    assert relay_cli(relay, "deliveries", "replay", "dlv_" + "2" * 26).exit_code == 0

    listed = relay_cli(relay, "audit", "list", "--tenant", "initech")
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1:3] for line in listed.output.splitlines()] == [
        ["key.revoked", "key_not_found"],
        ["key.revoked", "ok"],
        ["key.rotated", "ok"],
        ["key.created", "ok"],
        ["tenant.created", "ok"],
    ]
    exported = relay_cli(relay, "audit", "export", "--format", "jsonl", "--actor", "cli")
    every = [json.loads(line) for line in exported.output.splitlines()]
    assert [(e["action"], e["result"], e["target_id"]) for e in every[:3]] == [
        ("delivery.replayed", "delivery_not_found", "dlv_" + "2" * 26),
        ("secrets.rotated", "ok", ""),
        ("tenant.created", "invalid_request", ""),
    ]
    assert {(e["actor_kind"], e["actor_id"]) for e in every} == {("system", "cli")}
    assert all(e["source"].startswith("cli@") for e in every)
    assert next(e for e in every if e["action"] == "key.rotated")["target_id"] == _key_id(new_key)
    as_csv = relay_cli(relay, "audit", "export", "--format", "csv", "--action", "secrets.rotated")
    assert len(list(csv.reader(io.StringIO(as_csv.output.removeprefix("\ufeff"))))) == 2
    # the new tenant's own log through the API: what was done to it, by the operator
    with relay.client(new_key) as client:
        assert {e["action"] for e in _entries(client)} == {
            "tenant.created",
            "key.created",
            "key.rotated",
            "key.revoked",
        }
    assert tenant_id


def test_no_secret_lands_in_the_log(make_relay, receiver):
    relay = make_relay(admin_token=ADMIN_TOKEN, worker=False)
    planted = "planted-" + new_id("x")
    client = relay.client()
    saved = client.post(
        "/v1/destinations",
        json={"name": "ops", "kind": "webhook", "config": {"url": receiver.url, "secret": WHSEC}},
    ).json()
    client.patch(
        f"/v1/destinations/{saved['id']}",
        json={"config": {"url": receiver.url + "?token=" + planted, "secret": WHSEC}},
    ).raise_for_status()
    refused = client.post(
        "/v1/destinations",
        json={"name": "ops", "kind": "webhook", "config": {"url": "not a url " + planted}},
    )
    assert refused.status_code == 400
    hook = client.post(
        "/v1/hooks", json={"target_url": receiver.url + "?k=" + planted, "event": "task.completed"}
    ).json()
    created = relay_cli(
        relay,
        "tenants",
        "create",
        "initech",
        "--upstream-url",
        relay.sandbox.url,
        "--upstream-key",
        planted,
        "--webhook-secret",
        WHSEC,
    )
    new_key = re.search(r"api key\s+(\S+)", created.output)[1]
    signed_in_client(relay)
    sign_in(relay, token=planted)
    relay.ctx.audit.append(
        Actor(ActorKind.SYSTEM, "test"), Action.SECRETS_ROTATED, Target("secrets"), "ok", "", ""
    )
    secrets = [
        planted,
        WHSEC,
        hook["secret"],
        relay.api_key,
        new_key,
        ADMIN_TOKEN,
        relay.api_key.split("_", 2)[2],
        new_key.split("_", 2)[2],
    ]
    stored = [
        (key, value)
        for key, value in every_value(relay.config.redis_url)
        if key.startswith(relay.config.key_prefix + "audit:")
    ]
    assert (
        len({key.split()[0] for key, _ in stored}) == 3
    )  # two tenants' streams and the operators'
    assert len(stored) > 9 * 11
    leaks = [(key, s) for key, value in stored for s in secrets if s.encode() in value]
    assert leaks == []
    raw = redis.Redis.from_url(relay.config.redis_url, decode_responses=True)
    assert raw.xlen(relay.config.key_prefix + "audit:all") == 9


def test_the_schema_lists_the_actions_and_actor_kinds_defined_in_code():
    entry = json.loads(Path("schemas/relay/audit-entry.json").read_text())["properties"]
    assert entry["action"]["enum"] == [str(action) for action in Action]
    assert entry["actor_kind"]["enum"] == [str(kind) for kind in ActorKind]
    assert set(entry) == set(COLUMNS)
