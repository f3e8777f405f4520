"""The app definitions the relay generates pass each platform's own validator (Zapier's npm package,
Make's JSON Schemas), are served over HTTP and exported by the CLI."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import httpx
import jsonschema
import pytest
import referencing
import referencing.jsonschema
from click.testing import CliRunner

import schemas
from app.cli.commands import relay as main
from app.integrations.make import schema_for
from app.integrations.zapier import zapier_app
from tests.connectors.zapier_support import node, validation_errors

MAKE_SCHEMAS = Path(__file__).parent / "make_schemas"


@pytest.fixture
def web_only(make_relay):
    return make_relay(worker=False)


def _steps(definition: dict):
    for group in ("triggers", "creates", "searches"):
        for key, step in definition[group].items():
            yield f"{group}.{key}", step


def test_zapier_definition_passes_the_official_validator(web_only, zapier_modules, tmp_path):
    definition = httpx.get(web_only.url + "/connectors/zapier/app.json").json()
    assert definition["platformVersion"].startswith("19.")
    assert validation_errors(definition, zapier_modules, tmp_path) == []
    assert "/v1/destinations/checks" in definition["authentication"]["test"]["source"]
    sources = json.dumps(definition)
    assert f'const BASE = \\"{web_only.config.public_url}\\"' in sources

    no_test = copy.deepcopy(definition)
    del no_test["authentication"]["test"]
    assert validation_errors(no_test, zapier_modules, tmp_path) == [
        'instance.authentication: requires property "test"'
    ]
    bad_key = copy.deepcopy(definition)
    bad_key["creates"]["generate_document"]["key"] = "generate document!"
    assert any("creates" in e for e in validation_errors(bad_key, zapier_modules, tmp_path))


def test_zapier_samples_and_output_fields_agree(web_only):
    definition = httpx.get(web_only.url + "/connectors/zapier/app.json").json()
    for name, step in _steps(definition):
        operation = step["operation"]
        if step["display"].get("hidden"):
            continue
        keys = {f["key"] for f in operation["outputFields"]}
        assert set(operation["sample"]) == keys, name


def test_zapier_export_is_a_project_the_cli_can_push(tmp_path, zapier_modules):
    result = CliRunner().invoke(
        main,
        [
            "connectors",
            "export",
            "zapier",
            str(tmp_path / "zap"),
            "--public-url",
            "https://relay.example.com",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "next: cd" in result.output
    package = json.loads((tmp_path / "zap" / "package.json").read_text())
    assert package["dependencies"]["zapier-platform-core"].startswith("19.")
    loaded = node(
        "const app = require(process.argv[1]); console.log(app.platformVersion, app.version)",
        str(tmp_path / "zap"),
        modules=zapier_modules,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == [
        package["dependencies"]["zapier-platform-core"],
        package["version"],
    ]


def _make_validator(schema: str) -> jsonschema.Draft7Validator:
    registry = referencing.Registry().with_resources(
        (p.name, referencing.jsonschema.DRAFT7.create_resource(json.loads(p.read_text())))
        for p in MAKE_SCHEMAS.glob("*.json")
    )
    return jsonschema.Draft7Validator(registry.contents(schema), registry=registry)


def _make_errors(path: str, body) -> list[str]:
    return [
        f"{path} {list(e.absolute_path)}: {e.message}"
        for e in _make_validator(schema_for(path)).iter_errors(body)
    ]


def test_every_make_section_validates_against_makes_schemas(web_only):
    files = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    errors = [error for path, body in files.items() for error in _make_errors(path, body)]
    assert errors == []
    manifest = files["makecomapp.json"]
    referenced = [
        path
        for kind in manifest["components"].values()
        for component in kind.values()
        for path in component["codeFiles"].values()
        if path
    ]
    referenced += [p for p in manifest["generalCodeFiles"].values() if p]
    assert sorted(referenced) == sorted(p for p in files if p != "makecomapp.json")
    assert {m["moduleType"] for m in manifest["components"]["module"].values()} == {
        "action",
        "search",
        "instant_trigger",
    }
    base = files["general/base.iml.json"]
    assert base["baseUrl"] == web_only.config.public_url and base["timeout"] == 40_000
    one = httpx.get(web_only.url + "/connectors/make/general/base.iml.json")
    assert one.json() == base
    missing = httpx.get(web_only.url + "/connectors/make/nope.iml.json")
    assert (
        missing.status_code == 404 and "GET /connectors/make/" in missing.json()["error"]["message"]
    )


def test_make_schemas_reject_a_broken_section(web_only):
    files = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    params = copy.deepcopy(
        files["modules/generateDocument/generateDocument.mappable-params.iml.json"]
    )
    params[0]["type"] = "no-such-type"
    attach = {"url": "/v1/hooks", "method": "POST"}  # a POST without a body
    assert _make_errors("x.mappable-params.iml.json", params)
    assert _make_errors("x.attach.iml.json", attach)


def test_make_export_writes_the_local_project(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "connectors",
            "export",
            "make",
            str(tmp_path / "make"),
            "--public-url",
            "https://relay.example.com",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "make" / "makecomapp.json").read_text())
    for component in manifest["components"]["module"].values():
        for path in filter(None, component["codeFiles"].values()):
            assert _make_errors(path, json.loads((tmp_path / "make" / path).read_text())) == []


_LITERAL = r"(?:null|undefined|true|false|-?\d+(?:\.\d+)?|'[^']*'|\"[^\"]*\")"
_COMPARISON = r"(?:===|!==|==|!=|<=|>=|<|>)"
_CONSTANT_CONDITION = re.compile(
    rf"\b(?:if|while)\s*\(\s*{_LITERAL}\s*(?:{_COMPARISON}\s*{_LITERAL}\s*)?\)"
)


def _function_sources(value):
    if isinstance(value, dict):
        if isinstance(value.get("source"), str):
            yield value["source"]
        for item in value.values():
            yield from _function_sources(item)
    elif isinstance(value, list):
        for item in value:
            yield from _function_sources(item)


def test_generated_zapier_code_has_only_the_branches_that_apply():
    """Generated code reads like written code: no condition between two constants (it once had
    `if (null !== null) { body.resume = null; }`), and each create carries only its own resume rule."""
    definition = zapier_app("https://relay.example")
    sources = list(_function_sources(definition))
    assert len(sources) > 10 and not [s for s in sources if _CONSTANT_CONDITION.search(s)]
    assert _CONSTANT_CONDITION.search("if (null !== null) { body.resume = null; }"), (
        "the check itself"
    )
    generate = definition["creates"]["generate_document"]["operation"]["perform"]["source"]
    resume = definition["creates"]["continue_document"]["operation"]["perform"]["source"]
    assert "input.resume" in generate and "body.resume = true" not in generate
    assert "body.resume = true;" in resume and "input.resume" not in resume


def test_the_destination_fields_name_every_destination_kind(web_only):
    """The destinations dropdowns list saved destinations by name and kind; their help names every kind a
    destination can be, the new ones (OneDrive/SharePoint, Dropbox, S3, Teams) with the rest."""
    from connectors.registry import KINDS, RECORD_KINDS

    zapier = httpx.get(web_only.url + "/connectors/zapier/app.json").json()
    fields = zapier["creates"]["generate_document"]["operation"]["inputFields"]
    [field] = [f for f in fields if f["key"] == "destinations"]
    make = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    [param] = [
        p
        for body in make.values()
        if isinstance(body, list)
        for p in body
        if isinstance(p, dict) and p.get("name") == "destinations"
    ][:1]
    # the last two are not saved destinations
    kinds = set(KINDS) - set(RECORD_KINDS) - {"callback", "slack_reply"}
    for kind in kinds | {"onedrive", "dropbox", "s3", "teams"}:
        assert kind in field["helpText"] and kind in param["spec"][0]["help"], kind
    assert field["dynamic"] == "list_destinations.id.name"


def test_makes_connection_test_fails_on_a_destination_that_fails_its_check(web_only):
    """Make's connection test posts to the checks of every saved destination; its `valid` condition
    reads the verdict, and its message maps the failing destinations' names (fields the answer has)."""
    make = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    test = make["connections/relay/relay.communication.iml.json"]
    assert (test["method"], test["url"]) == ("POST", web_only.url + "/v1/destinations/checks")
    assert test["response"]["valid"]["condition"] == "{{body.verdict != 'failure'}}"
    assert (
        "map(body.destinations; 'name'; 'verdict'; 'failure')"
        in (test["response"]["valid"]["message"])
    )
    with web_only.client() as client:
        client.post(
            "/v1/destinations?check=false",
            json={"name": "Gone", "kind": "webhook", "config": {"url": "http://127.0.0.1:9/h"}},
        ).raise_for_status()
        answer = client.post("/v1/destinations/checks").json()
    schemas.validate("relay/destinations-checks.json", answer)
    assert answer["verdict"] == "failure" and answer["tenant"] == "acme"
    assert [(d["name"], d["verdict"]) for d in answer["destinations"]] == [("Gone", "failure")]


