"""`relay doctor` against real Redis servers and the sandbox: what it accepts, warns about and fails on."""

from __future__ import annotations

import subprocess

import httpx
from click.testing import CliRunner, Result

from app.cli.devstack import free_port, stop_processes
from app.cli.doctor import doctor as doctor_command
from app.cli.embedded_redis import server_binary
from tests.support.servers import eventually


def doctor(env: dict[str, str]) -> Result:
    """`relay doctor` in this process, configured by ``env`` alone as in its own process (which would cost a
    second or two of CPU to start)."""
    return CliRunner().invoke(doctor_command, [], env=env)


def wait_for_worker(relay) -> None:
    [worker] = relay.processes

    def registered() -> bool:
        assert worker.poll() is None, f"the worker exited:\n{relay.log_of(worker)}"
        return httpx.get(relay.url + "/readyz").json()["workers"] == 1

    eventually(
        registered, 300, "the worker to register (a slow start on a busy machine is no failure)"
    )


def test_a_healthy_installation_passes(relay):
    wait_for_worker(relay)
    done = doctor(relay.config.to_env())
    assert done.exit_code == 0, done.output
    lines = done.stdout
    assert "ok    redis" in lines and "AOF is on" in lines and "noeviction" in lines
    assert "ok    workers" in lines and "ok    api (acme)" in lines
    assert "warn  public url" in lines  # the tests' relay lives on loopback
    assert relay.sandbox.api_key not in lines and relay.api_key not in lines


def test_unreachable_redis_and_a_refused_key_fail(make_relay):
    relay = make_relay()
    relay.new_tenant("revoked", upstream_key="ovt_not_a_key")
    wait_for_worker(relay)
    refused = doctor(relay.config.to_env())
    assert (
        refused.exit_code == 1
        and "FAIL  api (revoked)" in refused.stdout
        and "refuses" in refused.stdout
    )
    nowhere = doctor(
        {**relay.config.to_env(), "RELAY_REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    )
    assert (
        nowhere.exit_code == 1
        and "FAIL  redis" in nowhere.stdout
        and "hunter2" not in nowhere.stdout
    )


def test_a_placeholder_signing_key_or_a_short_admin_token_fails(make_relay):
    relay = make_relay(worker=False)
    env = {
        **relay.config.to_env(),
        "RELAY_SECRET_KEY": "replace-with-a-random-32-byte-token",
        "RELAY_ADMIN_TOKEN": "admin",
    }
    done = doctor(env)
    assert done.exit_code == 1
    assert "FAIL  secrets" in done.stdout and "RELAY_SECRET_KEY is a placeholder" in done.stdout
    assert "RELAY_ADMIN_TOKEN is shorter than 32 characters" in done.stdout
    assert "replace-with-a-random-32-byte-token" not in done.stdout, "a value is never shown"


def _answers(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        return bool(Redis.from_url(url, socket_timeout=1).ping())
    except RedisError:
        return False


def test_a_redis_that_can_lose_data_is_flagged(make_relay, tmp_path):
    relay = make_relay(worker=False)
    port = free_port()
    risky = subprocess.Popen(
        [
            server_binary(),
            "--port",
            str(port),
            "--appendonly",
            "no",
            "--save",
            "",
            "--maxmemory-policy",
            "allkeys-lru",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        eventually(lambda: _answers(url), 300, "the risky Redis to start")
        done = doctor({**relay.config.to_env(), "RELAY_REDIS_URL": url})
        assert "warn  redis persistence" in done.stdout and "AOF is off" in done.stdout
        assert "warn  redis eviction" in done.stdout and "allkeys-lru" in done.stdout
        assert "FAIL  workers" in done.stdout and done.exit_code == 1
    finally:
        stop_processes([risky], timeout=10)


def test_a_redis_past_80_percent_of_its_maxmemory_is_warned_about():
    import tempfile
    from pathlib import Path

    from redis import Redis

    from app.cli import checks as checks
    from app.cli.embedded_redis import EmbeddedRedis
    from app.core.config import RelayConfig
    from app.core.crypto import SecretBox

    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="relay-doctor-")))
    url = server.start()
    try:
        config = RelayConfig(
            redis_url=url, encryption_keys=SecretBox.new_key(), secret_key="doctor"
        )
        roomy = {f.check: f for f in checks.run(config)}["redis memory"]
        redis = Redis.from_url(url)
        redis.config_set("maxmemory", int(int(redis.info("memory")["used_memory"]) / 0.85))
        tight = {f.check: f for f in checks.run(config)}["redis memory"]
    finally:
        server.stop()
    assert roomy.level == "ok" and "no maxmemory" in roomy.message
    assert tight.level == "warn" and "writes are refused" in tight.message, tight
