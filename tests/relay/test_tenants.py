"""Tenants and keys from the command line; keys hashed, upstream secrets encrypted at rest; isolation."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner, Result

from app.cli.commands import relay as main
from app.core.crypto import SecretBox
from app.stores import context
from app.work.intake import IntakeLane
from tests.support.servers import eventually


def relay_cli(stack, *args: str, env: dict | None = None) -> Result:
    """`relay ARGS` in this process (a process of its own costs a second or two of CPU to start), with the
    context built from the environment it is given, as the command's own process builds it."""
    previous = context._current
    context._current = None  # built afresh from ``env`` by the command's first context.current()
    try:
        return CliRunner().invoke(main, list(args), env=env or stack.config.to_env())
    finally:
        context._current = previous


def relay_process(stack, *args: str, env: dict) -> subprocess.CompletedProcess:
    """`relay ARGS` in a process of its own: what a person sees when the command cannot even start."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"relay {' '.join(args)} still running after 120 s: {exc.stdout}{exc.stderr}"
        ) from None


@pytest.fixture
def stack(make_relay):
    return make_relay(worker=False)


def test_create_prints_the_key_once_and_it_works(stack):
    created = relay_cli(
        stack,
        "tenants",
        "create",
        "globex",
        "--upstream-url",
        stack.sandbox.url,
        "--upstream-key",
        stack.sandbox.api_key,
        "--webhook-secret",
        stack.sandbox.webhook_secret,
    )
    assert created.exit_code == 0, created.output
    api_key = re.search(r"^api key\s+(rly_\S+)$", created.stdout, re.M).group(1)
    with stack.client(api_key) as client:
        me = client.get("/v1/me").json()
    assert me["name"] == "globex" and me["usage"] == {
        "credits_used": 0,
        "duration_ms": 0,
        "task_count": 0,
    }
    listed = relay_cli(stack, "tenants", "list")
    assert "globex" in listed.stdout and "rly_" not in listed.stdout


def test_bad_tenant_input_is_a_clear_error(stack):
    bad = relay_cli(
        stack,
        "tenants",
        "create",
        "x",
        "--upstream-url",
        "ftp://nope",
        "--upstream-key",
        "k",
        "--webhook-secret",
        "whsec_eA==",
    )
    assert bad.exit_code != 0 and "http://" in bad.stderr
    bad_secret = relay_cli(
        stack,
        "tenants",
        "create",
        "x",
        "--upstream-url",
        "http://x",
        "--upstream-key",
        "k",
        "--webhook-secret",
        "not-a-secret!!",
    )
    assert bad_secret.exit_code != 0 and "whsec_" in bad_secret.stderr


def test_rotate_and_revoke_keys(stack):
    rotated = relay_cli(stack, "tenants", "rotate-key", "acme", "--keep-old")
    new_key = re.search(r"(rly_\S+)", rotated.stdout).group(1)
    with stack.client() as old, stack.client(new_key) as new:
        assert old.get("/v1/me").status_code == new.get("/v1/me").status_code == 200
    key_ids = re.findall(
        r"^(\w+)\s+created", relay_cli(stack, "tenants", "keys", "acme").stdout, re.M
    )
    assert len(key_ids) == 2
    old_id = next(k for k in key_ids if stack.api_key.startswith(f"rly_{k}_"))
    assert relay_cli(stack, "tenants", "revoke-key", "acme", old_id).exit_code == 0
    with stack.client() as old, stack.client(new_key) as new:
        assert old.get("/v1/me").status_code == 401 and new.get("/v1/me").status_code == 200
    again = relay_cli(stack, "tenants", "rotate-key", "acme")
    with stack.client(new_key) as previous:
        assert previous.get("/v1/me").status_code == 401, (
            "rotate without --keep-old revokes the others"
        )
    with stack.client(re.search(r"(rly_\S+)", again.stdout).group(1)) as latest:
        assert latest.get("/v1/me").status_code == 200


def test_secrets_are_encrypted_and_keys_hashed_at_rest(stack):
    dump = " ".join(
        str(v)
        for key in stack.ctx.redis.keys("*")
        if stack.ctx.redis.type(key) == "hash"
        for v in stack.ctx.redis.hgetall(key).values()
    )
    dump += " ".join(
        str(stack.ctx.redis.get(k))
        for k in stack.ctx.redis.keys("*")
        if stack.ctx.redis.type(k) == "string"
    )
    assert stack.sandbox.api_key not in dump and stack.sandbox.webhook_secret not in dump
    assert stack.api_key not in dump


def test_encryption_key_rotation(stack):
    new_key = SecretBox.new_key()
    env = {
        **stack.config.to_env(),
        "RELAY_ENCRYPTION_KEYS": f"{new_key},{stack.config.encryption_keys}",
    }
    assert relay_cli(stack, "secrets", "rotate", env=env).exit_code == 0
    only_new = {**stack.config.to_env(), "RELAY_ENCRYPTION_KEYS": new_key}
    listed = relay_cli(stack, "tenants", "list", env=only_new)
    assert listed.exit_code == 0 and "acme" in listed.stdout


def test_missing_encryption_key_is_explained(stack):
    env = {**stack.env(), "RELAY_ENCRYPTION_KEYS": ""}
    result = relay_process(stack, "tenants", "list", env=env)
    assert result.returncode != 0 and "relay secrets new-key" in result.stderr


def test_another_tenants_ids_answer_404_like_unknown_ones(make_relay):
    stack = make_relay(worker=False)  # the task's webhook is applied here: no worker process needed
    with stack.client() as client:
        task_id = stack.submit(client, prompt="Mine", record_key="deal:1")["task_id"]
        eventually(
            lambda: IntakeLane(stack.ctx).drain(), 60, "the API's webhook in the intake stream"
        )
        task = stack.wait_task(client, task_id)
    _, other_key = stack.new_tenant("intruder")
    with stack.client(other_key) as other:
        assert other.get(f"/v1/tasks/{task['task_id']}").status_code == 404
        assert other.get("/v1/tasks/tsk_01ARZ3NDEKTSV4RRFFQ69G5FAV").status_code == 404
        assert other.get("/v1/records/deal%3A1").status_code == 404
        assert other.delete("/v1/records/deal%3A1").status_code == 404
        assert other.get("/v1/events").json()["items"] == []
    with stack.client() as client:
        assert client.get("/v1/records/deal%3A1").status_code == 200, (
            "nothing changed for the owner"
        )


def test_v1_needs_a_key(stack):
    with stack.client("rly_nope_nope") as client:
        assert client.get("/v1/me").status_code == 401
        missing = client.get("/v1/me", headers={"Authorization": ""})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