def test_the_write_back_dropdowns_list_only_connections(web_only):
    with web_only.client() as client:
        for saved in (
            {"name": "Reports", "kind": "folder", "config": {"path": "r"}},
            {"name": "CRM", "kind": "hubspot", "config": {"token": "pat-na1-0000-1111"}},
        ):
            client.post("/v1/destinations", json=saved).raise_for_status()
        connections = client.get(
            "/v1/destinations", params={"kind": "hubspot,airtable,sheets"}
        ).json()["items"]
        files = client.get("/v1/destinations", params={"kind": "folder,s3"}).json()["items"]
        bad = client.get("/v1/destinations", params={"kind": "Hub Spot"})
    assert [d["name"] for d in connections] == ["CRM"] and [d["name"] for d in files] == ["Reports"]
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "kind"
    make = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    assert make["rpcs/listConnections/listConnections.communication.iml.json"]["qs"] == {
        "kind": "hubspot,airtable,sheets"
    }
    assert (
        "hubspot"
        not in make["rpcs/listDestinations/listDestinations.communication.iml.json"]["qs"]["kind"]
    )
    [param] = [
        p
        for body in make.values()
        if isinstance(body, list)
        for p in body
        if isinstance(p, dict) and p.get("name") == "write_back"
    ][:1]
    assert param["spec"][0]["options"] == "rpc://listConnections"


def test_makes_batch_module_posts_what_the_batch_endpoint_takes(web_only):
    """Make sends a module's mapped parameters as the body ({{parameters}}): a scenario's rows, each with
    its record and its own prompt, and the settings, are a batch the relay takes; the trigger attaches to
    batch.completed."""
    files = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    module = "modules/generateDocumentsForRows/generateDocumentsForRows"
    params = {p["name"]: p for p in files[f"{module}.mappable-params.iml.json"]}
    assert set(params) <= set(schemas.load("relay/batch-create.json")["properties"])
    assert [item["name"] for item in params["rows"]["spec"]] == ["record_key", "prompt"]
    mapped = {
        "format": "word",
        "on_error": "continue",
        "skip_done": False,
        "rows": [{"record_key": "crm:deal:1", "prompt": "Renewal memo for Acme"}],
    }
    with web_only.client() as client:
        answer = client.post(files[f"{module}.communication.iml.json"]["url"], json=mapped)
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) >= {p["name"] for p in files[f"{module}.interface.iml.json"]}
    attach = files["webhooks/batchCompleted/batchCompleted.attach.iml.json"]
    assert attach["body"]["event"] == "batch.completed"
    trigger = {
        p["name"]: p for p in files["modules/batchCompleted/batchCompleted.interface.iml.json"]
    }
    assert {p["name"] for p in trigger["data"]["spec"]} >= {
        "summary",
        "manifest_url",
        "zip_url",
        "counts",
    }


def test_makes_task_search_cancel_and_budget_trigger_call_what_the_relay_serves(web_only):
    files = httpx.get(web_only.url + "/connectors/make/").json()["files"]
    search = files["modules/searchTasks/searchTasks.communication.iml.json"]
    assert set(search["qs"]) <= set(schemas.load("relay/tasks-query.json")["properties"])
    cancel = files["modules/cancelTask/cancelTask.communication.iml.json"]
    with web_only.client() as client:
        found = client.get(
            search["url"], params={"status": "running", "format": "excel", "limit": 5}
        )
        task = web_only.submit(client, prompt="A model")
        cancelled = client.post(
            cancel["url"].replace("{{encodeURL(parameters.task_id)}}", task["task_id"])
        )
    assert found.status_code == 200 and found.json()["items"] == []
    assert cancelled.status_code == 202 and cancelled.json()["task_id"] == task["task_id"]
    attach = files["webhooks/budgetThreshold/budgetThreshold.attach.iml.json"]
    assert attach["body"]["event"] == "budget.threshold"
    trigger = {
        p["name"]: p for p in files["modules/budgetThreshold/budgetThreshold.interface.iml.json"]
    }
    assert {p["name"] for p in trigger["data"]["spec"]} >= {
        "share",
        "spent",
        "monthly_credits",
        "summary",
    }
